// The client the Electron main process owns: one supervised sidecar for the whole app,
// one typed method per sidecar method, typed events for its notifications. Events
// live on the client, not on a child process, so subscribers keep their streams
// across restarts.
import { Emitter, type Listener } from './events.js';
import { ClientDisposedError, RequestTimeoutError, SidecarBrokenError, type ModelManagerError } from './errors.js';
import { RpcPeer } from './rpc.js';
import { SidecarProcess, type ExitInfo, type SidecarCommand, type StopTimings } from './sidecar-process.js';
import { DEFAULT_RESTART_POLICY, RestartBudget, type RestartPolicy } from './supervisor.js';
import { NOTIFICATION_NAMES, type MethodName, type Methods, type Notifications } from './types.js';
import * as T from './types.js';

export type ClientState = 'running' | 'restarting' | 'broken' | 'stopping' | 'stopped';

export interface StatusEvent {
  state: ClientState;
  pid: number | null;
  /** Restarts since the client was created. */
  restarts: number;
  /** How the last process ended (restarting, broken). */
  exit?: ExitInfo;
  /** When restarting: the backoff before the next start. */
  delayMs?: number;
}

export interface ClientEvents extends Notifications {
  status: StatusEvent;
  /** Every notification, including ones this version of the bridge does not know. */
  notification: { method: string; params: unknown };
}

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
  /** Default request timeout; per-method overrides in methodTimeoutsMs. */
  requestTimeoutMs?: number;
  methodTimeoutsMs?: Partial<Record<MethodName, number>>;
  restart?: Partial<RestartPolicy>;
  /** dispose(): wait this long for the answer to `shutdown` … */
  shutdownTimeoutMs?: number;
  /** … then close stdin and wait graceMs, SIGTERM and wait termMs, then SIGKILL. */
  stop?: Partial<StopTimings>;
  logger?: Logger;
  maxLineBytes?: number;
}

// verify re-hashes every file; listModels/install may walk several mirrors.
const DEFAULT_METHOD_TIMEOUTS: Partial<Record<MethodName, number>> = {
  verify: 30 * 60_000,
  install: 120_000,
  installUrl: 120_000,
  listModels: 120_000,
  remove: 120_000,
};

type Params<M extends MethodName> = Methods[M]['params'];
type Result<M extends MethodName> = Methods[M]['result'];

/** One typed method per sidecar method. Derived from the generated map, so tsc fails
 * when the sidecar gains a method the client does not implement. */
export type ModelManagerApi = {
  [M in MethodName]: object extends Params<M>
    ? (params?: Params<M>, options?: CallOptions) => Promise<Result<M>>
    : (params: Params<M>, options?: CallOptions) => Promise<Result<M>>;
};

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
  const command =
    options.command ??
    options.python ??
    process.env.MODEL_MANAGER_PYTHON ??
    (process.platform === 'win32' ? 'python' : 'python3');
  const args = options.args ?? (options.command ? [] : ['-m', 'sidecar']);
  return { command, args: [...args, ...(options.extraArgs ?? [])], env, cwd: options.cwd };
}

interface Waiter {
  resolve(proc: SidecarProcess): void;
  reject(error: ModelManagerError): void;
}

export class ModelManagerClient implements ModelManagerApi {
  private readonly events: Emitter<ClientEvents>;
  private readonly rpc: RpcPeer;
  private readonly command: SidecarCommand;
  private readonly logger: Logger;
  private readonly budget: RestartBudget;
  private readonly stopTimings: StopTimings;
  private proc: SidecarProcess | null = null;
  private waiters = new Set<Waiter>();
  private restartTimer: NodeJS.Timeout | null = null;
  private disposing: Promise<void> | null = null;
  private _state: ClientState = 'stopped';
  private _restarts = 0;
  private lastExit: ExitInfo | undefined;
  // If the app exits without dispose(), still stop the sidecar (it saves its state on SIGTERM).
  private readonly exitHook = () => this.proc?.kill('SIGTERM');

