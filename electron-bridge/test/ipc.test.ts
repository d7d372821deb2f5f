// registerIpcHandlers, the preload bridge and connectRenderer, with stand-in
// ipcMain / webContents / ipcRenderer / contextBridge that record calls.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Emitter } from '../src/events.js';
import { createBridge, exposeModelManager, type ModelManagerBridge } from '../src/electron/preload.js';
import { connectRenderer } from '../src/renderer.js';
import {
  EVENT_CHANNEL,
  ForbiddenSenderError,
  METHOD_NAMES,
  ModelNotAvailableError,
  ProtocolError,
  RENDERER_METHODS,
  invokeChannel,
  originTrust,
  registerIpcHandlers,
  type ClientEvents,
  type IpcClient,
  type Task,
} from '../src/index.js';
import { FakeContextBridge, FakeIpcMain, FakeIpcRenderer, FakeWebContentsModule } from './helpers/electron-fakes.js';
import { realClient } from './helpers/sidecar.js';

const APP = 'app://bundle/index.html';
const TRUSTED = ['app://bundle'];

/** A client stand-in: records calls, emits events on demand. */
function stubClient() {
  const events = new Emitter<ClientEvents>();
  const calls: { method: string; params: unknown }[] = [];
  const client: IpcClient & { events: typeof events; calls: typeof calls } = {
    events,
    calls,
    call: async (method, params) => {
      calls.push({ method, params });
      return { method } as never;
    },
    on: (event, listener) => events.on(event, listener),
  };
  return client;
}

const task = (bytesDone: number): Task => ({
  taskId: 't1', modelId: 'm', version: '1', state: 'downloading', bytesDone, bytesTotal: 100,
  speedBps: 1, etaSeconds: 1, filesDone: 0, filesTotal: 1, error: null,
});

test('one handler per method on the fixed prefix (shutdown is not exposed); the disposer removes them', () => {
  const ipcMain = new FakeIpcMain();
  const client = stubClient();
  const off = registerIpcHandlers(ipcMain, client, { webContents: new FakeWebContentsModule() });
  assert.deepEqual([...ipcMain.handlers.keys()].sort(), RENDERER_METHODS.map(invokeChannel).sort());
  assert.equal(RENDERER_METHODS.length, METHOD_NAMES.filter((m) => !['shutdown', 'setNetwork'].includes(m)).length);
  assert.ok(!ipcMain.handlers.has('model-manager:shutdown'));
  assert.ok(!ipcMain.handlers.has('model-manager:setNetwork'), 'the proxy belongs to the main process');
  assert.equal(client.events.listenerCount('task.progress'), 1);
  off();
  assert.equal(ipcMain.handlers.size, 0);
  assert.equal(client.events.listenerCount('task.progress'), 0);
});

test('trust is by exact scheme and host: custom schemes work, file:// only when listed', () => {
  assert.equal(new URL('app://bundle/x').origin, 'null', 'why URL.origin cannot be used');
  const trust = originTrust(['app://Bundle', 'http://localhost:5173/']);
  const ok = (url: string) => trust({ url });
  assert.equal(ok('app://bundle/index.html#/models'), true);
  assert.equal(ok('APP://BUNDLE/other.html'), true);
  assert.equal(ok('http://localhost:5173/page?x=1'), true);
  for (const url of ['app://bundle.evil/x', 'app://other/', 'file:///opt/app/index.html', 'http://localhost:5174/', 'https://localhost:5173/', 'about:blank', 'data:text/html,x', '']) {
    assert.equal(ok(url), false, url);
  }
  const files = originTrust(['file://']);
  assert.equal(files({ url: 'file:///opt/app/resources/app.asar/index.html' }), true);
  assert.equal(files({ url: 'app://bundle/' }), false);
  assert.throws(() => originTrust(['localhost:5173']), /not scheme:\/\/host/);
  assert.throws(() => originTrust(['about:blank']), TypeError);
});

test('handlers answer with envelopes and only for trusted frames', async () => {
  const ipcMain = new FakeIpcMain();
  const client = stubClient();
  registerIpcHandlers(ipcMain, client, { webContents: new FakeWebContentsModule(), trustedOrigins: ['http://localhost:5173', ...TRUSTED] });
  const channel = invokeChannel('listModels');
  assert.deepEqual(await ipcMain.invoke(APP, channel, { refresh: true }), { ok: true, result: { method: 'listModels' } });
  assert.deepEqual(await ipcMain.invoke('http://localhost:5173/#/models', channel), { ok: true, result: { method: 'listModels' } });
  for (const url of ['https://evil.example/', 'http://localhost:5174/', 'file:///opt/app/index.html', 'app://other/index.html', 'devtools://devtools/bundled/inspector.html', '', null]) {
    const answer = (await ipcMain.invoke(url, channel)) as { ok: boolean; error: { code: string } };
    assert.equal(answer.ok, false, String(url));
    assert.equal(answer.error.code, 'FORBIDDEN_SENDER');
  }
  const bad = (await ipcMain.invoke(APP, channel, 'not an object')) as { ok: boolean; error: { code: string } };
  assert.equal(bad.error.code, 'PROTOCOL_ERROR');
  assert.deepEqual(client.calls, [
    { method: 'listModels', params: { refresh: true } },
    { method: 'listModels', params: undefined },
  ]);
});

