#!/usr/bin/env node
// dist/preload.cjs: the sandboxed preload as one CommonJS file. A sandboxed preload
// cannot import files or load ESM; it may only require('electron') (and a few Node
// built-ins the bridge does not use), so everything else is bundled in.
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
await build({
  entryPoints: [join(root, 'src/electron/sandboxed-preload.ts')],
  outfile: join(root, 'dist/preload.cjs'),
  bundle: true,
  format: 'cjs',
  platform: 'browser', // no Node built-ins: the sandbox has none of them to offer
  external: ['electron'],
  target: 'chrome120', // Electron 28, the oldest the package supports
  legalComments: 'none',
  banner: { js: '// @model-manager/electron-bridge: prebuilt sandboxed preload (src/electron/sandboxed-preload.ts)' },
  logLevel: 'warning',
});
