// dist/generated/wire.js
var ERROR_CODES = {
  CHECKSUM_MISMATCH: 1005,
  INSUFFICIENT_DISK_SPACE: 1006,
  INVALID_STATE: 1009,
  MODEL_NOT_AVAILABLE: 1001,
  MODEL_NOT_FOUND: 1002,
  NETWORK_ERROR: 1011,
  REPOSITORY_UNAVAILABLE: 1004,
  SCHEDULER_UNAVAILABLE: 1010,
  TASK_NOT_FOUND: 1007,
  UNSAFE_MANIFEST: 1008,
  VERSION_NOT_FOUND: 1003
};

// dist/errors.js
var ModelManagerError = class extends Error {
  /** The error's name on the wire, e.g. "MODEL_NOT_AVAILABLE", or a bridge code. */
  code;
  /** The JSON-RPC error code when the sidecar sent it. */
  rpcCode;
  data;
  constructor(code, message, data, rpcCode) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.data = data;
    this.rpcCode = rpcCode ?? ERROR_CODES[code];
  }
  toPayload() {
    return { code: this.code, message: this.message, data: this.data ?? null };
  }
};
var sidecarError = (code) => class extends ModelManagerError {
  constructor(message, data) {
    super(code, message, data);
  }
};
function field(data, key) {
  return data && typeof data === "object" ? data[key] : void 0;
}
var ModelNotAvailableError = class extends ModelManagerError {
  modelId;
  version;
  reason;
  constructor(message, data) {
    super("MODEL_NOT_AVAILABLE", message, data);
    this.modelId = field(data, "modelId") ?? "";
    this.version = field(data, "version") ?? null;
    this.reason = field(data, "reason") ?? "not_installed";
  }
};
var ModelNotFoundError = class extends sidecarError("MODEL_NOT_FOUND") {
};
var VersionNotFoundError = class extends sidecarError("VERSION_NOT_FOUND") {
};
var RepositoryUnavailableError = class extends sidecarError("REPOSITORY_UNAVAILABLE") {
};
var ChecksumMismatchError = class extends sidecarError("CHECKSUM_MISMATCH") {
};
var InsufficientDiskSpaceError = class extends sidecarError("INSUFFICIENT_DISK_SPACE") {
};
var TaskNotFoundError = class extends sidecarError("TASK_NOT_FOUND") {
};
var UnsafeManifestError = class extends sidecarError("UNSAFE_MANIFEST") {
};
var InvalidStateError = class extends sidecarError("INVALID_STATE") {
};
var SchedulerUnavailableError = class extends sidecarError("SCHEDULER_UNAVAILABLE") {
};
var NetworkError = class extends sidecarError("NETWORK_ERROR") {
};
var SIDECAR_ERRORS = {
  MODEL_NOT_AVAILABLE: ModelNotAvailableError,
  MODEL_NOT_FOUND: ModelNotFoundError,
  VERSION_NOT_FOUND: VersionNotFoundError,
  REPOSITORY_UNAVAILABLE: RepositoryUnavailableError,
  CHECKSUM_MISMATCH: ChecksumMismatchError,
  INSUFFICIENT_DISK_SPACE: InsufficientDiskSpaceError,
  TASK_NOT_FOUND: TaskNotFoundError,
  UNSAFE_MANIFEST: UnsafeManifestError,
  INVALID_STATE: InvalidStateError,
  SCHEDULER_UNAVAILABLE: SchedulerUnavailableError,
  NETWORK_ERROR: NetworkError
};
var RequestTimeoutError = class extends ModelManagerError {
  constructor(message, data) {
    super("REQUEST_TIMEOUT", message, data);
  }
};
var SidecarExitedError = class extends ModelManagerError {
  constructor(message, data) {
    super("SIDECAR_EXITED", message, data);
  }
};
var SidecarBrokenError = class extends ModelManagerError {
  constructor(message, data) {
    super("SIDECAR_BROKEN", message, data);
  }
};
var ClientDisposedError = class extends ModelManagerError {
  constructor(message, data) {
    super("CLIENT_DISPOSED", message, data);
  }
};
var ProtocolError = class extends ModelManagerError {
  constructor(message, data, rpcCode) {
    super("PROTOCOL_ERROR", message, data, rpcCode);
  }
};
var ProtocolMismatchError = class extends ModelManagerError {
  constructor(message, data) {
    super("PROTOCOL_MISMATCH", message, data);
  }
};
var ForbiddenSenderError = class extends ModelManagerError {
  constructor(message, data) {
    super("FORBIDDEN_SENDER", message, data);
  }
};
var BRIDGE_ERRORS = {
  REQUEST_TIMEOUT: RequestTimeoutError,
  SIDECAR_EXITED: SidecarExitedError,
  SIDECAR_BROKEN: SidecarBrokenError,
  CLIENT_DISPOSED: ClientDisposedError,
  PROTOCOL_ERROR: ProtocolError,
  PROTOCOL_MISMATCH: ProtocolMismatchError,
  FORBIDDEN_SENDER: ForbiddenSenderError
};
var CODE_TO_NAME = new Map(Object.entries(ERROR_CODES).map(([name, code]) => [code, name]));
function errorFromPayload(payload) {
  const Known = SIDECAR_ERRORS[payload.code] ?? BRIDGE_ERRORS[payload.code];
  if (Known)
    return new Known(payload.message, payload.data ?? void 0);
  return new ModelManagerError(payload.code, payload.message, payload.data ?? void 0);
}