test('events are broadcast to every trusted, live window — payload only, on one channel', () => {
  const ipcMain = new FakeIpcMain();
  const client = stubClient();
  const webContents = new FakeWebContentsModule();
  const main = webContents.open(APP);
  const second = webContents.open(APP);
  const closed = webContents.open(APP);
  closed.destroyed = true;
  const devtools = webContents.open('devtools://devtools/bundled/inspector.html');
  const foreign = webContents.open('https://evil.example/');
  registerIpcHandlers(ipcMain, client, { webContents, trustedOrigins: TRUSTED });
  client.events.emit('task.progress', task(10));
  client.events.emit('models.changed', { modelId: 'm', version: '1', state: 'ready' });
  client.events.emit('status', { state: 'restarting', pid: null, restarts: 0, delayMs: 250 });
  for (const contents of [main, second]) {
    assert.deepEqual(
      contents.sent.map((s) => [s.channel, (s.args[0] as { event: string }).event]),
      [[EVENT_CHANNEL, 'task.progress'], [EVENT_CHANNEL, 'models.changed'], [EVENT_CHANNEL, 'status']],
    );
  }
  assert.deepEqual(main.sent[0]?.args, [{ event: 'task.progress', payload: task(10) }]);
  for (const contents of [closed, devtools, foreign]) assert.equal(contents.sent.length, 0);
});

test('preload exposes only invoke and on; listeners get the payload, never the IPC event', async () => {
  const ipcMain = new FakeIpcMain();
  const client = stubClient();
  const webContents = new FakeWebContentsModule();
  const page = webContents.open(APP);
  registerIpcHandlers(ipcMain, client, { webContents, trustedOrigins: TRUSTED });
  const ipcRenderer = new FakeIpcRenderer(ipcMain, page);
  const contextBridge = new FakeContextBridge();
  exposeModelManager(contextBridge, ipcRenderer);
  const api = contextBridge.world.modelManager as ModelManagerBridge;
  assert.deepEqual(Object.keys(contextBridge.world), ['modelManager']);
  assert.deepEqual(Object.keys(api).sort(), ['invoke', 'on']);

  const received: unknown[][] = [];
  const off = api.on('task.progress', (...args: unknown[]) => received.push(args));
  assert.equal(ipcRenderer.listenerCount(EVENT_CHANNEL), 1);
  client.events.emit('task.progress', task(42));
  client.events.emit('models.changed', { modelId: 'm', version: '1', state: 'ready' }); // not subscribed
  assert.deepEqual(received, [[task(42)]]);
  off();
  assert.equal(ipcRenderer.listenerCount(EVENT_CHANNEL), 0, 'the IPC listener goes with the last subscriber');

  assert.deepEqual(await api.invoke('getInfo'), { ok: true, result: { method: 'getInfo' } });
  const refused = await api.invoke('shutdown' as never);
  assert.equal(refused.ok, false);
  assert.deepEqual(ipcRenderer.invoked, [invokeChannel('getInfo')], 'an unknown method never reaches IPC');
  assert.throws(() => api.on('secret' as never, () => {}), TypeError);
});

test('renderer side: results unwrap, errors come back typed (ForbiddenSenderError, ProtocolError)', async () => {
  const ipcMain = new FakeIpcMain();
  const webContents = new FakeWebContentsModule();
  registerIpcHandlers(ipcMain, stubClient(), { webContents, trustedOrigins: TRUSTED });
  const trusted = connectRenderer(createBridge(new FakeIpcRenderer(ipcMain, webContents.open(APP))));
  assert.deepEqual(await trusted.getTask({ taskId: 'x' }), { method: 'getTask' });
  const evil = connectRenderer(createBridge(new FakeIpcRenderer(ipcMain, webContents.open('https://evil.example/'))));
  await assert.rejects(evil.listTasks(), ForbiddenSenderError);
  await assert.rejects(trusted.call('getInfo', 'bad' as never), ProtocolError);
});

test('end to end over IPC on the real sidecar: MODEL_NOT_AVAILABLE arrives as ModelNotAvailableError with its fields', async (t) => {
  const { client } = await realClient(t);
  const ipcMain = new FakeIpcMain();
  const webContents = new FakeWebContentsModule();
  const off = registerIpcHandlers(ipcMain, client, { webContents, trustedOrigins: TRUSTED });
  t.after(off);
  const page = connectRenderer(createBridge(new FakeIpcRenderer(ipcMain, webContents.open(APP))));
  const info = await page.getInfo();
  assert.equal(info.pid, client.pid);
  const error = await page.getModelPath({ modelId: 'nllb-600m', version: '3.1' }).catch((e: unknown) => e);
  assert.ok(error instanceof ModelNotAvailableError, String(error));
  assert.equal(error.modelId, 'nllb-600m');
  assert.equal(error.version, '3.1');
  assert.equal(error.reason, 'not_installed');
  assert.equal(error.rpcCode, 1001);
});
