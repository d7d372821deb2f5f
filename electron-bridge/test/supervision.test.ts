// Supervision and robustness with a stand-in child (test/fixtures/fake-sidecar.mjs):
// malformed output, timeouts, a child dying mid-request, restart backoff and its cap,
// and the SIGTERM → SIGKILL escalation of dispose().
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  ClientDisposedError,
  ModelManagerClient,
  RequestTimeoutError,
  SidecarBrokenError,
  SidecarExitedError,
  type ModelManagerOptions,
  type StatusEvent,
} from '../src/index.js';
import { FIXTURES, processAlive, recordingLogger, waitForEvent, waitUntil } from './helpers/sidecar.js';

function fakeClient(t: { after(fn: () => unknown): void }, mode: string, options: ModelManagerOptions = {}) {
  const logger = recordingLogger();
  const client = new ModelManagerClient({
    command: process.execPath,
    args: [join(FIXTURES, 'fake-sidecar.mjs'), mode],
    logger,
    restart: { initialDelayMs: 20, maxDelayMs: 100 },
    ...options,
  }).start();
  t.after(() => client.dispose());
  return { client, logger };
}

test('malformed lines from the child are logged and skipped; answers and notifications still arrive', async (t) => {
  const { client, logger } = fakeClient(t, 'malformed', { maxLineBytes: 1024 });
  const changed: string[] = [];
  const unknown: string[] = [];
  client.on('models.changed', (e) => changed.push(e.modelId));
  client.on('models.changed', () => {
    throw new Error('a buggy subscriber');
  });
  client.on('notification', (n) => unknown.push(n.method));
  const info = await client.getInfo();
  assert.equal(info.home, 'malformed');
  await waitUntil(() => changed.includes('split'), 5000, 'the split notification');
  assert.deepEqual(changed, ['line\u2028sep', 'split']);
  assert.ok(unknown.includes('some.future.event'));
  assert.ok(logger.has('warn', /not JSON/));
  assert.ok(logger.has('warn', /not JSON-RPC 2.0/));
  assert.ok(logger.has('warn', /peer reported -32700/));
  assert.ok(logger.has('warn', /without object params/));
  assert.ok(logger.has('warn', /overlong line .*5000 bytes/));
  assert.ok(logger.has('error', /listener threw/));
  assert.equal(client.state, 'running');
  assert.equal(client.restarts, 0);
  assert.equal((await client.getInfo()).home, 'malformed', 'still answering');
});

test('a request without an answer rejects with RequestTimeoutError', async (t) => {
  const { client } = fakeClient(t, 'silent');
  await waitUntil(() => client.state === 'running', 5000, 'handshake');
  const started = performance.now();
  const error = await client.getInfo(undefined, { timeoutMs: 150 }).catch((e: unknown) => e);
  const elapsed = performance.now() - started;
  assert.ok(error instanceof RequestTimeoutError, String(error));
  assert.equal(error.code, 'REQUEST_TIMEOUT');
  assert.ok(elapsed >= 140 && elapsed < 1000, `elapsed ${elapsed}`);
  assert.equal(client.state, 'running', 'a timeout is not a crash');
});

test('pending requests reject with SidecarExitedError when the child dies; it is restarted', async (t) => {
  const { client, logger } = fakeClient(t, 'exit-on-request', { restart: { initialDelayMs: 30, maxRestarts: 10 } });
  const firstPid = client.pid;
  const statuses: StatusEvent[] = [];
  client.on('status', (s) => statuses.push(s));
  const error = await client.install({ modelId: 'm' }).catch((e: unknown) => e);
  assert.ok(error instanceof SidecarExitedError, String(error));
  assert.match(error.message, /code 3/);
  await waitUntil(() => client.state === 'running' && client.restarts === 1, 5000, 'restart');
  assert.notEqual(client.pid, firstPid);
  const states = statuses.map((s) => s.state);
  const at = states.indexOf('restarting');
  assert.deepEqual(states.slice(at), ['restarting', 'starting', 'running'], 'running only after the handshake');
  assert.equal(statuses[at]?.delayMs, 30);
  assert.equal(statuses[at]?.exit?.code, 3);
  assert.ok(logger.has('warn', /exited \(code 3.*restarting in 30 ms/));
});

test('a child that keeps crashing is restarted with growing backoff, then the client is broken', async (t) => {
  const { client, logger } = fakeClient(t, 'crash-at-start', {
    restart: { initialDelayMs: 10, factor: 2, maxDelayMs: 1000, maxRestarts: 3, windowMs: 60_000 },
  });
  const delays: number[] = [];
  client.on('status', (s) => s.state === 'restarting' && delays.push(s.delayMs!));
  const broken = await waitForEvent(client, 'status', (s) => s.state === 'broken', 10_000);
  assert.deepEqual(delays, [10, 20, 40]);
  assert.equal(broken.restarts, 3);
  assert.equal(broken.exit?.code, 1);
  await assert.rejects(client.getInfo(), SidecarBrokenError);
  assert.ok(logger.has('info', /\[sidecar\] fatal: cannot import sidecar/), 'stderr reaches the log');
  assert.ok(logger.has('error', /giving up/));
});

test('requests made while restarting wait for the new child', async (t) => {
  const { client } = fakeClient(t, 'echo', { restart: { initialDelayMs: 200 } });
  await client.getInfo();
  const pid = client.pid!;
  process.kill(pid, 'SIGKILL');
  await waitForEvent(client, 'status', (s) => s.state === 'restarting', 5000);
  const info = await client.getInfo(undefined, { timeoutMs: 5000 });
  assert.notEqual(info.pid, pid);
  assert.equal(client.restarts, 1);
});

test('dispose escalates to SIGTERM and then SIGKILL for a child that ignores both EOF and SIGTERM', async (t) => {
  const { client, logger } = fakeClient(t, 'stubborn', { shutdownTimeoutMs: 100, stop: { graceMs: 150, termMs: 150 } });
  const pid = client.pid!;
  await waitUntil(() => processAlive(pid), 2000, 'child up');
  await new Promise((r) => setTimeout(r, 100)); // let it install its SIGTERM handler
  const started = performance.now();
  await client.dispose();
  const elapsed = performance.now() - started;
  assert.equal(processAlive(pid), false);
  assert.ok(elapsed >= 350, `shutdown wait + grace + term: ${elapsed} ms`);
  assert.ok(logger.has('info', /ignoring SIGTERM/), 'SIGTERM was sent first');
  assert.equal(client.state, 'stopped');
  await assert.rejects(client.getInfo(), ClientDisposedError);
  await client.dispose(); // idempotent
});

test('dispose rejects requests still pending with ClientDisposedError', async (t) => {
  const { client } = fakeClient(t, 'silent', { shutdownTimeoutMs: 50 });
  await waitUntil(() => client.state === 'running', 5000, 'handshake');
  const pending = client.getInfo(undefined, { timeoutMs: 10_000 });
  await client.dispose();
  await assert.rejects(pending, ClientDisposedError);
});

test('a missing interpreter is reported, restarted with backoff and ends broken', async (t) => {
  const { client } = fakeClient(t, 'x', {
    command: '/nonexistent/python-for-model-manager',
    args: [],
    restart: { initialDelayMs: 5, maxRestarts: 1 },
  });
  await waitForEvent(client, 'status', (s) => s.state === 'broken', 5000);
  await assert.rejects(client.getInfo(), SidecarBrokenError);
});
