#!/usr/bin/env node
// Builds the Electron example into build-example/: main.js (the main process, ESM) and
// model-library/ (the page: index.html, style.css and its script bundled as app.js).
// Run it with an Electron binary: `npx electron build-example/main.js`.
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = resolve(root, process.argv[2] ?? 'build-example');
const page = join(root, 'examples', 'model-library');
await mkdir(join(out, 'model-library'), { recursive: true });
await build({
  entryPoints: [join(page, 'main.ts')],
  outfile: join(out, 'model-library', 'app.js'),
  bundle: true,
  format: 'esm',
  target: 'chrome120',
  logLevel: 'warning',
});
for (const file of ['index.html', 'style.css']) await copyFile(join(page, file), join(out, 'model-library', file));
await build({
  entryPoints: [join(root, 'examples', 'electron', 'main.ts')],
  outfile: join(out, 'main.js'),
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['electron', '@model-manager/electron-bridge'], // the app's own node_modules at run time
  logLevel: 'warning',
});
