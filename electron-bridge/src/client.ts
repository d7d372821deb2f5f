// The client the Electron main process owns: one supervised sidecar for the whole app,
// one typed method per sidecar method, typed events for its notifications. Events
// live on the client, not on a child process, so subscribers keep their streams
// across restarts. A new process counts as running only once it answered the
// handshake (getInfo) with the protocol version this bridge speaks.
import { Emitter, type Listener } from './events.js';
import {
  ClientDisposedError,
  ProtocolMismatchError,
  RequestTimeoutError,
  SidecarBrokenError,
  SidecarExitedError,
  type ModelManagerError,
} from './errors.js';
import { ProxySync, type NetworkState } from './network.js';
import { consoleLogger, sidecarCommand, type CallOptions, type Logger, type ModelManagerOptions } from './options.js';
import { PROTOCOL_VERSION } from './protocol.js';
import { RpcPeer } from './rpc.js';
import { SidecarProcess, type SidecarCommand, type StopTimings } from './sidecar-process.js';
import type { ClientEvents, ClientState, ExitInfo, StatusEvent } from './status.js';
import { DEFAULT_RESTART_POLICY, RestartBudget } from './supervisor.js';
import { NOTIFICATION_NAMES, type MethodName, type Methods, type Notifications } from './types.js';
import * as T from './types.js';

export { consoleLogger, sidecarCommand, type CallOptions, type Logger, type ModelManagerOptions };

export type { ClientEvents, ClientState, ExitInfo, StatusEvent };

// verify re-hashes every file; listModels/install may walk several mirrors.
const DEFAULT_METHOD_TIMEOUTS: Partial<Record<MethodName, number>> = {
  verify: 30 * 60_000,
  install: 120_000,
  installUrl: 120_000,
  listModels: 120_000,
  remove: 120_000,
  importModel: 60 * 60_000, // hashes (and may copy) every file
  moveStore: 24 * 60 * 60_000, // across drives: copies and verifies the whole store
};

// Reads that change nothing: a call caught by a crash is sent once more to the restarted
// sidecar, within its own timeout. Everything else may have happened already, so the
// caller gets SidecarExitedError and decides.
const RETRY_ACROSS_RESTART = new Set<string>(['getInfo', 'getModelPath', 'listModels', 'getTask', 'listTasks', 'ranking']);

type Params<M extends MethodName> = Methods[M]['params'];
type Result<M extends MethodName> = Methods[M]['result'];

/** One typed method per sidecar method. Derived from the generated map, so tsc fails
 * when the sidecar gains a method the client does not implement. */