// dist/envelope.js
function unwrap(value) {
  if (value && typeof value === "object" && value.ok === true)
    return value.result;
  if (value && typeof value === "object" && value.ok === false)
    throw errorFromPayload(value.error);
  throw errorFromPayload({ code: "PROTOCOL_ERROR", message: "not an IPC envelope", data: null });
}

// dist/store.js
var EMPTY = { tasks: {}, models: [], modelsStale: false, status: null, revision: 0 };
var ModelStore = class {
  source;
  snapshot = EMPTY;
  listeners = /* @__PURE__ */ new Set();
  unsubscribers = [];
  refreshTimer = null;
  refreshDelayMs;
  onError;
  // Tasks updated by an event while a snapshot load was in flight: the event is newer.
  touchedDuringLoad = null;
  statusSeen = false;
  constructor(source, options = {}) {
    this.source = source;
    this.refreshDelayMs = options.refreshDelayMs ?? 250;
    this.onError = options.onError ?? (() => {
    });
  }
  /** Subscribe to the source first (nothing is missed), then load the current state. */
  async start() {
    if (this.unsubscribers.length === 0) {
      this.unsubscribers.push(this.source.on("task.progress", (task) => this.putTask(task)), this.source.on("task.state", (task) => this.putTask(task)), this.source.on("models.changed", (change) => this.applyModelChange(change)), this.source.on("status", (status) => {
        this.statusSeen = true;
        this.update({ status });
        if (status.state === "running" && status.restarts > 0)
          void this.load();
      }));
    }
    await this.load();
    return this;
  }
  stop() {
    for (const off of this.unsubscribers.splice(0))
      off();
    if (this.refreshTimer)
      clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
  }
  getSnapshot = () => this.snapshot;
  subscribe = (listener) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };
  /** Reload tasks and models (e.g. when a page opens, or with refresh: true to re-read the catalog). */
  async load(options = {}) {
    this.touchedDuringLoad = /* @__PURE__ */ new Set();
    if (!this.statusSeen && this.source.getStatus) {
      const status = await Promise.resolve().then(() => this.source.getStatus?.()).catch(() => void 0);
      if (status && !this.statusSeen)
        this.update({ status });
    }
    try {
      const warm = !options.refresh && this.source.snapshot ? await this.source.snapshot().catch(() => null) : null;
      const [tasks, models] = warm ? [Object.values(warm.tasks), { models: [...warm.models], stale: warm.modelsStale }] : await Promise.all([
        this.source.listTasks().then((r) => r.tasks),
        this.source.listModels(options.refresh ? { refresh: true } : void 0)
      ]);
      const merged = { ...this.snapshot.tasks };
      for (const task of tasks)
        if (!this.touchedDuringLoad.has(task.taskId))
          merged[task.taskId] = task;
      this.update({ tasks: merged, models: models.models, modelsStale: models.stale, ...warm?.status && !this.statusSeen ? { status: warm.status } : {} });
    } catch (error) {
      this.onError(error);
    } finally {
      this.touchedDuringLoad = null;
    }
  }
  putTask(task) {
    this.touchedDuringLoad?.add(task.taskId);
    this.update({ tasks: { ...this.snapshot.tasks, [task.taskId]: task } });
  }
  applyModelChange(change) {
    const models = this.snapshot.models.map((model) => model.id !== change.modelId ? model : {
      ...model,
      state: change.state,
      installed: model.installed.map((v) => v.version === change.version ? { ...v, state: change.state } : v)
    });
    this.update({ models });
    if (this.refreshTimer)
      clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.source.listModels().then((result) => this.update({ models: result.models, modelsStale: result.stale }), (error) => this.onError(error));
    }, this.refreshDelayMs);
  }
  update(patch) {
    this.snapshot = { ...this.snapshot, ...patch, revision: this.snapshot.revision + 1 };
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch (error) {
        this.onError(error);
      }
    }
  }
};
function createModelStore(source, options) {
  return new ModelStore(source, options).start();
}

