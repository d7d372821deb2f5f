// Page-side entry (no Node imports): wraps `window.modelManager` into typed methods that
// resolve with results or throw the typed ModelManagerError rebuilt from the envelope,
// plus the store and the error classes.
import { unwrap } from './envelope.js';
import type { ClientEvents, StatusEvent } from './status.js';
import type { BridgeEventName, ModelManagerBridge } from './electron/preload.js';
import type { RendererMethod } from './electron/channels.js';
import type { StoreSnapshot } from './store.js';
import type { Methods } from './types.js';

type Params<M extends RendererMethod> = Methods[M]['params'];
type Result<M extends RendererMethod> = Methods[M]['result'];

export type RendererClient = {
  [M in RendererMethod]: object extends Params<M>
    ? (params?: Params<M>) => Promise<Result<M>>
    : (params: Params<M>) => Promise<Result<M>>;
} & {
  call<M extends RendererMethod>(method: M, params?: Params<M>): Promise<Result<M>>;
  on<E extends BridgeEventName>(event: E, listener: (payload: ClientEvents[E]) => void): () => void;
  /** The main process's store snapshot (needs registerIpcHandlers(..., { store })). */
  snapshot(): Promise<StoreSnapshot>;
  /** The sidecar's status now (restarting, broken, ...). */
  getStatus(): Promise<StatusEvent>;
};

export function connectRenderer(bridge: ModelManagerBridge): RendererClient {
  const call = async <M extends RendererMethod>(method: M, params?: Params<M>): Promise<Result<M>> =>
    unwrap(await bridge.invoke(method, params as never)) as Result<M>;
  const method =
    <M extends RendererMethod>(name: M) =>
    (params?: Params<M>) =>
      call(name, params);
  return {
    call,
    on: (event, listener) => bridge.on(event, listener),
    snapshot: async () => unwrap(await bridge.invoke('snapshot')),
    getStatus: async () => unwrap(await bridge.invoke('status')),
    getInfo: method('getInfo'),
    getModelPath: method('getModelPath') as RendererClient['getModelPath'],
    install: method('install') as RendererClient['install'],
    installUrl: method('installUrl') as RendererClient['installUrl'],
    listModels: method('listModels'),
    getTask: method('getTask') as RendererClient['getTask'],
    listTasks: method('listTasks'),
    pause: method('pause') as RendererClient['pause'],
    resume: method('resume') as RendererClient['resume'],
    cancel: method('cancel') as RendererClient['cancel'],
    remove: method('remove') as RendererClient['remove'],
    verify: method('verify') as RendererClient['verify'],
    ranking: method('ranking'),
    setLimits: method('setLimits'),
    diskUsage: method('diskUsage'),
    prune: method('prune'),
    pin: method('pin') as RendererClient['pin'],
    unpin: method('unpin') as RendererClient['unpin'],
    releaseModel: method('releaseModel') as RendererClient['releaseModel'],
    importModel: method('importModel') as RendererClient['importModel'],
    moveStore: method('moveStore') as RendererClient['moveStore'],
  };
}

export { ModelStore, createModelStore, type StoreSnapshot, type StoreSource, type StoreOptions } from './store.js';
export * from './errors.js';
export { unwrap, type Envelope } from './envelope.js';
export type { ModelManagerBridge } from './electron/preload.js';
export type { StatusEvent, ClientState, ExitInfo } from './status.js';
export type * from './types.js';
