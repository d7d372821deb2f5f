// Downloads as the user thinks of them: one row per install they asked for, its
// dependencies shown inside it and counted in its progress bar, with pause / resume /
// cancel for the whole install.
import type { RendererClient, Task } from '@model-manager/electron-bridge/renderer';

const FINAL = new Set(['ready', 'failed', 'cancelled']);
export const isFinal = (task: Task): boolean => FINAL.has(task.state);

export interface Install {
  key: string;
  modelId: string;
  version: string;
  /** The task the user started first, then its dependencies. */
  taskIds: string[];
}

export interface InstallView {
  install: Install;
  tasks: Task[];
  state: Task['state'];
  bytesDone: number;
  bytesTotal: number;
  speedBps: number;
  etaSeconds: number | null;
  error: Task['error'];
}

export class Downloads {
  private readonly installs = new Map<string, Install>();
  private readonly owner = new Map<string, string>(); // task id → install key
  private readonly dismissed = new Set<string>();
  // Tasks this page saw unfinished: only those get a row when they finish.
  private readonly seenActive = new Set<string>();
  // listTasks answers from install(), for tasks whose first event has not arrived yet.
  private readonly known = new Map<string, Task>();
  // While an install call is out, new tasks may be its dependencies: not adopted alone.
  private pending = 0;

  constructor(private readonly mm: RendererClient) {}

  /**
   * Install `modelId` with its dependencies. The sidecar starts the dependency tasks in
   * the same call but answers with the parent's task id only, so the tasks that are new
   * right after the call are taken as its dependencies.
   */
  async install(modelId: string, current: Readonly<Record<string, Task>>): Promise<'started' | 'installed'> {
    const before = new Set(Object.keys(current));
    this.pending += 1;
    try {
      const result = await this.mm.install({ modelId });
      if (!result.taskId) return 'installed';
      const { tasks } = await this.mm.listTasks();
      this.claim(modelId, result, before, tasks);
      return 'started';
    } finally {
      this.pending -= 1;
    }
  }

  private claim(modelId: string, result: { taskId: string | null; version: string }, before: Set<string>, tasks: Task[]): void {
    const taskId = result.taskId!;
    const deps = tasks.filter((t) => t.taskId !== taskId && !before.has(t.taskId) && !isFinal(t) && this.adoptable(t.taskId));
    const install: Install = { key: taskId, modelId, version: result.version, taskIds: [taskId, ...deps.map((t) => t.taskId)] };
    for (const task of tasks) if (install.taskIds.includes(task.taskId)) this.known.set(task.taskId, task);
    for (const id of install.taskIds) this.release(id);
    this.add(install);
  }

  /** A task nobody claimed, or one shown on a row of its own (another install may still claim it). */
  private adoptable(taskId: string): boolean {
    const key = this.owner.get(taskId);
    return key === undefined || (key === taskId && this.installs.get(key)?.taskIds.length === 1);
  }

  private release(taskId: string): void {
    if (this.owner.get(taskId) !== taskId) return;
    this.installs.delete(taskId);
    this.owner.delete(taskId);
  }

  dismiss(key: string): void {
    this.dismissed.add(key);
  }

  /** The rows to show, newest first. */
  view(tasks: Readonly<Record<string, Task>>): InstallView[] {
    const get = (id: string) => tasks[id] ?? this.known.get(id);
    // Tasks nobody here started (resumed from an earlier run, another window) get a row of their own.
    for (const task of Object.values(tasks)) {
      if (!isFinal(task)) this.seenActive.add(task.taskId);
      if (this.pending === 0 && !this.owner.has(task.taskId) && this.seenActive.has(task.taskId)) {
        this.add({ key: task.taskId, modelId: task.modelId, version: task.version, taskIds: [task.taskId] });
      }
    }
    const rows: InstallView[] = [];
    for (const install of [...this.installs.values()].reverse()) {
      if (this.dismissed.has(install.key)) continue;
      const list = install.taskIds.map(get).filter((t): t is Task => t !== undefined);
      if (list.length) rows.push(summarize(install, list));
    }
    return rows;
  }

  /** Apply pause / resume / cancel to every task of the install that it fits. */
  async act(action: 'pause' | 'resume' | 'cancel', row: InstallView): Promise<void> {
    const fits = (t: Task) =>
      action === 'pause' ? t.state === 'queued' || t.state === 'downloading' : action === 'resume' ? t.state === 'paused' : !isFinal(t);
    const results = await Promise.allSettled(row.tasks.filter(fits).map((t) => this.mm[action]({ taskId: t.taskId })));
    // A task that moved on meanwhile (INVALID_STATE) is not the user's problem.
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && (r.reason as { code?: string })?.code !== 'INVALID_STATE');
    if (failed) throw failed.reason;
  }

  private add(install: Install): void {
    if (this.installs.has(install.key)) return;
    this.installs.set(install.key, install);
    for (const id of install.taskIds) this.owner.set(id, install.key);
  }
}

function summarize(install: Install, tasks: Task[]): InstallView {
  const has = (state: Task['state']) => tasks.some((t) => t.state === state);
  const state: Task['state'] = has('failed')
    ? 'failed'
    : tasks[0]!.state === 'cancelled' || (has('cancelled') && tasks.every((t) => isFinal(t)))
      ? 'cancelled'
      : tasks.every((t) => t.state === 'ready')
        ? 'ready'
        : has('downloading')
          ? 'downloading'
          : has('verifying')
            ? 'verifying'
            : has('paused')
              ? 'paused'
              : 'queued';
  const bytesTotal = tasks.reduce((n, t) => n + t.bytesTotal, 0);
  const bytesDone = tasks.reduce((n, t) => n + Math.min(t.bytesDone, t.bytesTotal), 0);
  const speedBps = tasks.reduce((n, t) => n + (t.state === 'downloading' ? t.speedBps : 0), 0);
  return {
    install,
    tasks,
    state,
    bytesDone: state === 'ready' ? bytesTotal : bytesDone,
    bytesTotal,
    speedBps,
    etaSeconds: speedBps > 0 ? (bytesTotal - bytesDone) / speedBps : null,
    error: tasks.find((t) => t.error)?.error ?? null,
  };
}
