// A real loopback model repository (node:http) serving a generated catalog the way the
// company repository does: the catalog API, file bytes with Range/If-Range (206 +
// Content-Range), an optional per-connection throttle so a test can kill the sidecar
// mid-download, and the scheduler's usage endpoints (events + ranking).
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RepositoryModel } from '../../src/types.js';

export interface FileSpec {
  path: string;
  /** Content, or a size for random bytes. */
  content: Buffer | number;
}

export interface VersionSpec {
  version: string;
  files: FileSpec[];
  requires?: { model_id: string; version?: string | null }[];
}

export interface ModelSpec {
  id: string;
  name?: string;
  task?: string;
  versions: VersionSpec[];
  defaultVersion?: string;
}

export interface RequestRecord {
  method: string;
  path: string;
  range: string | undefined;
  status: number;
  bytesSent: number;
}

export interface Repository {
  url: string;
  /** modelId → version → path → bytes, as served. */
  bytes(modelId: string, version: string, path: string): Buffer;
  requests: RequestRecord[];
  /** Bodies POSTed to /api/model-usage/events. */
  events: unknown[];
  ranking: { model_id: string; request_count: number; rank: number }[];
  /** Bytes per second per connection for file downloads; 0 = unthrottled. */
  throttle: number;
  storageBytesSent(): number;
  close(): Promise<void>;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

export function buildCatalog(specs: ModelSpec[]) {
  const files = new Map<string, Buffer>();
  const catalog: RepositoryModel[] = specs.map((spec) => ({
    id: spec.id,
    name: spec.name ?? spec.id,
    task: spec.task ?? 'asr',
    languages: ['zh', 'en'],
    default_version: spec.defaultVersion ?? spec.versions.at(-1)!.version,
    versions: spec.versions.map((v) => {
      const entries = v.files.map((f) => {
        const content = typeof f.content === 'number' ? randomBytes(f.content) : f.content;
        files.set(`${spec.id}/${v.version}/${f.path}`, content);
        return { path: f.path, size_bytes: content.length, sha256: sha256(content) };
      });
      const checksumText = [...entries]
        .sort((a, b) => (a.path < b.path ? -1 : 1))
        .map((e) => `${e.sha256}  ${e.path}\n`)
        .join('');
      return {
        version: v.version,
        size_bytes: entries.reduce((n, e) => n + e.size_bytes, 0),
        updated_at: '2025-01-01T00:00:00Z',
        checksum_sha256: sha256(checksumText),
        files: entries,
        requires: v.requires ?? [],
        extra: {},
      };
    }),
  }));
  return { catalog, files };
}

export async function startRepository(specs: ModelSpec[], options: { throttle?: number } = {}): Promise<Repository> {
  const { catalog, files } = buildCatalog(specs);
  const repo: Omit<Repository, 'url' | 'close'> = {
    bytes: (m, v, p) => files.get(`${m}/${v}/${p}`)!,
    requests: [],
    events: [],
    ranking: [],
    throttle: options.throttle ?? 0,
    storageBytesSent: () =>
      repo.requests.filter((r) => r.path.startsWith('/storage/')).reduce((n, r) => n + r.bytesSent, 0),
  };

  const server = createServer((req, res) => {
    const record: RequestRecord = {
      method: req.method ?? 'GET',
      path: decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname),
      range: req.headers.range,
      status: 0,
      bytesSent: 0,
    };
    repo.requests.push(record);
    route(req, res, record).catch(() => res.destroy());
  });

  async function route(req: IncomingMessage, res: ServerResponse, record: RequestRecord) {
    const path = record.path;
    const json = (status: number, body: unknown) => {
      record.status = status;
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (path === '/api/models') return json(200, catalog);
    if (path.startsWith('/api/models/')) {
      const model = catalog.find((m) => m.id === path.slice('/api/models/'.length));
      return model ? json(200, model) : json(404, { error: { code: 'NOT_FOUND', message: 'no such model' } });
    }
    if (path === '/api/model-usage/events' && req.method === 'POST') {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      repo.events.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      return json(201, { recorded: true });
    }
    if (path === '/api/model-usage/ranking') return json(200, repo.ranking);
    if (path.startsWith('/storage/models/')) {
      const content = files.get(path.slice('/storage/models/'.length));
      if (!content) return json(404, { error: { code: 'NOT_FOUND', message: 'no such file' } });
      return serveFile(req, res, record, content);
    }
    return json(404, { error: { code: 'NOT_FOUND', message: path } });
  }

  function serveFile(req: IncomingMessage, res: ServerResponse, record: RequestRecord, content: Buffer) {
    const etag = `"${sha256(content).slice(0, 16)}"`;
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'accept-ranges': 'bytes',
      etag,
      'last-modified': 'Wed, 01 Jan 2025 00:00:00 GMT',
    };
    let start = 0;
    let end = content.length - 1;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    if (range && (!ifRange || ifRange === etag || ifRange === headers['last-modified'])) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), end) : end;
      if (start > end) {
        record.status = 416;
        res.writeHead(416, { 'content-range': `bytes */${content.length}` }).end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${content.length}`;
    }
    headers['content-length'] = String(end - start + 1);
    record.status = status;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') return void res.end();
    const body = content.subarray(start, end + 1);
    if (!repo.throttle) {
      record.bytesSent += body.length;
      res.end(body);
      return;
    }
    // Throttled: 20 slices a second, so a test sees steady progress and can interrupt it.
    const slice = Math.max(1, Math.floor(repo.throttle / 20));
    let offset = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return void clearInterval(timer);
      const piece = body.subarray(offset, offset + slice);
      offset += piece.length;
      record.bytesSent += piece.length;
      if (offset >= body.length) {
        clearInterval(timer);
        res.end(piece);
      } else {
        res.write(piece);
      }
    }, 50);
    res.on('close', () => clearInterval(timer));
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(repo, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}
