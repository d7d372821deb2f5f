// Stand-ins for the Electron objects the bridge touches, recording every call. They copy
// payloads with structuredClone, as IPC does, so nothing passes by reference.
import type { FrameLike, IpcMainInvokeEventLike, IpcMainLike, WebContentsLike } from '../../src/index.js';
import type { ContextBridgeLike, IpcRendererLike } from '../../src/electron/preload.js';

type Handler = (event: IpcMainInvokeEventLike, ...args: unknown[]) => unknown;

export class FakeIpcMain implements IpcMainLike {
  readonly handlers = new Map<string, Handler>();
  handle(channel: string, listener: Handler): void {
    if (this.handlers.has(channel)) throw new Error(`Attempted to register a second handler for '${channel}'`);
    this.handlers.set(channel, listener);
  }
  removeHandler(channel: string): void {
    this.handlers.delete(channel);
  }
  /** What ipcRenderer.invoke does, from a frame at `url` (null: a frame that is gone). */
  async invoke(url: string | null, channel: string, ...args: unknown[]): Promise<unknown> {
    const handler = this.handlers.get(channel);
    if (!handler) throw new Error(`No handler registered for '${channel}'`);
    const frame: FrameLike | null = url === null ? null : { url };
    return structuredClone(await handler({ senderFrame: frame }, ...structuredClone(args)));
  }
}

export class FakeWebContents implements WebContentsLike {
  readonly sent: { channel: string; args: unknown[] }[] = [];
  destroyed = false;
  private readonly listeners = new Set<(channel: string, args: unknown[]) => void>();
  constructor(public mainFrame: FrameLike | null) {}
  send(channel: string, ...args: unknown[]): void {
    if (this.destroyed) throw new Error('Object has been destroyed');
    const copy = structuredClone(args);
    this.sent.push({ channel, args: copy });
    for (const listener of this.listeners) listener(channel, copy);
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
  onSend(listener: (channel: string, args: unknown[]) => void): void {
    this.listeners.add(listener);
  }
}

export class FakeWebContentsModule {
  readonly all: FakeWebContents[] = [];
  getAllWebContents(): FakeWebContents[] {
    return this.all;
  }
  open(url: string | null): FakeWebContents {
    const contents = new FakeWebContents(url === null ? null : { url });
    this.all.push(contents);
    return contents;
  }
}

/** ipcRenderer for a page loaded in `contents`, talking to `ipcMain`. */
export class FakeIpcRenderer implements IpcRendererLike {
  readonly listeners = new Map<string, Set<(event: unknown, ...args: unknown[]) => void>>();
  readonly invoked: string[] = [];
  constructor(
    private readonly ipcMain: FakeIpcMain,
    private readonly contents: FakeWebContents,
  ) {
    contents.onSend((channel, args) => {
      for (const listener of this.listeners.get(channel) ?? []) listener({ sender: 'the IPC event' }, ...args);
    });
  }
  invoke(channel: string, ...args: unknown[]): Promise<unknown> {
    this.invoked.push(channel);
    return this.ipcMain.invoke(this.contents.mainFrame?.url ?? null, channel, ...args);
  }
  on(channel: string, listener: (event: unknown, ...args: unknown[]) => void): this {
    let set = this.listeners.get(channel);
    if (!set) this.listeners.set(channel, (set = new Set()));
    set.add(listener);
    return this;
  }
  removeListener(channel: string, listener: (event: unknown, ...args: unknown[]) => void): this {
    this.listeners.get(channel)?.delete(listener);
    return this;
  }
  listenerCount(channel: string): number {
    return this.listeners.get(channel)?.size ?? 0;
  }
}

export class FakeContextBridge implements ContextBridgeLike {
  readonly world: Record<string, unknown> = {};
  exposeInMainWorld(apiKey: string, api: unknown): void {
    this.world[apiKey] = api;
  }
}
