// The store: one subscription for the app keeps the latest state, so a window opened
// late (or closed and reopened) shows the current progress at once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createBridge } from '../src/electron/preload.js';
import { connectRenderer } from '../src/renderer.js';
import { ModelStore, createModelStore, registerIpcHandlers, type StoreEvents, type StoreSource, type Task } from '../src/index.js';
import { Emitter } from '../src/events.js';
import { FakeIpcMain, FakeIpcRenderer, FakeWebContentsModule } from './helpers/electron-fakes.js';
import { startRepository } from './helpers/repo-server.js';
import { realClient, waitUntil } from './helpers/sidecar.js';

const APP = 'app://bundle/index.html';

test('a window opened mid-download renders current progress at once, then follows live to ready', async (t) => {
  const SIZE = 4_000_000;
  const repo = await startRepository([{ id: 'late', versions: [{ version: '1.0.0', files: [{ path: 'w.bin', content: SIZE }] }] }]);
  t.after(() => repo.close());
  repo.throttle = 4_000_000;
  const { client } = await realClient(t, { repositoryUrl: repo.url });

  // Main process: the app-wide store and the IPC wiring.
  const mainStore = await createModelStore(client);
  t.after(() => mainStore.stop());
  const ipcMain = new FakeIpcMain();
  const webContents = new FakeWebContentsModule();
  t.after(registerIpcHandlers(ipcMain, client, { webContents, store: mainStore, trustedOrigins: ['app://bundle'] }));

  const { taskId } = await client.install({ modelId: 'late' });
  assert.ok(taskId);
  await waitUntil(() => (mainStore.getSnapshot().tasks[taskId]?.bytesDone ?? 0) > SIZE / 4, 15_000, 'progress in main');

  // The model page opens now: its first snapshot already shows the download under way.
  const page = connectRenderer(createBridge(new FakeIpcRenderer(ipcMain, webContents.open(APP))));
  const invokedBefore = Date.now();
  const pageStore = await createModelStore(page);
  t.after(() => pageStore.stop());
  const first = pageStore.getSnapshot().tasks[taskId];
  assert.ok(first && first.bytesDone > SIZE / 4 && first.state === 'downloading', JSON.stringify(first));
  assert.ok(Date.now() - invokedBefore < 1000);

  // Then it follows the live stream to the end.
  repo.throttle = 0;
  await waitUntil(() => pageStore.getSnapshot().tasks[taskId]?.state === 'ready', 20_000, 'ready in the page');
  await waitUntil(
    () => pageStore.getSnapshot().models.find((m) => m.id === 'late')?.installed[0]?.state === 'ready',
    5000,
    'the model list in the page (refetched after models.changed)',
  );
  const model = pageStore.getSnapshot().models.find((m) => m.id === 'late')!;
  assert.equal(model.installed[0]?.version, '1.0.0');
});

test('store: an event that arrives while the snapshot loads is not overwritten by the older snapshot', async () => {
  const events = new Emitter<StoreEvents>();
  const task = (bytesDone: number): Task => ({
    taskId: 't', modelId: 'm', version: '1', state: 'downloading', bytesDone, bytesTotal: 100,
    speedBps: 0, etaSeconds: null, filesDone: 0, filesTotal: 1, error: null,
  });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const source: StoreSource = {
    listTasks: async () => {
      await gate;
      return { tasks: [task(10)] };
    },
    listModels: async () => ({ models: [], stale: false }),
    on: (event, listener) => events.on(event, listener),
  };
  const store = new ModelStore(source);
  let notified = 0;
  store.subscribe(() => notified++);
  const started = store.start();
  events.emit('task.progress', task(60));
  release();
  await started;
  assert.equal(store.getSnapshot().tasks.t?.bytesDone, 60);
  assert.ok(notified >= 2);
  const before = store.getSnapshot();
  assert.equal(store.getSnapshot(), before, 'a stable snapshot between changes');
  events.emit('task.state', { ...task(100), state: 'ready' });
  assert.notEqual(store.getSnapshot(), before);
  assert.equal(store.getSnapshot().tasks.t?.state, 'ready');
  store.stop();
  assert.equal(events.listenerCount('task.progress'), 0);
});
