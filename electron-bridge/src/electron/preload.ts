// The preload side: exposes a narrow `window.modelManager` through contextBridge —
// invoke a known method, subscribe to a known event — so the page never holds
// ipcRenderer or an IPC event object. Results stay envelopes here (contextBridge would
// strip a typed error's class and fields); connectRenderer() rebuilds them in the page.
// No runtime imports besides the channel constants: a preload is bundled small.
import type { Envelope } from '../envelope.js';
import type { StoreSnapshot } from '../store.js';
import type { Methods } from '../types.js';
import {
  BRIDGE_EVENTS,
  EVENT_CHANNEL,
  RENDERER_METHODS,
  SNAPSHOT_METHOD,
  STATUS_METHOD,
  invokeChannel,
  type BridgeEventName,
  type RendererMethod,
} from './channels.js';
import type { ClientEvents, StatusEvent } from '../status.js';

export interface ContextBridgeLike {
  exposeInMainWorld(apiKey: string, api: unknown): void;
}
export interface IpcRendererLike {
  invoke(channel: string, ...args: unknown[]): Promise<unknown>;
  on(channel: string, listener: (event: unknown, ...args: unknown[]) => void): unknown;
  removeListener(channel: string, listener: (event: unknown, ...args: unknown[]) => void): unknown;
}

type Extra = typeof SNAPSHOT_METHOD | typeof STATUS_METHOD;
export type BridgeResult<M extends RendererMethod | Extra> = M extends RendererMethod
  ? Methods[M]['result']
  : M extends typeof STATUS_METHOD
    ? StatusEvent
    : StoreSnapshot;

/** What `window.modelManager` is. */
export interface ModelManagerBridge {
  invoke<M extends RendererMethod | Extra>(
    method: M,
    params?: M extends RendererMethod ? Methods[M]['params'] : undefined,
  ): Promise<Envelope<BridgeResult<M>>>;
  on<E extends BridgeEventName>(event: E, listener: (payload: ClientEvents[E]) => void): () => void;
}

const KNOWN_METHODS = new Set<string>([...RENDERER_METHODS, SNAPSHOT_METHOD, STATUS_METHOD]);
const KNOWN_EVENTS = new Set<string>(BRIDGE_EVENTS);

/** Build the API (exported for tests; exposeModelManager is what a preload calls). */
export function createBridge(ipcRenderer: IpcRendererLike): ModelManagerBridge {
  const listeners = new Map<string, Set<(payload: unknown) => void>>();
  let attached = false;
  // One IPC listener for all events, attached while anyone listens; the IPC event
  // object never leaves this function.
  const onEvent = (_event: unknown, message: unknown) => {
    if (!message || typeof message !== 'object') return;
    const { event, payload } = message as { event?: unknown; payload?: unknown };
    if (typeof event !== 'string') return;
    for (const listener of [...(listeners.get(event) ?? [])]) {
      try {
        listener(payload);
      } catch (error) {
        console.error('[model-manager] event listener threw', error);
      }
    }
  };

  return {
    invoke(method, params) {
      if (!KNOWN_METHODS.has(method)) {
        return Promise.resolve({ ok: false, error: { code: 'PROTOCOL_ERROR', message: `unknown method ${String(method)}`, data: null } });
      }
      return ipcRenderer.invoke(invokeChannel(method), params) as Promise<never>;
    },
    on(event, listener) {
      if (!KNOWN_EVENTS.has(event) || typeof listener !== 'function') throw new TypeError(`unknown event ${String(event)}`);
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      const wrapped = listener as (payload: unknown) => void;
      set.add(wrapped);
      if (!attached) {
        ipcRenderer.on(EVENT_CHANNEL, onEvent);
        attached = true;
      }
      return () => {
        set.delete(wrapped);
        if (attached && [...listeners.values()].every((s) => s.size === 0)) {
          ipcRenderer.removeListener(EVENT_CHANNEL, onEvent);
          attached = false;
        }
      };
    },
  };
}

/** Call from the app's preload: `exposeModelManager(contextBridge, ipcRenderer)`. */
export function exposeModelManager(
  contextBridge: ContextBridgeLike,
  ipcRenderer: IpcRendererLike,
  apiKey = 'modelManager',
): void {
  contextBridge.exposeInMainWorld(apiKey, createBridge(ipcRenderer));
}

export { EVENT_CHANNEL, invokeChannel, RENDERER_METHODS, BRIDGE_EVENTS, type RendererMethod, type BridgeEventName };
