// The client's status and event types, free of Node types so the page's type checker
// (DOM lib, no @types/node) can read them through the renderer entry.
import type { Notifications } from './types.js';

export type ClientState = 'starting' | 'running' | 'restarting' | 'broken' | 'stopping' | 'stopped';

export interface ExitInfo {
  code: number | null;
  /** e.g. "SIGKILL". */
  signal: string | null;
  /** Set when the process could not be started at all (e.g. ENOENT). */
  error?: Error;
}

export interface StatusEvent {
  state: ClientState;
  pid: number | null;
  /** Restarts since the client was created. */
  restarts: number;
  /** How the last process ended (restarting, broken). */
  exit?: ExitInfo;
  /** When restarting: the backoff before the next start. */
  delayMs?: number;
  /** When broken: why, as an error payload (e.g. PROTOCOL_MISMATCH). */
  error?: { code: string; message: string };
}

export interface ClientEvents extends Notifications {
  status: StatusEvent;
  /** Every notification, including ones this version of the bridge does not know. */
  notification: { method: string; params: unknown };
}
