// Shared test plumbing: where the real sidecar's interpreter is, temporary homes, a
// client wired to a loopback repository, a recording logger, and event waiting.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { createModelManager, type ClientEvents, type Logger, type ModelManagerClient, type ModelManagerOptions } from '../../src/index.js';

function findUp(start: string, name: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, name))) return dir;
    if (dirname(dir) === dir) throw new Error(`no ${name} above ${start}`);
  }
}

/** electron-bridge/ (tests run compiled from build-test/, so walk up to package.json). */
export const PACKAGE_ROOT = findUp(dirname(fileURLToPath(import.meta.url)), 'package.json');
export const REPO_ROOT = dirname(PACKAGE_ROOT);
export const PYTHON =
  process.env.MODEL_MANAGER_PYTHON ??
  join(REPO_ROOT, '.venv', process.platform === 'win32' ? 'Scripts/python.exe' : 'bin/python');
export const FIXTURES = join(PACKAGE_ROOT, 'test', 'fixtures');

/** A temporary home, removed after the test. Cleanup never throws: a throwing after
 * hook would skip the hooks after it (the client's dispose) and leave a sidecar running. */
export async function tempHome(t: TestContext, cleanup = true): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'mm-bridge-'));
  if (cleanup) t.after(() => removeHome(home));
  return home;
}

function removeHome(home: string): Promise<void> {
  return rm(home, { recursive: true, force: true, maxRetries: 5 }).catch(() => undefined);
}

export interface RecordingLogger extends Logger {
  lines: { level: string; message: string }[];
  has(level: string, pattern: RegExp): boolean;
}

export function recordingLogger(): RecordingLogger {
  const lines: { level: string; message: string }[] = [];
  const log = (level: string) => (message: string) => {
    lines.push({ level, message });
    if (process.env.BRIDGE_TEST_LOG) console.error(`${level}: ${message}`);
  };
  return {
    lines,
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    has: (level, pattern) => lines.some((l) => l.level === level && pattern.test(l.message)),
  };
}

/** A client on the real sidecar (from the repository's .venv), disposed after the test. */
export async function realClient(
  t: TestContext,
  options: ModelManagerOptions & { repositoryUrl?: string } = {},
): Promise<{ client: ModelManagerClient; home: string; logger: RecordingLogger }> {
  const home = options.home ?? (await tempHome(t, false));
  const logger = recordingLogger();
  const { repositoryUrl, ...rest } = options;
  const client = createModelManager({
    python: PYTHON,
    home,
    repository: repositoryUrl ?? 'http://127.0.0.1:9', // nothing listens: tests that need no repository
    env: { MODEL_MANAGER_LOG_LEVEL: 'INFO' },
    logger,
    ...rest,
  });
  // One hook, in order: the sidecar must be gone before its home is removed.
  t.after(async () => {
    await client.dispose();
    if (!options.home) await removeHome(home);
  });
  return { client, home, logger };
}

/** Resolve with the first payload of `event` that matches, or reject after timeoutMs. */
export function waitForEvent<E extends keyof ClientEvents>(
  client: ModelManagerClient,
  event: E,
  predicate: (payload: ClientEvents[E]) => boolean = () => true,
  timeoutMs = 20_000,
): Promise<ClientEvents[E]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching ${String(event)} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = client.on(event, (payload) => {
      if (!predicate(payload)) return;
      clearTimeout(timer);
      off();
      resolve(payload);
    });
  });
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
