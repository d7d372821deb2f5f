// What the app configures: how the sidecar is started, timeouts, restarts, the logger,
// and the system proxy source. Kept apart from the client so both stay one idea each.
import type { NetworkOptions } from './network.js';
import type { SidecarCommand, StopTimings } from './sidecar-process.js';
import type { RestartPolicy } from './supervisor.js';
import type { MethodName } from './types.js';

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface CallOptions {
  timeoutMs?: number;
}

export interface ModelManagerOptions {
  /** Python interpreter that runs `-m sidecar` (default: $MODEL_MANAGER_PYTHON, else python3/python). */
  python?: string;
  /** A different executable (a frozen sidecar binary); replaces `python -m sidecar`. */
  command?: string;
  /** Arguments for `command`, or instead of `-m sidecar` for `python`. */
  args?: string[];
  /** Appended flags, e.g. ['--stall-timeout', '5']. */
  extraArgs?: string[];
  /** Added to (or, with inheritEnv false, instead of) process.env; undefined unsets. */
  env?: Record<string, string | undefined>;
  inheritEnv?: boolean;
  cwd?: string;
  /** MODEL_MANAGER_HOME, MODEL_MANAGER_REPOSITORY, MODEL_MANAGER_SCHEDULER, MODEL_MANAGER_TOKEN. */
  home?: string;
  repository?: string | string[];
  scheduler?: string;
  token?: string;
  /**
   * Public keys (`ed25519:<base64>`, from `model-manager-repo keygen`) the catalog must be
   * signed with: MODEL_MANAGER_TRUSTED_KEYS. Two during a key rotation.
   */
  trustedKeys?: string[];
  /** MODEL_MANAGER_SIGNATURES; default 'enforce' with trusted keys, else 'off'. */
  signatures?: 'off' | 'warn' | 'enforce';
  /** The system proxy, as Chromium resolves it: see NetworkOptions. */
  network?: NetworkOptions;
  /** Default request timeout; per-method overrides in methodTimeoutsMs. */
  requestTimeoutMs?: number;
  methodTimeoutsMs?: Partial<Record<MethodName, number>>;
  /** How long a new sidecar may take to answer the handshake (getInfo) before it counts as crashed. */
  handshakeTimeoutMs?: number;
  restart?: Partial<RestartPolicy>;
  /** dispose(): wait this long for the answer to `shutdown` … */
  shutdownTimeoutMs?: number;
  /** … then close stdin and wait graceMs, SIGTERM and wait termMs, then SIGKILL. */
  stop?: Partial<StopTimings>;
  logger?: Logger;
  maxLineBytes?: number;
}

export const consoleLogger: Logger = {
  debug: (m) => console.debug(`[model-manager] ${m}`),
  info: (m) => console.info(`[model-manager] ${m}`),
  warn: (m) => console.warn(`[model-manager] ${m}`),
  error: (m) => console.error(`[model-manager] ${m}`),
};

export function sidecarCommand(options: ModelManagerOptions): SidecarCommand {
  const env: NodeJS.ProcessEnv = {
    ...(options.inheritEnv === false ? {} : process.env),
    PYTHONUNBUFFERED: '1', // stderr log lines arrive as they are written
    PYTHONIOENCODING: 'utf-8',
    ...options.env,
  };
  if (options.home !== undefined) env.MODEL_MANAGER_HOME = options.home;
  if (options.repository !== undefined) {
    env.MODEL_MANAGER_REPOSITORY = [options.repository].flat().join(',');
  }
  if (options.scheduler !== undefined) env.MODEL_MANAGER_SCHEDULER = options.scheduler;
  if (options.token !== undefined) env.MODEL_MANAGER_TOKEN = options.token;
  if (options.trustedKeys !== undefined) {
    env.MODEL_MANAGER_TRUSTED_KEYS = options.trustedKeys.join(',');
  }
  if (options.signatures !== undefined) env.MODEL_MANAGER_SIGNATURES = options.signatures;
  const command =
    options.command ??
    options.python ??
    process.env.MODEL_MANAGER_PYTHON ??
    (process.platform === 'win32' ? 'python' : 'python3');
  const args = options.args ?? (options.command ? [] : ['-m', 'sidecar']);
  return { command, args: [...args, ...(options.extraArgs ?? [])], env, cwd: options.cwd };
}
