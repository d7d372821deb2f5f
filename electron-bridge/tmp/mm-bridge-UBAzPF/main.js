// examples/electron/main.ts
import { app, BrowserWindow, ipcMain, net, protocol, session, webContents } from "electron";
import { createRequire } from "node:module";
import { join, normalize, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { createModelManager, createModelStore, registerIpcHandlers } from "@model-manager/electron-bridge";
var require2 = createRequire(import.meta.url);
var PAGE_DIR = join(import.meta.dirname, "model-library");
var REPOSITORY = process.env.MODEL_MANAGER_REPOSITORY ?? "https://models.example.com";
protocol.registerSchemesAsPrivileged([{ scheme: "app", privileges: { standard: true, secure: true, supportFetchAPI: true } }]);
async function main() {
  await app.whenReady();
  protocol.handle("app", (request) => {
    const url = new URL(request.url);
    const file = normalize(join(PAGE_DIR, decodeURIComponent(url.pathname)));
    if (url.host !== "library" || !file.startsWith(PAGE_DIR + sep)) return new Response("not found", { status: 404 });
    return net.fetch(pathToFileURL(file).href);
  });
  const client = createModelManager({
    python: process.env.MODEL_MANAGER_PYTHON ?? join(process.resourcesPath, "python", "bin", "python3"),
    home: join(app.getPath("userData"), "model-manager"),
    repository: REPOSITORY,
    scheduler: process.env.MODEL_MANAGER_SCHEDULER,
    // Chromium resolves PAC/WPAD and the OS proxy; the sidecar gets the answer.
    network: { resolveProxy: (url) => session.defaultSession.resolveProxy(url) }
  });
  const store = await createModelStore(client);
  registerIpcHandlers(ipcMain, client, { webContents, trustedOrigins: ["app://library"], store });
  const window = new BrowserWindow({
    width: 960,
    height: 760,
    webPreferences: {
      preload: require2.resolve("@model-manager/electron-bridge/preload.cjs"),
      sandbox: true,
      contextIsolation: true,
      nodeIntegration: false
    }
  });
  await window.loadURL("app://library/index.html");
  let quitting = false;
  app.on("will-quit", (event) => {
    if (quitting) return;
    quitting = true;
    event.preventDefault();
    store.stop();
    void client.dispose().finally(() => app.quit());
  });
  app.on("window-all-closed", () => app.quit());
}
void main();
