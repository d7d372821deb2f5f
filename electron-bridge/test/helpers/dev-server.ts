// A small dev server for the Model Library page: the page's files, its script bundled
// by esbuild from examples/model-library/main.ts, and — the test's stand-in for Electron
// loading a preload — the WebSocket electron shim and the package's dist/preload.cjs
// injected ahead of the page's own script.
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';
import { build } from 'esbuild';
import { FIXTURES, PACKAGE_ROOT } from './sidecar.js';

const PAGE = join(PACKAGE_ROOT, 'examples', 'model-library');
const TYPES: Record<string, string> = { '.html': 'text/html', '.css': 'text/css', '.js': 'text/javascript', '.cjs': 'text/javascript' };

export interface DevServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

export async function startDevServer(): Promise<DevServer> {
  const bundle = await build({
    entryPoints: [join(PAGE, 'main.ts')],
    bundle: true,
    format: 'esm',
    write: false,
    target: 'chrome120',
    sourcemap: 'inline',
    logLevel: 'warning',
  });
  const appJs = bundle.outputFiles[0]!.text;
  const files: Record<string, () => Promise<string | Buffer>> = {
    '/app.js': async () => appJs,
    '/preload.cjs': () => readFile(join(PACKAGE_ROOT, 'dist', 'preload.cjs')),
    '/test-electron.js': () => readFile(join(FIXTURES, 'ws-electron.js')),
    '/index.html': async () =>
      (await readFile(join(PAGE, 'index.html'), 'utf8')).replace(
        '<script type="module"',
        '<script src="test-electron.js"></script><script src="preload.cjs"></script>\n  <script type="module"',
      ),
  };
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const key = path === '/' ? '/index.html' : path;
    if (key === '/favicon.ico') return void res.writeHead(204).end();
    const file = normalize(join(PAGE, key));
    const load = files[key] ?? (file.startsWith(PAGE + sep) && key.endsWith('.css') ? () => readFile(file) : null);
    if (!load) return void res.writeHead(404).end('not found');
    load().then(
      (body) => res.writeHead(200, { 'content-type': TYPES[extname(key)] ?? 'application/octet-stream', 'cache-control': 'no-store' }).end(body),
      () => res.writeHead(404).end('not found'),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}
