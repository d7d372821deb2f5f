// A minimal Electron main process for the Model Library page: one sidecar for the app,
// the page served from the app's own app:// scheme (not file://), the prebuilt
// sandboxed preload, the system proxy passed on, and a clean stop on quit.
// Copy it, then replace the paths and URLs. `npm run build-example` bundles this file and
// the page into build-example/ (`npx electron build-example/main.js` with a real Electron).
import { app, BrowserWindow, ipcMain, net, protocol, session, webContents } from 'electron';
import { createRequire } from 'node:module';
import { join, normalize, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createModelManager, createModelStore, registerIpcHandlers } from '@model-manager/electron-bridge';

const require = createRequire(import.meta.url);
const PAGE_DIR = join(import.meta.dirname, 'model-library'); // index.html, style.css, app.js
const REPOSITORY = process.env.MODEL_MANAGER_REPOSITORY ?? 'https://models.example.com';

// Before ready: app:// behaves like https (secure context, fetch, relative URLs).
protocol.registerSchemesAsPrivileged([{ scheme: 'app', privileges: { standard: true, secure: true, supportFetchAPI: true } }]);

async function main(): Promise<void> {
  await app.whenReady();

  // app://library/<file> → the page's files, and nothing outside PAGE_DIR.
  protocol.handle('app', (request) => {
    const url = new URL(request.url);
    const file = normalize(join(PAGE_DIR, decodeURIComponent(url.pathname)));
    if (url.host !== 'library' || !file.startsWith(PAGE_DIR + sep)) return new Response('not found', { status: 404 });
    return net.fetch(pathToFileURL(file).href);
  });

  const client = createModelManager({
    python: process.env.MODEL_MANAGER_PYTHON ?? join(process.resourcesPath, 'python', 'bin', 'python3'),
    home: join(app.getPath('userData'), 'model-manager'),
    repository: REPOSITORY,
    scheduler: process.env.MODEL_MANAGER_SCHEDULER,
    // Chromium resolves PAC/WPAD and the OS proxy; the sidecar gets the answer.
    network: { resolveProxy: (url) => session.defaultSession.resolveProxy(url) },
  });
  const store = await createModelStore(client);
  registerIpcHandlers(ipcMain, client, { webContents, trustedOrigins: ['app://library'], store });

  const window = new BrowserWindow({
    width: 960,
    height: 760,
    webPreferences: {
      preload: require.resolve('@model-manager/electron-bridge/preload.cjs'),
      sandbox: true,
      contextIsolation: true,
      nodeIntegration: false,
    },
  });
  await window.loadURL('app://library/index.html');

  let quitting = false;
  app.on('will-quit', (event) => {
    if (quitting) return;
    quitting = true;
    event.preventDefault();
    store.stop();
    void client.dispose().finally(() => app.quit()); // shutdown → stdin EOF → SIGTERM → SIGKILL
  });
  app.on('window-all-closed', () => app.quit());
}

void main();