export type ModelManagerApi = {
  [M in MethodName]: object extends Params<M>
    ? (params?: Params<M>, options?: CallOptions) => Promise<Result<M>>
    : (params: Params<M>, options?: CallOptions) => Promise<Result<M>>;
};

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
  private readonly network: ProxySync | null;
  private proc: SidecarProcess | null = null;
  private procArgs: readonly string[] = [];
  private waiters = new Set<Waiter>();
  private restartTimer: NodeJS.Timeout | null = null;
  private disposing: Promise<void> | null = null;
  private _state: ClientState = 'stopped';
  private _restarts = 0;
  private _info: T.GetInfoResult | null = null;
  private brokenBy: ModelManagerError | null = null;
  private lastExit: ExitInfo | undefined;
  private launching = 0;
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
    const network = options.network;
    const firstRepository = [options.repository ?? this.command.env.MODEL_MANAGER_REPOSITORY ?? []].flat().join(',').split(',')[0];
    this.network = network
      ? new ProxySync(network, network.url ?? (firstRepository || undefined), {
          setNetwork: (params) => this.setNetwork(params),
          env: this.command.env,
          logger: this.logger,
        })
      : null;
  }

  /** Spawn the sidecar (after resolving the system proxy, when `network` is set). createModelManager() calls this. */
  start(): this {
    if (this.disposing) throw new ClientDisposedError('the client was disposed');
    if (this.proc || this.restartTimer || this.launching) return this;
    this.budget.reset();
    this.brokenBy = null;
    this.launch();
    return this;
  }

  get state(): ClientState {
    return this._state;
  }

  /** The current status, as the last `status` event said it (for a store created late). */
  getStatus(): StatusEvent {
    return this.statusEvent();
  }

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  get restarts(): number {
    return this._restarts;
  }

  /** The running sidecar's getInfo answer from its handshake (null before the first one). */
  get info(): T.GetInfoResult | null {
    return this._info;
  }

  /** What the system proxy resolved to and what the sidecar uses (null without `network`). */
  get networkState(): NetworkState | null {
    return this.network?.snapshot ?? null;
  }

  on<E extends keyof ClientEvents>(event: E, listener: Listener<ClientEvents[E]>): () => void {
    return this.events.on(event, listener);
  }

  off<E extends keyof ClientEvents>(event: E, listener: Listener<ClientEvents[E]>): void {
    this.events.off(event, listener);
  }

  /** Call any sidecar method by name (the typed methods below all come here). */
  async call<M extends MethodName>(method: M, params?: Params<M>, options: CallOptions = {}): Promise<Result<M>> {
    return this.request(method, params, options) as Promise<Result<M>>;
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
  /** Set the sidecar's proxy at run time (with `network`, the client does this itself):
   * a proxy URL, `"direct"`, or null for the sidecar's environment. An older sidecar
   * rejects it with ProtocolError, rpcCode -32601. */
  setNetwork(params: T.SetNetworkParams, options?: CallOptions): Promise<T.SetNetworkResult> {
    return this.call('setNetwork', params, options);
  }
  /** Bytes on disk per installed version (shared files once), partial downloads, free space. */
  diskUsage(params?: T.DiskUsageParams, options?: CallOptions) {
    return this.call('diskUsage', params, options);
  }
  /** Remove old unpinned versions, stale partial downloads and leftovers (`dryRun` to list). */
  prune(params?: T.PruneParams, options?: CallOptions) {
    return this.call('prune', params, options);
  }
  /** Keep a version from quota eviction and prune. */
  pin(params: T.PinParams, options?: CallOptions) {
    return this.call('pin', params, options);
  }
  unpin(params: T.UnpinParams, options?: CallOptions) {
    return this.call('unpin', params, options);
  }
  /** End a lease from `getModelPath {lease: true}`. */
  releaseModel(params: T.ReleaseModelParams, options?: CallOptions) {
    return this.call('releaseModel', params, options);
  }
  /** Adopt a model's files already on disk (copy, hardlink or move), each checked
   * against its manifest's SHA-256; nothing is registered on any mismatch. */
  importModel(params: T.ImportModelParams, options?: CallOptions) {
    return this.call('importModel', params, options);
  }
  /** Move the whole store to another folder or drive. Store the answer's `home` and
   * start the sidecar with it from now on (the old folder forwards there meanwhile). */
  moveStore(params: T.MoveStoreParams, options?: CallOptions) {
    return this.call('moveStore', params, options);
  }
  /** Asks the sidecar to stop. It is then restarted like after a crash; to end it, use dispose(). */
  shutdown(params?: T.ShutdownParams, options?: CallOptions) {
    return this.call('shutdown', params, options);
  }

  /** Ask the system proxy again now (e.g. after session.setProxy or a network change) and pass it on. */
  async refreshNetwork(): Promise<NetworkState | null> {
    return this.network ? this.network.refresh() : null;
  }

  /** Graceful stop: `shutdown`, then stdin EOF, then SIGTERM, then SIGKILL. Idempotent. */
  dispose(): Promise<void> {
    this.disposing ??= this.stopAll();
    return this.disposing;
  }

  private async request(method: string, params: unknown, options: CallOptions): Promise<unknown> {
    const timeoutMs =
      options.timeoutMs ??
      this.options.methodTimeoutsMs?.[method as MethodName] ??
      DEFAULT_METHOD_TIMEOUTS[method as MethodName] ??
      this.options.requestTimeoutMs ??
      30_000;
    const deadline = performance.now() + timeoutMs;
    const left = () => Math.max(1, Math.ceil(deadline - performance.now()));
    for (let attempt = 0; ; attempt++) {
      await this.whenRunning(method, left());
      try {
        return await this.rpc.request(method as MethodName, params as never, left());
      } catch (error) {
        const retry = attempt === 0 && error instanceof SidecarExitedError && RETRY_ACROSS_RESTART.has(method) && deadline - performance.now() > 1;
        if (!retry) throw error;
        this.logger.debug(`${method} was pending when the sidecar exited; asking the restarted one`);
      }
    }
  }

  private async stopAll(): Promise<void> {
    this.setState('stopping');
    this.network?.stop();
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

  /** First start: resolve the system proxy (bounded) so the sidecar starts with it. */
  private launch(): void {
    this.setState('starting');
    if (!this.network) return this.spawn();
    this.launching += 1;
    void this.network.resolve().finally(() => {
      this.launching -= 1;
      if (this._state !== 'starting') return; // disposed meanwhile
      this.spawn();
      this.network?.startPolling();
    });
  }

  private spawn(): void {
    this.procArgs = this.network?.startArgs() ?? [];
    const command = { ...this.command, args: [...this.command.args, ...this.procArgs] };
    const proc = new SidecarProcess(
      command,
      {
        line: (text) => this.rpc.handleLine(text),
        overlong: (bytes) => this.logger.warn(`dropped an overlong line from the sidecar (${bytes} bytes)`),
        stderr: (text) => this.logger.info(`[sidecar] ${text}`),
      },
      this.options.maxLineBytes,
    );
    this.proc = proc;
    if (!process.listeners('exit').includes(this.exitHook)) process.on('exit', this.exitHook);
    void proc.exited.then((info) => this.onExit(proc, info));
    if (this._state !== 'starting') this.setState('starting');
    void this.handshake(proc);
  }

  private async handshake(proc: SidecarProcess): Promise<void> {
    let info: T.GetInfoResult;
    try {
      info = await this.rpc.request('getInfo', {}, this.options.handshakeTimeoutMs ?? 30_000);
    } catch (error) {
      if (this.proc !== proc || error instanceof SidecarExitedError) return; // onExit handles it
      // Alive but not answering the protocol: count it as a crash (onExit restarts it).
      this.logger.error(`the sidecar did not answer its handshake: ${error instanceof Error ? error.message : String(error)}`);
      proc.kill('SIGKILL');
      return;
    }
    if (this.proc !== proc) return;
    if (info.protocolVersion !== PROTOCOL_VERSION) {
      const error = new ProtocolMismatchError(
        `the sidecar (version ${info.version}) speaks protocol ${info.protocolVersion}, but this app's ` +
          `@model-manager/electron-bridge speaks protocol ${PROTOCOL_VERSION}: install a matching sidecar`,
        { expected: PROTOCOL_VERSION, actual: info.protocolVersion, sidecarVersion: info.version },
      );
      this.logger.error(error.message);
      this.proc = null; // restarting would start the same program again
      void proc.stop(this.stopTimings);
      this.fail(error);
      return;
    }
    this._info = info;
    this.setState('running');
    for (const waiter of this.waiters) waiter.resolve(proc);
    this.waiters.clear();
    void this.network?.afterStart(this.procArgs);
  }

  private onExit(proc: SidecarProcess, info: ExitInfo): void {
    if (this.proc !== proc) return;
    const wasStarting = this._state === 'starting';
    this.proc = null;
    this.lastExit = info;
    const how = info.error ? info.error.message : `code ${info.code}, signal ${info.signal}`;
    if (this._state === 'stopping' || this._state === 'stopped') return;
    this.rpc.rejectAll('exited', `the sidecar exited (${how})`);
    if (wasStarting && this.procArgs.includes('--proxy') && proc.stderrTail.some((l) => /unrecognized arguments:.*--proxy/.test(l))) {
      this.network?.flagRefused(); // an older sidecar: start it again without the flag, not a crash
      this.spawn();
      return;
    }
    const delay = this.budget.crashed(Date.now());
    if (delay === null) {
      this.logger.error(`the sidecar keeps exiting (${how}); giving up until start() is called again`);
      this.fail(new SidecarBrokenError(`the sidecar keeps exiting (${how})`, { exit: info }));
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

  private fail(error: ModelManagerError): void {
    this.brokenBy = error;
    this.rpc.rejectAll('broken', error.message);
    this.rejectWaiters(error);
    this.setState('broken');
  }

  private whenRunning(method: string, timeoutMs: number): Promise<SidecarProcess> {
    if (this._state === 'running' && this.proc?.running) return Promise.resolve(this.proc);
    if (this._state === 'broken') return Promise.reject(this.brokenBy ?? new SidecarBrokenError('the sidecar is broken'));
    if (this._state === 'stopping' || this._state === 'stopped') {
      return Promise.reject(new ClientDisposedError(this.disposing ? 'the client was disposed' : 'the client is not started'));
    }
    // Starting or restarting: wait for a process that answered its handshake, within the request's own timeout.
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

  private statusEvent(delayMs?: number): StatusEvent {
    const event: StatusEvent = { state: this._state, pid: this.pid, restarts: this._restarts };
    if (this._state !== 'running' && this.lastExit) event.exit = this.lastExit;
    if (delayMs !== undefined) event.delayMs = delayMs;
    if (this._state === 'broken' && this.brokenBy) event.error = { code: this.brokenBy.code, message: this.brokenBy.message };
    return event;
  }

  private setState(state: ClientState, delayMs?: number): void {
    this._state = state;
    this.events.emit('status', this.statusEvent(delayMs));
  }
}

/** Create the app's one client and start its sidecar. */
export function createModelManager(options: ModelManagerOptions = {}): ModelManagerClient {
  return new ModelManagerClient(options).start();
}
