// Electron's ipcMain and webContents for a page in a real browser: each WebSocket on
// /ipc is one "window" whose frame URL is the page's location; invokes reach the real
// registerIpcHandlers handlers, and webContents.send goes back down the socket.
import type { Server } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import type { FrameLike, IpcMainInvokeEventLike, IpcMainLike, WebContentsLike, WebContentsModuleLike } from '../../src/index.js';

type Handler = (event: IpcMainInvokeEventLike, ...args: unknown[]) => unknown;

class SocketContents implements WebContentsLike {
  mainFrame: FrameLike | null = null; // known after the page's hello
  constructor(private readonly ws: WebSocket) {}
  send(channel: string, ...args: unknown[]): void {
    this.ws.send(JSON.stringify({ type: 'event', channel, args }));
  }
  isDestroyed(): boolean {
    return this.ws.readyState !== this.ws.OPEN;
  }
}

export class WsIpc implements IpcMainLike, WebContentsModuleLike {
  private readonly handlers = new Map<string, Handler>();
  private readonly contents = new Set<SocketContents>();
  private readonly wss: WebSocketServer;

  constructor(server: Server) {
    this.wss = new WebSocketServer({ server, path: '/ipc' });
    this.wss.on('connection', (ws) => {
      const contents = new SocketContents(ws);
      this.contents.add(contents);
      ws.on('close', () => this.contents.delete(contents));
      ws.on('message', (data) => void this.onMessage(ws, contents, String(data)));
    });
  }

  handle(channel: string, listener: Handler): void {
    this.handlers.set(channel, listener);
  }
  removeHandler(channel: string): void {
    this.handlers.delete(channel);
  }
  getAllWebContents(): WebContentsLike[] {
    return [...this.contents];
  }

  close(): void {
    for (const client of this.wss.clients) client.terminate();
    this.wss.close();
  }

  private async onMessage(ws: WebSocket, contents: SocketContents, data: string): Promise<void> {
    const message = JSON.parse(data) as { type: string; url?: string; id?: number; channel?: string; args?: unknown[] };
    if (message.type === 'hello') {
      contents.mainFrame = { url: String(message.url) };
      return;
    }
    if (message.type !== 'invoke') return;
    const handler = this.handlers.get(String(message.channel));
    const value = handler
      ? await handler({ senderFrame: contents.mainFrame }, ...(message.args ?? []))
      : { ok: false, error: { code: 'NO_HANDLER', message: `No handler registered for '${message.channel}'`, data: null } };
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'reply', id: message.id, value }));
  }
}
