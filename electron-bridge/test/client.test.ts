// The client against the real Python sidecar and a real loopback repository.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ModelNotAvailableError, ModelNotFoundError, TaskNotFoundError, ProtocolError, type Task } from '../src/index.js';
import { startRepository } from './helpers/repo-server.js';
import { realClient, waitForEvent } from './helpers/sidecar.js';

test('getInfo reports the sidecar it started', async (t) => {
  const { client, home } = await realClient(t);
  const info = await client.getInfo();
  assert.equal(info.pid, client.pid);
  assert.equal(info.home, home);
  assert.equal(typeof info.protocolVersion, 'number');
});

test('getModelPath for a missing model rejects with ModelNotAvailableError and its fields', async (t) => {
  const { client } = await realClient(t);
  await client.getInfo(); // warm: the first answer includes interpreter start-up
  const error = await client.getModelPath({ modelId: 'whisper-tiny', version: '1.0.0' }).catch((e: unknown) => e);
  assert.ok(error instanceof ModelNotAvailableError, String(error));
  assert.equal(error.code, 'MODEL_NOT_AVAILABLE');
  assert.equal(error.rpcCode, 1001);
  assert.equal(error.modelId, 'whisper-tiny');
  assert.equal(error.version, '1.0.0');
  assert.equal(error.reason, 'not_installed');
});

test('sidecar errors map to their subclasses; bad params to ProtocolError', async (t) => {
  const { client } = await realClient(t);
  await assert.rejects(client.getTask({ taskId: 'nope' }), TaskNotFoundError);
  const bad = await client.call('getModelPath', { modelId: '' }).catch((e: unknown) => e);
  assert.ok(bad instanceof ProtocolError);
  assert.equal(bad.rpcCode, -32602);
});

test('install with progress events, then the path holds the exact bytes', async (t) => {
  const repo = await startRepository([
    { id: 'asr-small', versions: [{ version: '1.0.0', files: [{ path: 'model.bin', content: 3_000_000 }, { path: 'conf/config.json', content: Buffer.from('{"a":1}') }] }] },
  ]);
  t.after(() => repo.close());
  repo.throttle = 6_000_000; // ~0.5 s: several progress notifications
  const { client } = await realClient(t, { repositoryUrl: repo.url });
  const progress: Task[] = [];
  const states: string[] = [];
  client.on('task.progress', (task) => progress.push(task));
  client.on('task.state', (task) => states.push(task.state));
  const changed = waitForEvent(client, 'models.changed', (e) => e.modelId === 'asr-small' && e.state === 'ready');
  const started = await client.install({ modelId: 'asr-small' });
  assert.equal(started.modelId, 'asr-small');
  assert.equal(started.version, '1.0.0');
  assert.ok(started.taskId);
  const again = await client.install({ modelId: 'asr-small' });
  assert.equal(again.taskId, started.taskId, 'idempotent: the same task');
  const done = await waitForEvent(client, 'task.state', (task) => task.taskId === started.taskId && task.state === 'ready');
  await changed;
  assert.equal(done.bytesDone, done.bytesTotal);
  assert.ok(progress.length >= 2, `progress events: ${progress.length}`);
  assert.ok(progress.some((p) => p.bytesDone > 0 && p.bytesDone < p.bytesTotal), 'a partial progress event');
  assert.ok(states.includes('downloading'));
  const { path, version } = await client.getModelPath({ modelId: 'asr-small' });
  assert.equal(version, '1.0.0');
  assert.deepEqual(await readFile(join(path, 'model.bin')), repo.bytes('asr-small', '1.0.0', 'model.bin'));
  assert.equal(await readFile(join(path, 'conf/config.json'), 'utf8'), '{"a":1}');
  const listed = await client.listModels();
  assert.equal(listed.models.find((m) => m.id === 'asr-small')?.state, 'ready');
  const verified = await client.verify({ modelId: 'asr-small' });
  assert.equal(verified.ok, true);
});

test('install of an unknown model rejects with ModelNotFoundError', async (t) => {
  const repo = await startRepository([{ id: 'known', versions: [{ version: '1', files: [{ path: 'a', content: 10 }] }] }]);
  t.after(() => repo.close());
  const { client } = await realClient(t, { repositoryUrl: repo.url });
  await assert.rejects(client.install({ modelId: 'unknown' }), ModelNotFoundError);
});
