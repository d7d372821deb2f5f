// The client's life cycle against the real sidecar (and the stand-in where the real one
// cannot misbehave on purpose): running only after the handshake, a clear error for a
// sidecar of another protocol, a store that knows the status it was created after, and
// idempotent reads that survive a crash.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  ModelManagerClient,
  PROTOCOL_VERSION,
  ProtocolMismatchError,
  SidecarExitedError,
  createModelStore,
  type GetInfoResult,
  type ModelManagerOptions,
  type StatusEvent,
} from '../src/index.js';
import { FIXTURES, processAlive, realClient, recordingLogger, waitForEvent, waitUntil } from './helpers/sidecar.js';

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

test('handshake: the client is running only once the real sidecar answered getInfo with our protocol', async (t) => {
  const { client } = await realClient(t);
  const states: string[] = [];
  client.on('status', (s) => states.push(s.state));
  assert.equal(client.state, 'starting', 'spawned is not running yet');
  assert.equal(client.info, null);
  await waitForEvent(client, 'status', (s) => s.state === 'running', 20_000);
  assert.deepEqual(states, ['running']);
  const info = client.info as GetInfoResult | null;
  assert.equal(info?.protocolVersion, PROTOCOL_VERSION, 'the bridge speaks the real sidecar\'s protocol');
  assert.equal(info?.pid, client.pid);
});

test('handshake: a sidecar of another protocol version is a ProtocolMismatchError, broken at once, not restarted', async (t) => {
  const { client, logger } = fakeClient(t, 'old-protocol');
  const statuses: StatusEvent[] = [];
  client.on('status', (s) => statuses.push(s));
  const pid = client.pid!;
  const error = await client.listModels().catch((e: unknown) => e);
  assert.ok(error instanceof ProtocolMismatchError, String(error));
  assert.equal(error.code, 'PROTOCOL_MISMATCH');
  assert.match(error.message, /speaks protocol 0.*speaks protocol 1: install a matching sidecar/);
  assert.deepEqual(error.data, { expected: 1, actual: 0, sidecarVersion: 'fake' });
  assert.deepEqual(statuses.map((s) => s.state), ['broken']);
  assert.equal(statuses[0]?.error?.code, 'PROTOCOL_MISMATCH');
  assert.equal(client.getStatus().state, 'broken');
  await assert.rejects(client.getInfo(), ProtocolMismatchError);
  await waitUntil(() => !processAlive(pid), 10_000, 'the mismatched sidecar to be stopped');
  assert.equal(client.restarts, 0);
  assert.ok(logger.has('error', /install a matching sidecar/));
});

test('handshake: a child that never answers it is killed and restarted, then broken', async (t) => {
  const { client, logger } = fakeClient(t, 'no-handshake', { handshakeTimeoutMs: 200, restart: { initialDelayMs: 10, maxRestarts: 1 } });
  const broken = await waitForEvent(client, 'status', (s) => s.state === 'broken', 10_000);
  assert.equal(broken.restarts, 1);
  assert.ok(logger.has('error', /did not answer its handshake/));
});

test('a store created after the client started knows its status (not null)', async (t) => {
  const { client } = await realClient(t);
  await client.getInfo(); // the `running` event is long gone
  const store = await createModelStore(client);
  t.after(() => store.stop());
  assert.equal(store.getSnapshot().status?.state, 'running');
  assert.equal(store.getSnapshot().status?.pid, client.pid);
});

test('crash under a pending call: idempotent reads are asked again of the restarted sidecar; install is not', async (t) => {
  const { client, logger } = await realClient(t, { restart: { initialDelayMs: 50 } });
  await client.getInfo();
  // Freeze the sidecar so the calls are surely pending (written, unanswered) when it dies.
  const first = client.pid!;
  process.kill(first, 'SIGSTOP');
  const path = client.getModelPath({ modelId: 'absent' }, { timeoutMs: 20_000 }).catch((e: unknown) => e);
  const tasks = client.listTasks(undefined, { timeoutMs: 20_000 });
  const install = client.install({ modelId: 'absent' }).catch((e: unknown) => e);
  await new Promise((r) => setTimeout(r, 50));
  process.kill(first, 'SIGKILL');
  assert.deepEqual(await tasks, { tasks: [] });
  const pathError = await path;
  assert.equal((pathError as Error).name, 'ModelNotAvailableError', 'answered by the restarted sidecar');
  assert.ok((await install) instanceof SidecarExitedError, 'install may have started: the caller decides');
  assert.equal(client.restarts, 1);
  assert.notEqual(client.pid, first);
  assert.ok(logger.has('debug', /getModelPath was pending when the sidecar exited/));
});