// dist/renderer.js
function connectRenderer(bridge) {
  const call = async (method2, params) => unwrap(await bridge.invoke(method2, params));
  const method = (name) => (params) => call(name, params);
  return {
    call,
    on: (event, listener) => bridge.on(event, listener),
    snapshot: async () => unwrap(await bridge.invoke("snapshot")),
    getStatus: async () => unwrap(await bridge.invoke("status")),
    getInfo: method("getInfo"),
    getModelPath: method("getModelPath"),
    install: method("install"),
    installUrl: method("installUrl"),
    listModels: method("listModels"),
    getTask: method("getTask"),
    listTasks: method("listTasks"),
    pause: method("pause"),
    resume: method("resume"),
    cancel: method("cancel"),
    remove: method("remove"),
    verify: method("verify"),
    ranking: method("ranking"),
    setLimits: method("setLimits")
  };
}

// examples/model-library/dom.ts
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === "function") el.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) el.setAttribute(name, "");
    else if (value !== false && value !== null && value !== void 0) el.setAttribute(name, String(value));
  }
  for (const child of children) if (child !== null) el.append(child);
  return el;
}
function text(el, value) {
  if (el.textContent !== value) el.textContent = value;
}
function attr(el, name, value) {
  if (value === null) el.removeAttribute(name);
  else if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}
function syncList(container, items, key, create, update) {
  const existing = /* @__PURE__ */ new Map();
  for (const child of [...container.children]) {
    const k = child.dataset.key;
    if (k !== void 0) existing.set(k, child);
  }
  let previous = null;
  const keep = /* @__PURE__ */ new Set();
  for (const item of items) {
    const k = key(item);
    keep.add(k);
    let el = existing.get(k);
    if (!el) {
      el = create(item);
      el.dataset.key = k;
    }
    update(el, item);
    const expected = previous ? previous.nextElementSibling : container.firstElementChild;
    if (expected !== el) container.insertBefore(el, expected);
    previous = el;
  }
  for (const [k, el] of existing) if (!keep.has(k)) el.remove();
}

