// The real sidecar killed under the client: the client restarts it, the download
// resumes by itself (by Range, not from zero), subscribers keep their event stream;
// and no sidecar outlives the app that started it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { startRepository } from './helpers/repo-server.js';
import { FIXTURES, PACKAGE_ROOT, PYTHON, processAlive, realClient, tempHome, waitForEvent, waitUntil } from './helpers/sidecar.js';

const SIZE = 6_000_000;

test('kill -9 mid-download → restart → the download resumes by Range and completes', async (t) => {
  const repo = await startRepository([{ id: 'big', versions: [{ version: '2.0.0', files: [{ path: 'weights.bin', content: SIZE }] }] }]);
  t.after(() => repo.close());
  repo.throttle = 3_000_000; // ~2 s for the whole file
  const { client, logger } = await realClient(t, { repositoryUrl: repo.url, restart: { initialDelayMs: 50 } });
  const progress: number[] = [];
  client.on('task.progress', (task) => progress.push(task.bytesDone));
  const { taskId } = await client.install({ modelId: 'big' });
  await waitForEvent(client, 'task.progress', (task) => task.bytesDone > SIZE / 4, 15_000);
  const firstPid = client.pid!;

  process.kill(firstPid, 'SIGKILL');
  await waitForEvent(client, 'status', (s) => s.state === 'running' && s.restarts === 1, 10_000);
  assert.ok(logger.has('warn', /signal SIGKILL.*restarting/));
  assert.equal(processAlive(firstPid), false);
  repo.throttle = 0;

  // The same subscription sees the resumed task finish.
  const ready = await waitForEvent(client, 'task.state', (task) => task.modelId === 'big' && task.state === 'ready', 30_000);
  const { path } = await client.getModelPath({ modelId: 'big' });
  assert.equal(path.endsWith(join('big', '2.0.0')), true);

  const fileRequests = repo.requests.filter((r) => r.path.endsWith('/weights.bin'));
  const resumed = fileRequests.find((r) => r.range && !/^bytes=0-/.test(r.range));
  assert.ok(resumed, `a Range request after the restart: ${JSON.stringify(fileRequests)}`);
  assert.equal(resumed.status, 206);
  assert.ok(repo.storageBytesSent() < SIZE * 1.5, `served ${repo.storageBytesSent()} bytes for a ${SIZE}-byte file`);
  t.diagnostic(`task ${taskId} → ${ready.taskId}; served ${repo.storageBytesSent()} bytes; resumed with ${resumed.range}`);
});

async function runApp(t: { after(fn: () => unknown): void }, home: string, mode: string) {
  const moduleUrl = pathToFileURL(join(PACKAGE_ROOT, 'build-test', 'src', 'index.js')).href;
  const app = spawn(process.execPath, [join(FIXTURES, 'app-host.mjs'), moduleUrl, PYTHON, home, mode], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => app.kill('SIGKILL'));
  const lines = createInterface({ input: app.stdout! });
  const [first] = (await once(lines, 'line')) as [string];
  const sidecarPid = Number(/^SIDECAR (\d+)$/.exec(first)?.[1]);
  assert.ok(sidecarPid > 0, first);
  return { app, sidecarPid, lines };
}

test('no orphan: the sidecar exits when the app process is killed with SIGKILL', async (t) => {
  const { app, sidecarPid } = await runApp(t, await tempHome(t), 'wait');
  assert.ok(processAlive(sidecarPid));
  app.kill('SIGKILL');
  await waitUntil(() => !processAlive(sidecarPid), 10_000, `sidecar ${sidecarPid} to exit`);
});

test('no orphan: dispose() stops the sidecar and lets the app exit; so does exiting without dispose()', async (t) => {
  const home = await tempHome(t);
  const disposed = await runApp(t, home, 'dispose');
  const [code] = await once(disposed.app, 'exit');
  assert.equal(code, 0);
  assert.equal(processAlive(disposed.sidecarPid), false, 'gone when dispose() resolved');

  const exited = await runApp(t, home, 'exit');
  await once(exited.app, 'exit');
  await waitUntil(() => !processAlive(exited.sidecarPid), 10_000, 'sidecar to exit after the app');
});
