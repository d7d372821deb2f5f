// The Model Library page in a real browser (Debian's chromium, headless, driven by
// playwright-core): the page's own bundle, the package's prebuilt preload, IPC over a
// WebSocket to this process running the real bridge, the real sidecar and the
// reference repository server. It installs a model with a dependency by clicking,
// follows the progress bar to 100 %, pauses and resumes, and renders a typed error.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createModelStore, registerIpcHandlers } from '../src/index.js';
import { startDevServer } from './helpers/dev-server.js';
import { publish, recordUsage, serveRepository } from './helpers/reference-repo.js';
import { PACKAGE_ROOT, realClient, tempHome } from './helpers/sidecar.js';
import { WsIpc } from './helpers/ws-ipc.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const SCREENSHOTS = join(PACKAGE_ROOT, 'build-test', 'screenshots');
// As root on a closed network: no sandbox, and nothing that phones home (its refused
// connections otherwise stall the browser).
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const PARENT_BYTES = 6_000_000;
const DEPENDENCY_BYTES = 1_500_000;
const THROTTLE = 1_500_000; // bytes per second per response: a few seconds to watch

const missing = !existsSync(CHROMIUM);
if (missing && process.env.CI !== 'true') {
  const line = '!'.repeat(78);
  console.error(`\n${line}\n!! SKIPPED: the Model Library browser test needs chromium at ${CHROMIUM}.\n!! Install it (apt-get install chromium) or set CHROMIUM_PATH; CI installs it.\n${line}\n`);
}

