// What an app gets from the package: a prebuilt preload that runs as a sandboxed
// preload does (one CommonJS script, require('electron') only), and types that resolve
// under the old moduleResolution too, with a global type for window.modelManager.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import vm from 'node:vm';
import type { ModelManagerBridge } from '../src/electron/preload.js';
import { PACKAGE_ROOT, tempHome } from './helpers/sidecar.js';

test('dist/preload.cjs runs with only require("electron"), as in a sandboxed renderer', async () => {
  const pkg = JSON.parse(await readFile(join(PACKAGE_ROOT, 'package.json'), 'utf8'));
  assert.equal(pkg.exports['./preload.cjs'], './dist/preload.cjs');
  assert.equal(pkg.scripts.prepare, 'npm run build', 'dist/ is built when installed from git');
  const code = await readFile(join(PACKAGE_ROOT, 'dist', 'preload.cjs'), 'utf8');
  const exposed: Record<string, unknown> = {};
  const invoked: unknown[][] = [];
  const electron = {
    contextBridge: { exposeInMainWorld: (key: string, api: unknown) => (exposed[key] = api) },
    ipcRenderer: {
      invoke: async (...args: unknown[]) => (invoked.push(args), { ok: true, result: { tasks: [] } }),
      on: () => undefined,
      removeListener: () => undefined,
    },
  };
  const required: string[] = [];
  const sandbox = {
    require: (name: string) => {
      required.push(name);
      if (name === 'electron') return electron;
      throw new Error(`module not found: ${name}`); // what the sandbox says for anything else
    },
    module: { exports: {} },
    exports: {},
    console,
  };
  vm.runInNewContext(code, sandbox, { filename: 'preload.cjs' }); // a syntax error here = not plain CJS
  assert.deepEqual(required, ['electron']);
  const bridge = exposed.modelManager as ModelManagerBridge;
  assert.deepEqual(Object.keys(bridge).sort(), ['invoke', 'on']);
  assert.deepEqual(await bridge.invoke('listTasks'), { ok: true, result: { tasks: [] } });
  assert.deepEqual(invoked, [['model-manager:listTasks', undefined]]);
  assert.equal((await bridge.invoke('shutdown' as never)).ok, false, 'shutdown is not a page method');
});

test('types resolve with moduleResolution node10 (typesVersions) and window.modelManager is typed', async (t) => {
  const dir = await tempHome(t);
  await mkdir(join(dir, 'node_modules', '@model-manager'), { recursive: true });
  await symlink(PACKAGE_ROOT, join(dir, 'node_modules', '@model-manager', 'electron-bridge'), 'dir');
  await writeFile(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'commonjs', moduleResolution: 'node', target: 'ES2022', lib: ['ES2022', 'DOM'], strict: true, noEmit: true, types: [], skipLibCheck: false },
      files: ['page.ts'],
    }),
  );
  await writeFile(
    join(dir, 'page.ts'),
    [
      "import type {} from '@model-manager/electron-bridge/window';",
      "import { connectRenderer, ModelNotAvailableError, type Task } from '@model-manager/electron-bridge/renderer';",
      'const mm = connectRenderer(window.modelManager);',
      "export async function first(): Promise<Task | undefined> { return (await mm.listTasks()).tasks[0]; }",
      'export const isMissing = (e: unknown) => e instanceof ModelNotAvailableError;',
      "// @ts-expect-error the page cannot stop the sidecar",
      'void mm.shutdown;',
    ].join('\n'),
  );
  const tsc = createRequire(join(PACKAGE_ROOT, 'package.json')).resolve('typescript/bin/tsc');
  const run = await promisify(execFile)(process.execPath, [tsc, '-p', dir]).catch((e: { stdout: string; stderr: string }) => e);
  assert.equal(run.stdout + run.stderr, '', 'tsc found no errors');
});

test('the Electron example and its page build into one folder an Electron binary can run', async (t) => {
  const out = await tempHome(t);
  const script = join(PACKAGE_ROOT, 'scripts', 'build-example.mjs');
  await promisify(execFile)(process.execPath, [script, out]);
  const main = await readFile(join(out, 'main.js'), 'utf8');
  assert.match(main, /from "electron"/);
  assert.match(main, /preload\.cjs/);
  for (const file of ['index.html', 'style.css', 'app.js']) assert.ok((await readFile(join(out, 'model-library', file))).length > 0, file);
});