  constructor(private readonly options: ModelManagerOptions = {}) {
    this.logger = options.logger ?? consoleLogger;
    this.command = sidecarCommand(options);
    this.budget = new RestartBudget({ ...DEFAULT_RESTART_POLICY, ...options.restart });
    this.stopTimings = { graceMs: 5000, termMs: 3000, ...options.stop };
    this.events = new Emitter<ClientEvents>((error, event) =>
      this.logger.error(`a "${String(event)}" listener threw: ${String(error)}`),
    );
    this.rpc = new RpcPeer({
      send: (line) => {
        if (!this.proc) throw new Error('the sidecar is not running');
        this.proc.write(line);
      },
      notification: (method, params) => this.onNotification(method, params),
      malformed: (reason, line) =>
        this.logger.warn(`ignored a line from the sidecar (${reason}): ${line.slice(0, 200)}`),
    });
  }

  /** Spawn the sidecar. createModelManager() calls this for you. */
  start(): this {
    if (this.disposing) throw new ClientDisposedError('the client was disposed');
    if (this.proc || this.restartTimer) return this;
    this.budget.reset();
    this.spawn();
    return this;
  }

  get state(): ClientState {
    return this._state;
  }

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  get restarts(): number {
    return this._restarts;
  }

  on<E extends keyof ClientEvents>(event: E, listener: Listener<ClientEvents[E]>): () => void {
    return this.events.on(event, listener);
  }

  off<E extends keyof ClientEvents>(event: E, listener: Listener<ClientEvents[E]>): void {
    this.events.off(event, listener);
  }

  /** Call any sidecar method by name (the typed methods below all come here). */
  async call<M extends MethodName>(method: M, params?: Params<M>, options: CallOptions = {}): Promise<Result<M>> {
    const timeoutMs =
      options.timeoutMs ??
      this.options.methodTimeoutsMs?.[method] ??
      DEFAULT_METHOD_TIMEOUTS[method] ??
      this.options.requestTimeoutMs ??
      30_000;
    const started = performance.now();
    await this.whenRunning(method, timeoutMs);
    const left = Math.max(1, Math.ceil(timeoutMs - (performance.now() - started)));
    return this.rpc.request(method, params, left);
  }

  getInfo(params?: T.GetInfoParams, options?: CallOptions) {
    return this.call('getInfo', params, options);
  }
  getModelPath(params: T.GetModelPathParams, options?: CallOptions) {
    return this.call('getModelPath', params, options);
  }
  install(params: T.InstallParams, options?: CallOptions) {
    return this.call('install', params, options);
  }
  installUrl(params: T.InstallUrlParams, options?: CallOptions) {
    return this.call('installUrl', params, options);
  }
  listModels(params?: T.ListModelsParams, options?: CallOptions) {
    return this.call('listModels', params, options);
  }
  getTask(params: T.GetTaskParams, options?: CallOptions) {
    return this.call('getTask', params, options);
  }
  listTasks(params?: T.ListTasksParams, options?: CallOptions) {
    return this.call('listTasks', params, options);
  }
  pause(params: T.PauseParams, options?: CallOptions) {
    return this.call('pause', params, options);
  }
  resume(params: T.ResumeParams, options?: CallOptions) {
    return this.call('resume', params, options);
  }
  cancel(params: T.CancelParams, options?: CallOptions) {
    return this.call('cancel', params, options);
  }
  remove(params: T.RemoveParams, options?: CallOptions) {
    return this.call('remove', params, options);
  }
  verify(params: T.VerifyParams, options?: CallOptions) {
    return this.call('verify', params, options);
  }
  ranking(params?: T.RankingParams, options?: CallOptions) {
    return this.call('ranking', params, options);
  }
  /** Change the bandwidth cap, concurrent tasks or connections per file at run time. */
  setLimits(params?: T.SetLimitsParams, options?: CallOptions) {
    return this.call('setLimits', params, options);
  }

  /** The proxy the app resolved (`session.resolveProxy`), `"direct"`, or null for the environment. */
  setNetwork(params: T.SetNetworkParams, options?: CallOptions) {
    return this.call('setNetwork', params, options);
  }
  /** Asks the sidecar to stop. It is then restarted like after a crash; to end it, use dispose(). */
  shutdown(params?: T.ShutdownParams, options?: CallOptions) {
    return this.call('shutdown', params, options);
  }

  /** Graceful stop: `shutdown`, then stdin EOF, then SIGTERM, then SIGKILL. Idempotent. */
  dispose(): Promise<void> {
    this.disposing ??= this.stopAll();
    return this.disposing;
  }

