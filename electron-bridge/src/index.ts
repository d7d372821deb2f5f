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
export { DEFAULT_RESTART_POLICY, restartDelay, type RestartPolicy } from './supervisor.js';
export type { ExitInfo, StopTimings } from './sidecar-process.js';