// examples/model-library/downloads.ts
var FINAL = /* @__PURE__ */ new Set(["ready", "failed", "cancelled"]);
var isFinal = (task) => FINAL.has(task.state);
var Downloads = class {
  constructor(mm) {
    this.mm = mm;
  }
  mm;
  installs = /* @__PURE__ */ new Map();
  owner = /* @__PURE__ */ new Map();
  // task id → install key
  dismissed = /* @__PURE__ */ new Set();
  // Tasks this page saw unfinished: only those get a row when they finish.
  seenActive = /* @__PURE__ */ new Set();
  // listTasks answers from install(), for tasks whose first event has not arrived yet.
  known = /* @__PURE__ */ new Map();
  // While an install call is out, new tasks may be its dependencies: not adopted alone.
  pending = 0;
  /**
   * Install `modelId` with its dependencies. The sidecar starts the dependency tasks in
   * the same call but answers with the parent's task id only, so the tasks that are new
   * right after the call are taken as its dependencies.
   */
  async install(modelId, current) {
    const before = new Set(Object.keys(current));
    this.pending += 1;
    try {
      const result = await this.mm.install({ modelId });
      if (!result.taskId) return "installed";
      const { tasks } = await this.mm.listTasks();
      this.claim(modelId, result, before, tasks);
      return "started";
    } finally {
      this.pending -= 1;
    }
  }
  claim(modelId, result, before, tasks) {
    const taskId = result.taskId;
    const deps = tasks.filter((t) => t.taskId !== taskId && !before.has(t.taskId) && !isFinal(t) && this.adoptable(t.taskId));
    const install = { key: taskId, modelId, version: result.version, taskIds: [taskId, ...deps.map((t) => t.taskId)] };
    for (const task of tasks) if (install.taskIds.includes(task.taskId)) this.known.set(task.taskId, task);
    for (const id of install.taskIds) this.release(id);
    this.add(install);
  }
  /** A task nobody claimed, or one shown on a row of its own (another install may still claim it). */
  adoptable(taskId) {
    const key = this.owner.get(taskId);
    return key === void 0 || key === taskId && this.installs.get(key)?.taskIds.length === 1;
  }
  release(taskId) {
    if (this.owner.get(taskId) !== taskId) return;
    this.installs.delete(taskId);
    this.owner.delete(taskId);
  }
  dismiss(key) {
    this.dismissed.add(key);
  }
  /** The rows to show, newest first. */
  view(tasks) {
    const get = (id) => tasks[id] ?? this.known.get(id);
    for (const task of Object.values(tasks)) {
      if (!isFinal(task)) this.seenActive.add(task.taskId);
      if (this.pending === 0 && !this.owner.has(task.taskId) && this.seenActive.has(task.taskId)) {
        this.add({ key: task.taskId, modelId: task.modelId, version: task.version, taskIds: [task.taskId] });
      }
    }
    const rows = [];
    for (const install of [...this.installs.values()].reverse()) {
      if (this.dismissed.has(install.key)) continue;
      const list = install.taskIds.map(get).filter((t) => t !== void 0);
      if (list.length) rows.push(summarize(install, list));
    }
    return rows;
  }
  /** Apply pause / resume / cancel to every task of the install that it fits. */
  async act(action, row) {
    const fits = (t) => action === "pause" ? t.state === "queued" || t.state === "downloading" : action === "resume" ? t.state === "paused" : !isFinal(t);
    const results = await Promise.allSettled(row.tasks.filter(fits).map((t) => this.mm[action]({ taskId: t.taskId })));
    const failed = results.find((r) => r.status === "rejected" && r.reason?.code !== "INVALID_STATE");
    if (failed) throw failed.reason;
  }
  add(install) {
    if (this.installs.has(install.key)) return;
    this.installs.set(install.key, install);
    for (const id of install.taskIds) this.owner.set(id, install.key);
  }
};
function summarize(install, tasks) {
  const has = (state2) => tasks.some((t) => t.state === state2);
  const state = has("failed") ? "failed" : tasks[0].state === "cancelled" || has("cancelled") && tasks.every((t) => isFinal(t)) ? "cancelled" : tasks.every((t) => t.state === "ready") ? "ready" : has("downloading") ? "downloading" : has("verifying") ? "verifying" : has("paused") ? "paused" : "queued";
  const bytesTotal = tasks.reduce((n, t) => n + t.bytesTotal, 0);
  const bytesDone = tasks.reduce((n, t) => n + Math.min(t.bytesDone, t.bytesTotal), 0);
  const speedBps = tasks.reduce((n, t) => n + (t.state === "downloading" ? t.speedBps : 0), 0);
  return {
    install,
    tasks,
    state,
    bytesDone: state === "ready" ? bytesTotal : bytesDone,
    bytesTotal,
    speedBps,
    etaSeconds: speedBps > 0 ? (bytesTotal - bytesDone) / speedBps : null,
    error: tasks.find((t) => t.error)?.error ?? null
  };
}

