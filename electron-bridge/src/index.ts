// Main-process entry: the client, errors, the store, Electron IPC wiring, the node-agent helper.
export * from './types.js';
export * from './errors.js';
export {
  ModelManagerClient,
  createModelManager,
  sidecarCommand,
  consoleLogger,
  type CallOptions,
  type ClientEvents,
  type ClientState,
  type Logger,
  type ModelManagerApi,
  type ModelManagerOptions,
  type StatusEvent,
} from './client.js';
export { PROTOCOL_VERSION } from './protocol.js';
export { proxyFromPac, redactProxy, type NetworkOptions, type NetworkState, type ProxySetting } from './network.js';
export { DEFAULT_RESTART_POLICY, restartDelay, type RestartPolicy } from './supervisor.js';
export type { ExitInfo, StopTimings } from './sidecar-process.js';
export { ModelStore, createModelStore, type StoreSnapshot, type StoreSource, type StoreEvents, type StoreOptions } from './store.js';
export { envelope, unwrap, type Envelope } from './envelope.js';
export {
  registerIpcHandlers,
  originTrust,
  schemeHost,
  type IpcOptions,
  type IpcClient,
  type IpcMainLike,
  type IpcMainInvokeEventLike,
  type FrameLike,
  type WebContentsLike,
  type WebContentsModuleLike,
} from './electron/ipc.js';
export * from './electron/channels.js';
export {
  requireModelForJob,
  createSchedulerReporter,
  JobRejectedError,
  type ModelJob,
  type UnavailableReport,
  type UnavailableReporter,
  type RequireModelOptions,
  type SchedulerReporterOptions,
  type PathSource,
} from './agent.js';
