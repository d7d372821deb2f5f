// The reference "Model Library" page. It uses only the bridge's renderer entry over
// `window.modelManager` (put there by the bridge's preload): the store for models,
// tasks and the service status, and typed errors turned into sentences.
import type {} from '@model-manager/electron-bridge/window';
import {
  connectRenderer,
  createModelStore,
  type ModelInfo,
  type ModelStore,
  type RankingResult,
  type StoreSnapshot,
} from '@model-manager/electron-bridge/renderer';
import { attr, h, syncList, text } from './dom.js';
import { Downloads, type InstallView } from './downloads.js';
import { bytes, describeError, eta, speed, statusText } from './format.js';

const $ = (id: string) => document.getElementById(id)!;

const STATE_WORDS: Record<string, string> = {
  queued: 'Waiting', downloading: 'Downloading', verifying: 'Checking files', paused: 'Paused',
  ready: 'Installed', failed: 'Failed', cancelled: 'Cancelled', incomplete: 'Incomplete', not_installed: 'Not installed', removed: 'Removed',
};
const words = (state: string) => STATE_WORDS[state] ?? state;

class Page {
  private store!: ModelStore;
  private readonly downloads: Downloads;
  private ranking: RankingResult | null = null;
  private rankingError: string | null = null;
  private errors: { id: number; code: string; text: string }[] = [];
  private nextErrorId = 1;
  private scheduled = false;

  constructor(private readonly mm: ReturnType<typeof connectRenderer>) {
    this.downloads = new Downloads(mm);
  }