test('Model Library page in headless chromium: install with a dependency, progress, pause/resume, typed errors', { skip: missing && process.env.CI !== 'true' ? `no chromium at ${CHROMIUM}` : false, timeout: 180_000 }, async (t) => {
  assert.ok(!missing, `CI=true and no chromium at ${CHROMIUM}: the browser test must run in CI (apt-get install chromium)`);
  await mkdir(SCREENSHOTS, { recursive: true });
  // One hook, last started first: the browser and its socket must go before the server closes.
  const cleanups: (() => unknown)[] = [];
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await Promise.resolve().then(cleanup).catch((e: unknown) => console.error(e));
  });

  // The repository: a model that requires another, and a ranking to show.
  const storage = await tempHome(t);
  const scratch = await tempHome(t);
  await publish(storage, scratch, { id: 'align-zh', version: '1.0.0', name: 'Align zh', task: 'alignment', languages: 'zh', files: { 'align.bin': DEPENDENCY_BYTES } });
  await publish(storage, scratch, {
    id: 'whisper-small-zh', version: '1.0.0', name: 'Whisper Small zh', task: 'asr', languages: 'zh,en',
    files: { 'model.bin': PARENT_BYTES, 'config.json': 200 }, requires: ['align-zh@1.0.0'],
  });
  await publish(storage, scratch, { id: 'translate-en', version: '2.1.0', name: 'Translate en', task: 'translation', languages: 'en', files: { 'mt.bin': 300_000 } });
  const repo = await serveRepository(storage, THROTTLE);
  cleanups.push(() => repo.stop());
  await recordUsage(repo.url, 'whisper-small-zh', 5);
  await recordUsage(repo.url, 'translate-en', 3);
  await recordUsage(repo.url, 'align-zh', 1);

  // The Electron main process's part: the bridge on the real sidecar, IPC over WebSocket.
  const { client } = await realClient(t, { repositoryUrl: repo.url, scheduler: repo.url, restart: { initialDelayMs: 1000 } });
  const store = await createModelStore(client);
  cleanups.push(() => store.stop());
  const dev = await startDevServer();
  cleanups.push(() => dev.close());
  const ipc = new WsIpc(dev.server);
  cleanups.push(() => ipc.close());
  cleanups.push(registerIpcHandlers(ipc, client, { webContents: ipc, trustedOrigins: [dev.url], store }));

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  cleanups.push(() => browser.close());
  const page: Page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (process.env.BRIDGE_TEST_LOG) console.error(`[page] ${message.type()}: ${message.text()}`);
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  t.after(() => problems.length && console.error(`page problems:\n${problems.join('\n')}`));
  step('goto');
  await page.goto(`${dev.url}/index.html`);

  await page.getByRole('status').filter({ hasText: 'Model service running.' }).waitFor({ timeout: 30_000 });
  step('running');
  // Top models: ranked, with installed flags (none yet) and no stale notice.
  const top = page.locator('#top li');
  await assertEventually(async () => (await top.count()) === 3, 'three ranked models');
  assert.deepEqual(await page.locator('#top li .name').allTextContents(), ['Whisper Small zh', 'Translate en', 'Align zh']);
  assert.equal(await page.locator('#top-notice').isHidden(), true);
  assert.equal(await page.getByRole('button', { name: 'Install Whisper Small zh' }).count(), 2, 'in Top models and in Available models');

  // Record every value the progress bar shows, from inside the page.
  // (Strings: this file is compiled without the DOM library.)
  await page.evaluate(`window.samples = [];
    setInterval(() => {
      const bar = document.querySelector('li.download[data-model="whisper-small-zh"] progress');
      if (bar) window.samples.push(bar.value / bar.max);
    }, 20);`);
  const fraction = async () => {
    const value = await bar.evaluate((el: { value: number; max: number }) => el.value / el.max);
    return value;
  };

  step('ranking ok');
  // Install by keyboard: focus the button and press Enter.
  const install = page.locator('#catalog').getByRole('button', { name: 'Install Whisper Small zh' });
  await install.focus();
  await page.keyboard.press('Enter');
  const row = page.locator('li.download[data-model="whisper-small-zh"]');
  const bar = row.getByRole('progressbar', { name: 'Progress of Whisper Small zh 1.0.0' });
  await row.waitFor();
  await assertEventually(async () => (await row.locator('.deps li').count()) === 1, 'the dependency shown inside the install');
  assert.match(await row.locator('.deps li').innerText(), /^Includes Align zh 1\.0\.0 \(required\)/);
  await assertEventually(async () => (await fraction()) > 0.15, 'progress past 15 %');
  assert.match(await row.locator('.speed').innerText(), /\/s$/);
  // The ETA shows once the sidecar knows the speed (0.3 s of samples, averaged over 5 s).
  await assertEventually(async () => /left$/.test(await row.locator('.eta').innerText()), 'an ETA');
  step('mid-install');
  await page.screenshot({ path: join(SCREENSHOTS, 'model-library-installing.png') });

  // Pause, then resume: the bar holds, then goes on to 100 %.
  await row.getByRole('button', { name: 'Pause Whisper Small zh 1.0.0' }).click();
  await assertEventually(async () => (await row.getAttribute('data-state')) === 'paused', 'paused');
  const pausedAt = await fraction();
  assert.ok(pausedAt < 1, `paused at ${pausedAt}`);
  await row.getByRole('button', { name: 'Resume Whisper Small zh 1.0.0' }).click();
  await assertEventually(async () => (await row.getAttribute('data-state')) === 'ready', 'installed', 60_000);
  assert.equal(await row.locator('.percent').innerText(), '100 %');
  assert.match(await row.locator('.deps li').innerText(), /installed$/);

  step('ready');
  const samples = (await page.evaluate('window.samples')) as number[];
  for (let i = 1; i < samples.length; i++) assert.ok(samples[i]! >= samples[i - 1]!, `the bar went back: ${samples[i - 1]} → ${samples[i]} at sample ${i}`);
  assert.equal(samples.at(-1), 1);
  assert.ok(new Set(samples).size > 5, `the bar moved in steps: ${[...new Set(samples)].length} distinct values`);

  // Installed: both, with version and size; Top models now flags them.
  const installed = page.locator('#installed tr');
  await assertEventually(async () => (await installed.count()) === 2, 'two installed rows');
  assert.deepEqual(
    (await installed.allInnerTexts()).map((r) => r.split('\t').slice(0, 4).join(' | ')).sort(),
    ['Align zh | 1.0.0 | 1.5 MB | Installed', 'Whisper Small zh | 1.0.0 | 6.0 MB | Installed'],
  );
  await assertEventually(async () => (await page.locator('#top li .badge', { hasText: 'Installed' }).count()) === 2, 'installed flags in Top models');
  await page.screenshot({ path: join(SCREENSHOTS, 'model-library-installed.png') });

  step('installed');
  // Remove one version from its row.
  await page.getByRole('button', { name: 'Remove Whisper Small zh 1.0.0' }).click();
  await assertEventually(async () => (await installed.count()) === 1, 'one installed row left');
  await page.locator('#catalog').getByRole('button', { name: 'Install Whisper Small zh' }).waitFor();

  // The repository goes away: an install the sidecar cannot resolve is a readable, typed error.
  await repo.stop();
  await page.getByLabel('Install a model by its id').fill('whisper-large-v3-zh');
  await page.getByLabel('Install a model by its id').press('Enter');
  const error = page.locator('#errors li[data-code="REPOSITORY_UNAVAILABLE"]');
  await error.waitFor({ timeout: 60_000 });
  assert.match(await error.innerText(), /The model repository cannot be reached \(installing whisper-large-v3-zh\)\. Check your network connection or proxy settings/);
  await page.screenshot({ path: join(SCREENSHOTS, 'model-library-error.png') });
  await error.getByRole('button', { name: 'Dismiss this message' }).click();
  await assertEventually(async () => (await error.count()) === 0, 'the message dismissed');
  // Refreshing now keeps the last lists, marked as possibly out of date.
  await page.getByRole('button', { name: 'Refresh catalog' }).click();
  await page.locator('#catalog-notice').waitFor({ state: 'visible', timeout: 60_000 });
  await page.locator('#top-notice').waitFor({ state: 'visible', timeout: 60_000 });
  assert.match(await page.locator('#top-notice').innerText(), /ranking could not be refreshed/i);
  assert.equal(await top.count(), 3, 'the last ranking is still shown');

  // The sidecar dies: the page says so, then shows it running again.
  step('error shown');
  process.kill(client.pid!, 'SIGKILL');
  await page.getByRole('alert').filter({ hasText: /The model service stopped; restarting in 1\.0 s/ }).waitFor({ timeout: 10_000 });
  await page.getByRole('status').filter({ hasText: 'Model service running.' }).waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('#installed tr').count(), 1, 'the restarted sidecar still has Align zh');

  assert.deepEqual(problems, [], 'no page errors');
});

function step(what: string): void {
  if (process.env.BRIDGE_TEST_LOG) console.error(`[browser test] ${what}`);
}

async function assertEventually(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

