// Main-process wiring: one ipcMain.handle per method on `model-manager:<method>`, each
// answering with an envelope, and every client event broadcast to the app's windows.
// Electron is not imported: the app passes its own ipcMain and webContents module, so
// this package installs and tests without Electron.
import { ForbiddenSenderError, ProtocolError } from '../errors.js';
import { envelope, type Envelope } from '../envelope.js';
import type { ClientEvents } from '../client.js';
import type { ModelStore, StoreSnapshot } from '../store.js';
import type { MethodName, Methods } from '../types.js';
import {
  BRIDGE_EVENTS,
  EVENT_CHANNEL,
  RENDERER_METHODS,
  SNAPSHOT_METHOD,
  invokeChannel,
  type RendererMethod,
} from './channels.js';

/** The parts of Electron's WebFrameMain used to decide trust. */
export interface FrameLike {
  url: string;
}
export interface IpcMainInvokeEventLike {
  senderFrame: FrameLike | null;
}
export interface IpcMainLike {
  handle(channel: string, listener: (event: IpcMainInvokeEventLike, ...args: unknown[]) => unknown): void;
  removeHandler(channel: string): void;
}
export interface WebContentsLike {
  send(channel: string, ...args: unknown[]): void;
  isDestroyed(): boolean;
  mainFrame?: FrameLike | null;
}
/** Electron's `webContents` module (or a stand-in). */
export interface WebContentsModuleLike {
  getAllWebContents(): WebContentsLike[];
}
/** The client as IPC uses it. */
export interface IpcClient {
  call<M extends MethodName>(method: M, params?: Methods[M]['params']): Promise<Methods[M]['result']>;
  on<E extends keyof ClientEvents>(event: E, listener: (payload: ClientEvents[E]) => void): () => void;
}

export interface IpcOptions {
  webContents: WebContentsModuleLike;
  /** Origins (e.g. 'http://localhost:5173') trusted besides file:// pages. */
  trustedOrigins?: string[];
  /** Replaces the origin check entirely. */
  isTrustedFrame?: (frame: FrameLike) => boolean;
  /** Methods the renderer may call (default: all but shutdown). */
  methods?: readonly RendererMethod[];
  /** Serve the store's snapshot on `model-manager:snapshot`, so late windows start warm. */
  store?: Pick<ModelStore, 'getSnapshot'>;
}

export function originTrust(trustedOrigins: readonly string[] = []): (frame: FrameLike) => boolean {
  return (frame) => {
    try {
      const url = new URL(frame.url);
      return url.protocol === 'file:' || trustedOrigins.includes(url.origin);
    } catch {
      return false; // about:blank, empty or garbage URLs are not the app
    }
  };
}

/** Register the handlers and the broadcast; returns a function that removes them. */
export function registerIpcHandlers(ipcMain: IpcMainLike, client: IpcClient, options: IpcOptions): () => void {
  const trusted = options.isTrustedFrame ?? originTrust(options.trustedOrigins);
  const allowed = options.methods ?? RENDERER_METHODS;
  const channels: string[] = [];

  const guard = <T>(event: IpcMainInvokeEventLike, work: () => Promise<T> | T): Promise<Envelope<T>> =>
    envelope(() => {
      // senderFrame is null when the frame navigated away or was destroyed.
      const frame = event?.senderFrame;
      if (!frame || !trusted(frame)) {
        throw new ForbiddenSenderError(`untrusted sender: ${frame?.url ?? 'no frame'}`);
      }
      return work();
    });

  for (const method of allowed) {
    const channel = invokeChannel(method);
    ipcMain.handle(channel, (event, params) =>
      guard(event, () => {
        if (params !== undefined && params !== null && (typeof params !== 'object' || Array.isArray(params))) {
          throw new ProtocolError(`${method}: params must be an object`);
        }
        return client.call(method, (params ?? undefined) as never);
      }),
    );
    channels.push(channel);
  }
  if (options.store) {
    const store = options.store;
    const channel = invokeChannel(SNAPSHOT_METHOD);
    ipcMain.handle(channel, (event) => guard<StoreSnapshot>(event, () => store.getSnapshot()));
    channels.push(channel);
  }

  const broadcast = (event: string, payload: unknown) => {
    for (const contents of options.webContents.getAllWebContents()) {
      try {
        if (contents.isDestroyed()) continue;
        const frame = contents.mainFrame;
        if (!frame || !trusted(frame)) continue; // devtools, other sites: not the app
        contents.send(EVENT_CHANNEL, { event, payload });
      } catch {
        // A window closing under us; the others still get the event.
      }
    }
  };
  const unsubscribe = BRIDGE_EVENTS.map((event) =>
    client.on(event, (payload: unknown) => broadcast(event, payload)),
  );

  return () => {
    for (const channel of channels) ipcMain.removeHandler(channel);
    for (const off of unsubscribe) off();
  };
}
