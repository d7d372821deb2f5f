// Main-process wiring: one ipcMain.handle per method on `model-manager:<method>`, each
// answering with an envelope, and every client event broadcast to the app's windows.
// Electron is not imported: the app passes its own ipcMain and webContents module, so
// this package installs and tests without Electron.
import { ForbiddenSenderError, ProtocolError } from '../errors.js';
import { envelope, type Envelope } from '../envelope.js';
import type { ClientEvents, StatusEvent } from '../status.js';
import type { ModelStore, StoreSnapshot } from '../store.js';
import type { MethodName, Methods } from '../types.js';
import {
  BRIDGE_EVENTS,
  EVENT_CHANNEL,
  RENDERER_METHODS,
  SNAPSHOT_METHOD,
  STATUS_METHOD,
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
  /** When present, served on `model-manager:status`. */
  getStatus?(): StatusEvent;
}

export interface IpcOptions {
  webContents: WebContentsModuleLike;
  /** The app's pages by exact scheme and host: 'app://bundle', 'http://localhost:5173'.
   * Nothing is trusted by default; 'file://' trusts every local file (opt in only if the
   * app loads its pages with loadFile and never navigates to files it did not ship). */
  trustedOrigins?: string[];
  /** Replaces the origin check entirely. */
  isTrustedFrame?: (frame: FrameLike) => boolean;
  /** Methods the renderer may call (default: all but shutdown). */
  methods?: readonly RendererMethod[];
  /** Serve the store's snapshot on `model-manager:snapshot`, so late windows start warm. */
  store?: Pick<ModelStore, 'getSnapshot'>;
  /** Serves `model-manager:status` (default: the client's getStatus, when it has one). */
  statusSource?: () => StatusEvent;
}

/** "scheme://host[:port]", lower-cased. URL.origin is "null" for custom schemes (app://),
 * so trust compares this instead. Null for URLs no page of the app has. */
export function schemeHost(url: string): string | null {
  try {
    const parsed = new URL(url);
    if (parsed.protocol === 'file:') return 'file://';
    if (!parsed.host) return null; // about:blank, data:, javascript:
    return `${parsed.protocol}//${parsed.host}`.toLowerCase();
  } catch {
    return null; // empty or garbage
  }
}

export function originTrust(trustedOrigins: readonly string[] = []): (frame: FrameLike) => boolean {
  const trusted = new Set<string>();
  for (const origin of trustedOrigins) {
    const key = schemeHost(origin);
    if (!key) throw new TypeError(`trustedOrigins: "${origin}" is not scheme://host (e.g. app://bundle, http://localhost:5173, file://)`);
    trusted.add(key);
  }
  return (frame) => {
    const key = schemeHost(frame.url);
    return key !== null && trusted.has(key);
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
  if (options.statusSource ?? client.getStatus) {
    const getStatus = options.statusSource ?? (() => client.getStatus!());
    const channel = invokeChannel(STATUS_METHOD);
    ipcMain.handle(channel, (event) => guard<StatusEvent>(event, () => getStatus()));
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