  private async stopAll(): Promise<void> {
    this.setState('stopping');
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    this.rejectWaiters(new ClientDisposedError('the client was disposed'));
    const proc = this.proc;
    if (proc?.running) {
      // shutdown first: the sidecar answers, stops downloads (parts kept), saves its registry.
      await this.rpc.request('shutdown', {}, this.options.shutdownTimeoutMs ?? 2000).catch(() => undefined);
      await proc.stop(this.stopTimings);
    }
    this.rpc.rejectAll('disposed', 'the client was disposed');
    process.off('exit', this.exitHook);
    this.setState('stopped');
    this.events.clear();
  }

  private spawn(): void {
    const proc = new SidecarProcess(
      this.command,
      {
        line: (text) => this.rpc.handleLine(text),
        overlong: (bytes) => this.logger.warn(`dropped an overlong line from the sidecar (${bytes} bytes)`),
        stderr: (text) => this.logger.info(`[sidecar] ${text}`),
      },
      this.options.maxLineBytes,
    );
    this.proc = proc;
    if (this.listenerCountOnExit() === 0) process.on('exit', this.exitHook);
    void proc.exited.then((info) => this.onExit(proc, info));
    this.setState('running');
    for (const waiter of this.waiters) waiter.resolve(proc);
    this.waiters.clear();
  }

  private listenerCountOnExit(): number {
    return process.listeners('exit').filter((l) => l === this.exitHook).length;
  }

  private onExit(proc: SidecarProcess, info: ExitInfo): void {
    if (this.proc !== proc) return;
    this.proc = null;
    this.lastExit = info;
    const how = info.error ? info.error.message : `code ${info.code}, signal ${info.signal}`;
    if (this._state === 'stopping' || this._state === 'stopped') return;
    this.rpc.rejectAll('exited', `the sidecar exited (${how})`);
    const delay = this.budget.crashed(Date.now());
    if (delay === null) {
      this.logger.error(`the sidecar keeps exiting (${how}); giving up until start() is called again`);
      this.rejectWaiters(new SidecarBrokenError(`the sidecar keeps exiting (${how})`, { exit: info }));
      this.setState('broken');
      return;
    }
    this.logger.warn(`the sidecar exited (${how}); restarting in ${delay} ms`);
    this.setState('restarting', delay);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this._state !== 'restarting') return;
      this._restarts += 1;
      this.spawn();
    }, delay);
  }

  private whenRunning(method: string, timeoutMs: number): Promise<SidecarProcess> {
    if (this.proc?.running) return Promise.resolve(this.proc);
    if (this._state === 'broken') return Promise.reject(new SidecarBrokenError('the sidecar is broken'));
    if (this._state === 'stopping' || this._state === 'stopped') {
      return Promise.reject(new ClientDisposedError(this.disposing ? 'the client was disposed' : 'the client is not started'));
    }
    // Restarting: wait for the next process, within the request's own timeout.
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new RequestTimeoutError(`${method}: the sidecar did not come back within ${timeoutMs} ms`, { method }));
      }, timeoutMs);
      const waiter: Waiter = {
        resolve: (proc) => (clearTimeout(timer), resolve(proc)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      };
      this.waiters.add(waiter);
    });
  }

  private rejectWaiters(error: ModelManagerError): void {
    for (const waiter of this.waiters) waiter.reject(error);
    this.waiters.clear();
  }

  private onNotification(method: string, params: unknown): void {
    if (!params || typeof params !== 'object') {
      this.logger.warn(`ignored notification ${method} without object params`);
      return;
    }
    this.events.emit('notification', { method, params });
    if ((NOTIFICATION_NAMES as readonly string[]).includes(method)) {
      this.events.emit(method as keyof Notifications, params as never);
    }
  }

  private setState(state: ClientState, delayMs?: number): void {
    this._state = state;
    const event: StatusEvent = { state, pid: this.pid, restarts: this._restarts };
    if (state !== 'running' && this.lastExit) event.exit = this.lastExit;
    if (delayMs !== undefined) event.delayMs = delayMs;
    this.events.emit('status', event);
  }
}

/** Create the app's one client and start its sidecar. */
export function createModelManager(options: ModelManagerOptions = {}): ModelManagerClient {
  return new ModelManagerClient(options).start();
}
