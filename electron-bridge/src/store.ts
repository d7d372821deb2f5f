// Keeps the latest task and model state, fed by one subscription for the whole app, so
// a window opened late renders current progress at once instead of starting from 0%.
// Works over the main-process client or over the renderer bridge (no Node imports),
// and fits React's useSyncExternalStore (subscribe + a stable getSnapshot).
import type { StatusEvent } from './status.js';
import type { ListModelsResult, ListTasksResult, ModelInfo, ModelsChangedParams, Task } from './types.js';

export interface StoreSnapshot {
  /** Every task seen, by taskId (finished ones stay, so a page can show "done"). */
  tasks: Readonly<Record<string, Task>>;
  models: readonly ModelInfo[];
  /** True when the model list came from the cache because the repository was down. */
  modelsStale: boolean;
  status: StatusEvent | null;
  /** Bumped on every change. */
  revision: number;
}

export interface StoreEvents {
  'task.progress': Task;
  'task.state': Task;
  'models.changed': ModelsChangedParams;
  status: StatusEvent;
}

/** What the store reads from: the client in main, connectRenderer(...) in a page. */
export interface StoreSource {
  listTasks(): Promise<ListTasksResult>;
  listModels(params?: { refresh?: boolean }): Promise<ListModelsResult>;
  on<E extends keyof StoreEvents>(event: E, listener: (payload: StoreEvents[E]) => void): () => void;
  /** Optional: a warm snapshot from another store (the main process's, over IPC). */
  snapshot?(): Promise<StoreSnapshot>;
  /** Optional: the sidecar's status now, so a store created after the last `status` event still knows it. */
  getStatus?(): StatusEvent | Promise<StatusEvent>;
}

export interface StoreOptions {
  /** models.changed arrives per version; refetch the list once after a burst. */
  refreshDelayMs?: number;
  onError?: (error: unknown) => void;
}

const EMPTY: StoreSnapshot = { tasks: {}, models: [], modelsStale: false, status: null, revision: 0 };

export class ModelStore {
  private snapshot: StoreSnapshot = EMPTY;
  private readonly listeners = new Set<() => void>();
  private readonly unsubscribers: (() => void)[] = [];
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly refreshDelayMs: number;
  private readonly onError: (error: unknown) => void;
  // Tasks updated by an event while a snapshot load was in flight: the event is newer.
  private touchedDuringLoad: Set<string> | null = null;
  private statusSeen = false;

  constructor(
    private readonly source: StoreSource,
    options: StoreOptions = {},
  ) {
    this.refreshDelayMs = options.refreshDelayMs ?? 250;
    this.onError = options.onError ?? (() => {});
  }

  /** Subscribe to the source first (nothing is missed), then load the current state. */
  async start(): Promise<this> {
    if (this.unsubscribers.length === 0) {
      this.unsubscribers.push(
        this.source.on('task.progress', (task) => this.putTask(task)),
        this.source.on('task.state', (task) => this.putTask(task)),
        this.source.on('models.changed', (change) => this.applyModelChange(change)),
        this.source.on('status', (status) => {
          this.statusSeen = true;
          this.update({ status });
          // A restarted sidecar may have moved on (resumed tasks): reload everything.
          if (status.state === 'running' && status.restarts > 0) void this.load();
        }),
      );
    }
    await this.load();
    return this;
  }

  stop(): void {
    for (const off of this.unsubscribers.splice(0)) off();
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
  }

  getSnapshot = (): StoreSnapshot => this.snapshot;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /** Reload tasks and models (e.g. when a page opens, or with refresh: true to re-read the catalog). */
  async load(options: { refresh?: boolean } = {}): Promise<void> {
    this.touchedDuringLoad = new Set();
    if (!this.statusSeen && this.source.getStatus) {
      // The client may have announced its status before this store subscribed.
      const status = await Promise.resolve()
        .then(() => this.source.getStatus?.())
        .catch(() => undefined);
      if (status && !this.statusSeen) this.update({ status });
    }
    try {
      const warm = !options.refresh && this.source.snapshot ? await this.source.snapshot().catch(() => null) : null;
      const [tasks, models] = warm
        ? [Object.values(warm.tasks), { models: [...warm.models], stale: warm.modelsStale }]
        : await Promise.all([
            this.source.listTasks().then((r) => r.tasks),
            this.source.listModels(options.refresh ? { refresh: true } : undefined),
          ]);
      const merged: Record<string, Task> = { ...this.snapshot.tasks };
      for (const task of tasks) if (!this.touchedDuringLoad.has(task.taskId)) merged[task.taskId] = task;
      this.update({ tasks: merged, models: models.models, modelsStale: models.stale, ...(warm?.status && !this.statusSeen ? { status: warm.status } : {}) });
    } catch (error) {
      this.onError(error);
    } finally {
      this.touchedDuringLoad = null;
    }
  }

  private putTask(task: Task): void {
    this.touchedDuringLoad?.add(task.taskId);
    this.update({ tasks: { ...this.snapshot.tasks, [task.taskId]: task } });
  }

  private applyModelChange(change: ModelsChangedParams): void {
    // Show the new state now; the debounced reload brings paths and sizes.
    const models = this.snapshot.models.map((model) =>
      model.id !== change.modelId
        ? model
        : {
            ...model,
            state: change.state,
            installed: model.installed.map((v) => (v.version === change.version ? { ...v, state: change.state } : v)),
          },
    );
    this.update({ models });
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.source.listModels().then(
        (result) => this.update({ models: result.models, modelsStale: result.stale }),
        (error: unknown) => this.onError(error),
      );
    }, this.refreshDelayMs);
  }

  private update(patch: Partial<StoreSnapshot>): void {
    this.snapshot = { ...this.snapshot, ...patch, revision: this.snapshot.revision + 1 };
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch (error) {
        this.onError(error);
      }
    }
  }
}

/** Create a store over `source` and load it. */
export function createModelStore(source: StoreSource, options?: StoreOptions): Promise<ModelStore> {
  return new ModelStore(source, options).start();
}
