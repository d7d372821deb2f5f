// The IPC contract between main and preload: channel names and what the renderer may
// call. Pure constants, shared by both sides so they cannot disagree.
import { METHOD_NAMES, NOTIFICATION_NAMES, type MethodName } from '../types.js';

export const CHANNEL_PREFIX = 'model-manager:';
/** ipcMain.handle channel for a method: `model-manager:<method>`. */
export const invokeChannel = (method: string): string => `${CHANNEL_PREFIX}${method}`;
/** webContents.send channel for every event: payload `{ event, payload }`. */
export const EVENT_CHANNEL = `${CHANNEL_PREFIX}event`;
/** The store's snapshot (when registerIpcHandlers got a store). */
export const SNAPSHOT_METHOD = 'snapshot';
/** The client's current status (a page opened after the last status event). */
export const STATUS_METHOD = 'status';

// The renderer may not stop the app's sidecar nor change its proxy (the main process
// owns the network settings); everything else is a page feature.
const MAIN_ONLY = new Set<string>(['shutdown', 'setNetwork']);
export type RendererMethod = Exclude<MethodName, 'shutdown' | 'setNetwork'>;
export const RENDERER_METHODS: readonly RendererMethod[] = METHOD_NAMES.filter(
  (m): m is RendererMethod => !MAIN_ONLY.has(m),
);

export const BRIDGE_EVENTS = [...NOTIFICATION_NAMES, 'status'] as const;
export type BridgeEventName = (typeof BRIDGE_EVENTS)[number];