// examples/model-library/format.ts
var UNITS = ["B", "KB", "MB", "GB", "TB"];
function bytes(n) {
  let value = n;
  let unit = 0;
  while (value >= 1e3 && unit < UNITS.length - 1) {
    value /= 1e3;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}
var speed = (bps) => `${bytes(bps)}/s`;
function eta(seconds) {
  if (seconds === null || !Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s left`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s left`;
  return `${Math.floor(s / 3600)} h ${Math.floor(s % 3600 / 60)} min left`;
}
function errorText(error, subject) {
  const data = error.data ?? {};
  const model = subject ?? [data.modelId, data.version].filter(Boolean).join(" ");
  switch (error.code) {
    case "MODEL_NOT_AVAILABLE":
      return `${model || "This model"} is not installed on this computer yet (${String(data.reason ?? "not installed").replace(/_/g, " ")}).`;
    case "INSUFFICIENT_DISK_SPACE":
      return `Not enough disk space to install ${model || "this model"}. Free up space on the drive that holds your models, then try again.`;
    case "REPOSITORY_UNAVAILABLE":
      return `The model repository cannot be reached${model ? ` (installing ${model})` : ""}. Check your network connection or proxy settings, then try again.`;
    case "NETWORK_ERROR":
      return `The download of ${model || "the model"} was interrupted by a network problem. It can be resumed.`;
    case "MODEL_NOT_FOUND":
      return `There is no model called ${model || "that"} in the repository.`;
    case "VERSION_NOT_FOUND":
      return `The repository has no such version of ${model || "this model"}.`;
    case "CHECKSUM_MISMATCH":
      return `The downloaded files of ${model || "the model"} were damaged on the way. Try the install again.`;
    case "SIDECAR_BROKEN":
    case "PROTOCOL_MISMATCH":
      return `The model service is not working: ${error.message}`;
    case "REQUEST_TIMEOUT":
    case "SIDECAR_EXITED":
      return "The model service did not answer in time. Try again in a moment.";
    default:
      return error.message;
  }
}
var describeError = (error, subject) => {
  const e = error;
  const code = typeof e?.code === "string" ? e.code : "ERROR";
  return { code, text: errorText({ code, message: String(e?.message ?? error), data: e?.data }, subject) };
};
function statusText(status) {
  switch (status?.state) {
    case void 0:
    case "starting":
      return { text: "Starting the model service\u2026", alert: false };
    case "running":
      return { text: "Model service running.", alert: false };
    case "restarting":
      return { text: `The model service stopped; restarting${status.delayMs ? ` in ${(status.delayMs / 1e3).toFixed(1)} s` : ""}\u2026`, alert: true };
    case "broken":
      return { text: `The model service could not be started${status.error ? `: ${status.error.message}` : ""}. Restart the app; if this persists, reinstall it.`, alert: true };
    default:
      return { text: "The model service is stopped.", alert: true };
  }
}

// examples/model-library/main.ts
var $ = (id) => document.getElementById(id);
var STATE_WORDS = {
  queued: "Waiting",
  downloading: "Downloading",
  verifying: "Checking files",
  paused: "Paused",
  ready: "Installed",
  failed: "Failed",
  cancelled: "Cancelled",
  incomplete: "Incomplete",
  not_installed: "Not installed",
  removed: "Removed"
};
var words = (state) => STATE_WORDS[state] ?? state;
var Page = class {
  constructor(mm) {
    this.mm = mm;
    this.downloads = new Downloads(mm);
  }
  mm;
  store;
  downloads;
  ranking = null;
  rankingError = null;
  errors = [];
  nextErrorId = 1;
  scheduled = false;
  async start() {
    this.store = await createModelStore(this.mm, { onError: (error) => this.showError(error) });
    this.store.subscribe(() => this.schedule());
    $("refresh").addEventListener("click", () => void this.refresh());
    const form = $("by-id");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const input = form.elements.namedItem("modelId");
      const modelId = input.value.trim();
      if (!modelId) return;
      void this.run(form.querySelector("button"), async () => {
        if (await this.downloads.install(modelId, this.store.getSnapshot().tasks) === "installed") this.showNote(`${modelId} is already installed.`);
        input.value = "";
      }, modelId);
    });
    this.render();
    await this.loadRanking();
  }
  async refresh() {
    await Promise.all([this.store.load({ refresh: true }), this.loadRanking(true)]);
  }
  async loadRanking(refresh = false) {
    try {
      this.ranking = await this.mm.ranking({ limit: 10, ...refresh ? { refresh: true } : {} });
      this.rankingError = null;
    } catch (error) {
      this.rankingError = describeError(error).text;
    }
    this.schedule();
  }
  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }
  showError(error, subject) {
    const { code, text: message } = describeError(error, subject);
    this.errors = [...this.errors.filter((e) => e.text !== message), { id: this.nextErrorId++, code, text: message }];
    this.schedule();
  }
  showNote(message) {
    this.errors = [...this.errors, { id: this.nextErrorId++, code: "NOTE", text: message }];
    this.schedule();
  }
  /** Run an action from a button: the button is disabled meanwhile, errors shown, focus kept. */
  async run(button, work, subject) {
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      this.showError(error, subject);
    } finally {
      button.disabled = false;
      this.schedule();
    }
  }
  render() {
    const snap = this.store.getSnapshot();
    this.renderStatus(snap);
    this.renderErrors();
    this.renderDownloads(snap);
    this.renderInstalled(snap);
    this.renderTop(snap);
    this.renderCatalog(snap);
  }
  renderStatus(snap) {
    const { text: message, alert } = statusText(snap.status);
    const el = $("service");
    text(el, message);
    el.className = `service ${snap.status?.state ?? "starting"}`;
    attr(el, "role", alert ? "alert" : "status");
  }
  renderErrors() {
    syncList(
      $("errors"),
      this.errors,
      (e) => String(e.id),
      (e) => h(
        "li",
        { class: "error", "data-code": e.code },
        h("span", { class: "message" }, e.text),
        h("button", { type: "button", "aria-label": "Dismiss this message", onclick: () => {
          this.errors = this.errors.filter((x) => x.id !== e.id);
          this.schedule();
        } }, "Dismiss")
      ),
      () => {
      }
    );
  }
  nameOf(modelId) {
    return this.store.getSnapshot().models.find((m) => m.id === modelId)?.name ?? modelId;
  }
  renderDownloads(snap) {
    const rows = this.downloads.view(snap.tasks);
    $("downloads-empty").hidden = rows.length > 0;
    syncList($("downloads"), rows, (r) => r.install.key, (r) => this.downloadRow(r), (el, r) => this.updateDownloadRow(el, r));
  }
  downloadRow(row) {
    const name = `${this.nameOf(row.install.modelId)} ${row.install.version}`;
    const button = (action, label) => {
      const b = h("button", { type: "button", class: action, "aria-label": `${label} ${name}` }, label);
      b.addEventListener("click", () => void this.run(b, () => this.downloads.act(action, this.currentRow(row.install.key) ?? row), name));
      return b;
    };
    const clear = h("button", { type: "button", class: "clear", "aria-label": `Clear ${name} from the list` }, "Clear");
    clear.addEventListener("click", () => {
      this.downloads.dismiss(row.install.key);
      this.schedule();
    });
    return h(
      "li",
      { class: "download", "data-model": row.install.modelId },
      h("div", { class: "head" }, h("strong", { class: "name" }, name), h("span", { class: "state" })),
      h(
        "div",
        { class: "bar" },
        h("progress", { "aria-label": `Progress of ${name}`, max: 1, value: 0 }),
        h("span", { class: "percent", "aria-hidden": "true" })
      ),
      h("div", { class: "detail" }, h("span", { class: "amount" }), h("span", { class: "speed" }), h("span", { class: "eta" })),
      h("ul", { class: "deps", "aria-label": `Installed along with ${name}` }),
      h("p", { class: "task-error", role: "alert", hidden: true }),
      h("div", { class: "actions" }, button("pause", "Pause"), button("resume", "Resume"), button("cancel", "Cancel"), clear)
    );
  }
  currentRow(key) {
    return this.downloads.view(this.store.getSnapshot().tasks).find((r) => r.install.key === key);
  }
  updateDownloadRow(el, row) {
    const q = (selector) => el.querySelector(selector);
    const fraction = row.bytesTotal > 0 ? row.bytesDone / row.bytesTotal : row.state === "ready" ? 1 : 0;
    const progress = q("progress");
    progress.max = Math.max(1, row.bytesTotal);
    progress.value = row.bytesTotal > 0 ? row.bytesDone : fraction;
    attr(progress, "aria-valuetext", `${Math.floor(fraction * 100)} percent, ${words(row.state).toLowerCase()}`);
    text(q(".percent"), `${Math.floor(fraction * 100)} %`);
    text(q(".state"), words(row.state));
    el.dataset.state = row.state;
    text(q(".amount"), `${bytes(row.bytesDone)} of ${bytes(row.bytesTotal)}`);
    text(q(".speed"), row.state === "downloading" ? speed(row.speedBps) : "");
    text(q(".eta"), row.state === "downloading" ? eta(row.etaSeconds) : "");
    syncList(
      q(".deps"),
      row.tasks.slice(1),
      (t) => t.taskId,
      () => h("li", { class: "dep" }),
      (li, t) => {
        const part = t.bytesTotal > 0 ? Math.floor(Math.min(t.bytesDone, t.bytesTotal) / t.bytesTotal * 100) : 0;
        text(li, `Includes ${this.nameOf(t.modelId)} ${t.version} (required): ${t.state === "ready" ? "installed" : `${words(t.state).toLowerCase()}, ${part} %`}`);
      }
    );
    const error = q(".task-error");
    error.hidden = !row.error;
    text(error, row.error ? describeError(row.error, `${this.nameOf(row.install.modelId)} ${row.install.version}`).text : "");
    const final = row.state === "ready" || row.state === "failed" || row.state === "cancelled";
    q("button.pause").hidden = !(row.state === "downloading" || row.state === "queued" || row.state === "verifying");
    q("button.resume").hidden = row.state !== "paused";
    q("button.cancel").hidden = final;
    q("button.clear").hidden = !final;
  }
  renderInstalled(snap) {
    const rows = snap.models.flatMap((model) => model.installed.map((v) => ({ model, v })));
    $("installed-empty").hidden = rows.length > 0;
    $("installed-table").hidden = rows.length === 0;
    syncList(
      $("installed"),
      rows,
      ({ model, v }) => `${model.id}@${v.version}`,
      ({ model, v }) => {
        const label = `${model.name} ${v.version}`;
        const remove = h("button", { type: "button", class: "remove", "aria-label": `Remove ${label}` }, "Remove");
        remove.addEventListener("click", () => void this.run(remove, () => this.mm.remove({ modelId: model.id, version: v.version }), label));
        return h(
          "tr",
          { "data-model": model.id },
          h("th", { scope: "row" }, model.name),
          h("td", {}, v.version),
          h("td", { class: "size" }),
          h("td", { class: "state" }),
          h("td", {}, remove)
        );
      },
      (tr, { model, v }) => {
        text(tr.querySelector(".size"), bytes(v.sizeBytes));
        text(tr.querySelector(".state"), words(v.state) + (model.updateAvailable ? " \xB7 update available" : ""));
      }
    );
  }
  installButton(model) {
    const b = h("button", { type: "button", class: "install", "aria-label": `Install ${model.name}` }, "Install");
    b.addEventListener(
      "click",
      () => void this.run(b, () => this.downloads.install(model.id, this.store.getSnapshot().tasks), model.name)
    );
    return b;
  }
  isInstalled(snap, modelId) {
    return snap.models.some((m) => m.id === modelId && m.installed.some((v) => v.state === "ready"));
  }
  isBusy(snap, modelId) {
    return Object.values(snap.tasks).some((t) => t.modelId === modelId && !["ready", "failed", "cancelled"].includes(t.state));
  }
  renderTop(snap) {
    const notice = $("top-notice");
    const stale = this.ranking?.stale ? `The ranking could not be refreshed; showing the one from ${this.ranking.fetchedAt ? new Date(this.ranking.fetchedAt).toLocaleString() : "earlier"}.` : null;
    notice.hidden = !(stale || this.rankingError);
    text(notice, this.rankingError ?? stale ?? "");
    const items = this.ranking?.items ?? [];
    $("top-empty").hidden = items.length > 0 || !this.ranking;
    syncList(
      $("top"),
      items,
      (item) => item.modelId,
      (item) => h("li", { "data-model": item.modelId }, h("span", { class: "name" }), h("span", { class: "requests" }), h("span", { class: "slot" })),
      (li, item) => {
        const model = snap.models.find((m) => m.id === item.modelId);
        text(li.querySelector(".name"), model?.name ?? item.modelId);
        text(li.querySelector(".requests"), `${item.requestCount} ${item.requestCount === 1 ? "request" : "requests"}`);
        const installed = model ? this.isInstalled(snap, item.modelId) : item.installed;
        const slot = li.querySelector(".slot");
        const want = installed ? "installed" : this.isBusy(snap, item.modelId) ? "busy" : model?.inCatalog ? "install" : "none";
        if (slot.dataset.show !== want) {
          slot.dataset.show = want;
          slot.replaceChildren(
            want === "installed" ? h("span", { class: "badge" }, "Installed") : want === "busy" ? h("span", { class: "badge" }, "Installing\u2026") : want === "install" ? this.installButton(model) : ""
          );
        }
      }
    );
  }
  renderCatalog(snap) {
    $("catalog-notice").hidden = !snap.modelsStale;
    const available = snap.models.filter((m) => m.inCatalog && !this.isInstalled(snap, m.id));
    syncList(
      $("catalog"),
      available,
      (m) => m.id,
      (m) => h("li", { "data-model": m.id }, h("span", { class: "name" }, m.name), h("span", { class: "meta" }, `${m.task} \xB7 ${m.languages.join(", ")}`), h("span", { class: "slot" })),
      (li, m) => {
        const slot = li.querySelector(".slot");
        const want = this.isBusy(snap, m.id) ? "busy" : "install";
        if (slot.dataset.show !== want) {
          slot.dataset.show = want;
          slot.replaceChildren(want === "busy" ? h("span", { class: "badge" }, "Installing\u2026") : this.installButton(m));
        }
      }
    );
  }
};
if (!window.modelManager) {
  $("service").textContent = "This page must be opened by the app (window.modelManager is missing).";
} else {
  void new Page(connectRenderer(window.modelManager)).start();
}