  async start(): Promise<void> {
    this.store = await createModelStore(this.mm, { onError: (error) => this.showError(error) });
    this.store.subscribe(() => this.schedule());
    $('refresh').addEventListener('click', () => void this.refresh());
    const form = $('by-id') as HTMLFormElement;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const input = form.elements.namedItem('modelId') as HTMLInputElement;
      const modelId = input.value.trim();
      if (!modelId) return;
      void this.run(form.querySelector('button')!, async () => {
        if ((await this.downloads.install(modelId, this.store.getSnapshot().tasks)) === 'installed') this.showNote(`${modelId} is already installed.`);
        input.value = '';
      }, modelId);
    });
    this.render();
    await this.loadRanking();
  }

  private async refresh(): Promise<void> {
    await Promise.all([this.store.load({ refresh: true }), this.loadRanking(true)]);
  }

  private async loadRanking(refresh = false): Promise<void> {
    try {
      this.ranking = await this.mm.ranking({ limit: 10, ...(refresh ? { refresh: true } : {}) });
      this.rankingError = null;
    } catch (error) {
      this.rankingError = describeError(error).text;
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  private showError(error: unknown, subject?: string): void {
    const { code, text: message } = describeError(error, subject);
    this.errors = [...this.errors.filter((e) => e.text !== message), { id: this.nextErrorId++, code, text: message }];
    this.schedule();
  }

  private showNote(message: string): void {
    this.errors = [...this.errors, { id: this.nextErrorId++, code: 'NOTE', text: message }];
    this.schedule();
  }

  /** Run an action from a button: the button is disabled meanwhile, errors shown, focus kept. */
  private async run(button: HTMLButtonElement, work: () => Promise<unknown>, subject?: string): Promise<void> {
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

  private render(): void {
    const snap = this.store.getSnapshot();
    this.renderStatus(snap);
    this.renderErrors();
    this.renderDownloads(snap);
    this.renderInstalled(snap);
    this.renderTop(snap);
    this.renderCatalog(snap);
  }

  private renderStatus(snap: StoreSnapshot): void {
    const { text: message, alert } = statusText(snap.status);
    const el = $('service');
    text(el, message);
    el.className = `service ${snap.status?.state ?? 'starting'}`;
    attr(el, 'role', alert ? 'alert' : 'status');
  }

  private renderErrors(): void {
    syncList(
      $('errors'),
      this.errors,
      (e) => String(e.id),
      (e) =>
        h('li', { class: 'error', 'data-code': e.code },
          h('span', { class: 'message' }, e.text),
          h('button', { type: 'button', 'aria-label': 'Dismiss this message', onclick: () => {
            this.errors = this.errors.filter((x) => x.id !== e.id);
            this.schedule();
          } }, 'Dismiss')),
      () => {},
    );
  }

  private nameOf(modelId: string): string {
    return this.store.getSnapshot().models.find((m) => m.id === modelId)?.name ?? modelId;
  }

  private renderDownloads(snap: StoreSnapshot): void {
    const rows = this.downloads.view(snap.tasks);
    $('downloads-empty').hidden = rows.length > 0;
    syncList($('downloads'), rows, (r) => r.install.key, (r) => this.downloadRow(r), (el, r) => this.updateDownloadRow(el, r));
  }

  private downloadRow(row: InstallView): HTMLLIElement {
    const name = `${this.nameOf(row.install.modelId)} ${row.install.version}`;
    const button = (action: 'pause' | 'resume' | 'cancel', label: string) => {
      const b: HTMLButtonElement = h('button', { type: 'button', class: action, 'aria-label': `${label} ${name}` }, label);
      b.addEventListener('click', () => void this.run(b, () => this.downloads.act(action, this.currentRow(row.install.key) ?? row), name));
      return b;
    };
    const clear: HTMLButtonElement = h('button', { type: 'button', class: 'clear', 'aria-label': `Clear ${name} from the list` }, 'Clear');
    clear.addEventListener('click', () => {
      this.downloads.dismiss(row.install.key);
      this.schedule();
    });
    return h('li', { class: 'download', 'data-model': row.install.modelId },
      h('div', { class: 'head' }, h('strong', { class: 'name' }, name), h('span', { class: 'state' })),
      h('div', { class: 'bar' },
        h('progress', { 'aria-label': `Progress of ${name}`, max: 1, value: 0 }),
        h('span', { class: 'percent', 'aria-hidden': 'true' })),
      h('div', { class: 'detail' }, h('span', { class: 'amount' }), h('span', { class: 'speed' }), h('span', { class: 'eta' })),
      h('ul', { class: 'deps', 'aria-label': `Installed along with ${name}` }),
      h('p', { class: 'task-error', role: 'alert', hidden: true }),
      h('div', { class: 'actions' }, button('pause', 'Pause'), button('resume', 'Resume'), button('cancel', 'Cancel'), clear),
    );
  }

  private currentRow(key: string): InstallView | undefined {
    return this.downloads.view(this.store.getSnapshot().tasks).find((r) => r.install.key === key);
  }

  private updateDownloadRow(el: HTMLLIElement, row: InstallView): void {
    const q = <T extends Element>(selector: string) => el.querySelector<T & HTMLElement>(selector)!;
    const fraction = row.bytesTotal > 0 ? row.bytesDone / row.bytesTotal : row.state === 'ready' ? 1 : 0;
    const progress = q<HTMLProgressElement>('progress');
    progress.max = Math.max(1, row.bytesTotal);
    progress.value = row.bytesTotal > 0 ? row.bytesDone : fraction;
    attr(progress, 'aria-valuetext', `${Math.floor(fraction * 100)} percent, ${words(row.state).toLowerCase()}`);
    text(q('.percent'), `${Math.floor(fraction * 100)} %`);
    text(q('.state'), words(row.state));
    el.dataset.state = row.state;
    text(q('.amount'), `${bytes(row.bytesDone)} of ${bytes(row.bytesTotal)}`);
    text(q('.speed'), row.state === 'downloading' ? speed(row.speedBps) : '');
    text(q('.eta'), row.state === 'downloading' ? eta(row.etaSeconds) : '');
    syncList(
      q('.deps'),
      row.tasks.slice(1),
      (t) => t.taskId,
      () => h('li', { class: 'dep' }),
      (li, t) => {
        const part = t.bytesTotal > 0 ? Math.floor((Math.min(t.bytesDone, t.bytesTotal) / t.bytesTotal) * 100) : 0;
        text(li, `Includes ${this.nameOf(t.modelId)} ${t.version} (required): ${t.state === 'ready' ? 'installed' : `${words(t.state).toLowerCase()}, ${part} %`}`);
      },
    );
    const error = q('.task-error');
    error.hidden = !row.error;
    text(error, row.error ? describeError(row.error, `${this.nameOf(row.install.modelId)} ${row.install.version}`).text : '');
    const final = row.state === 'ready' || row.state === 'failed' || row.state === 'cancelled';
    q<HTMLButtonElement>('button.pause').hidden = !(row.state === 'downloading' || row.state === 'queued' || row.state === 'verifying');
    q<HTMLButtonElement>('button.resume').hidden = row.state !== 'paused';
    q<HTMLButtonElement>('button.cancel').hidden = final;
    q<HTMLButtonElement>('button.clear').hidden = !final;
  }

  private renderInstalled(snap: StoreSnapshot): void {
    const rows = snap.models.flatMap((model) => model.installed.map((v) => ({ model, v })));
    $('installed-empty').hidden = rows.length > 0;
    $('installed-table').hidden = rows.length === 0;
    syncList(
      $('installed'),
      rows,
      ({ model, v }) => `${model.id}@${v.version}`,
      ({ model, v }) => {
        const label = `${model.name} ${v.version}`;
        const remove: HTMLButtonElement = h('button', { type: 'button', class: 'remove', 'aria-label': `Remove ${label}` }, 'Remove');
        remove.addEventListener('click', () => void this.run(remove, () => this.mm.remove({ modelId: model.id, version: v.version }), label));
        return h('tr', { 'data-model': model.id },
          h('th', { scope: 'row' }, model.name), h('td', {}, v.version), h('td', { class: 'size' }), h('td', { class: 'state' }), h('td', {}, remove));
      },
      (tr, { model, v }) => {
        text(tr.querySelector('.size')!, bytes(v.sizeBytes));
        text(tr.querySelector('.state')!, words(v.state) + (model.updateAvailable ? ' · update available' : ''));
      },
    );
  }

  private installButton(model: Pick<ModelInfo, 'id' | 'name'>): HTMLButtonElement {
    const b: HTMLButtonElement = h('button', { type: 'button', class: 'install', 'aria-label': `Install ${model.name}` }, 'Install');
    b.addEventListener('click', () =>
      void this.run(b, () => this.downloads.install(model.id, this.store.getSnapshot().tasks), model.name),
    );
    return b;
  }

  private isInstalled(snap: StoreSnapshot, modelId: string): boolean {
    return snap.models.some((m) => m.id === modelId && m.installed.some((v) => v.state === 'ready'));
  }

  private isBusy(snap: StoreSnapshot, modelId: string): boolean {
    return Object.values(snap.tasks).some((t) => t.modelId === modelId && !['ready', 'failed', 'cancelled'].includes(t.state));
  }

  private renderTop(snap: StoreSnapshot): void {
    const notice = $('top-notice');
    const stale = this.ranking?.stale
      ? `The ranking could not be refreshed; showing the one from ${this.ranking.fetchedAt ? new Date(this.ranking.fetchedAt).toLocaleString() : 'earlier'}.`
      : null;
    notice.hidden = !(stale || this.rankingError);
    text(notice, this.rankingError ?? stale ?? '');
    const items = this.ranking?.items ?? [];
    $('top-empty').hidden = items.length > 0 || !this.ranking;
    syncList(
      $('top'),
      items,
      (item) => item.modelId,
      (item) => h('li', { 'data-model': item.modelId }, h('span', { class: 'name' }), h('span', { class: 'requests' }), h('span', { class: 'slot' })),
      (li, item) => {
        const model = snap.models.find((m) => m.id === item.modelId);
        text(li.querySelector('.name')!, model?.name ?? item.modelId);
        text(li.querySelector('.requests')!, `${item.requestCount} ${item.requestCount === 1 ? 'request' : 'requests'}`);
        // The live model list wins over the flag from when the ranking was fetched.
        const installed = model ? this.isInstalled(snap, item.modelId) : item.installed;
        const slot = li.querySelector<HTMLElement>('.slot')!;
        const want = installed ? 'installed' : this.isBusy(snap, item.modelId) ? 'busy' : model?.inCatalog ? 'install' : 'none';
        if (slot.dataset.show !== want) {
          slot.dataset.show = want;
          slot.replaceChildren(
            want === 'installed' ? h('span', { class: 'badge' }, 'Installed')
              : want === 'busy' ? h('span', { class: 'badge' }, 'Installing…')
                : want === 'install' ? this.installButton(model!) : '',
          );
        }
      },
    );
  }

  private renderCatalog(snap: StoreSnapshot): void {
    $('catalog-notice').hidden = !snap.modelsStale;
    const available = snap.models.filter((m) => m.inCatalog && !this.isInstalled(snap, m.id));
    syncList(
      $('catalog'),
      available,
      (m) => m.id,
      (m) => h('li', { 'data-model': m.id }, h('span', { class: 'name' }, m.name), h('span', { class: 'meta' }, `${m.task} · ${m.languages.join(', ')}`), h('span', { class: 'slot' })),
      (li, m) => {
        const slot = li.querySelector<HTMLElement>('.slot')!;
        const want = this.isBusy(snap, m.id) ? 'busy' : 'install';
        if (slot.dataset.show !== want) {
          slot.dataset.show = want;
          slot.replaceChildren(want === 'busy' ? h('span', { class: 'badge' }, 'Installing…') : this.installButton(m));
        }
      },
    );
  }
}

if (!window.modelManager) {
  $('service').textContent = 'This page must be opened by the app (window.modelManager is missing).';
} else {
  void new Page(connectRenderer(window.modelManager)).start();
}
