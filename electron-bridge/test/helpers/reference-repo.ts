// The project's reference repository server (`model-manager-repo serve`) on loopback,
// with models published by `model-manager-repo publish` — the real thing the sidecar
// talks to in production, not a stand-in.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { PYTHON } from './sidecar.js';

export interface PublishSpec {
  id: string;
  version: string;
  name: string;
  task: string;
  languages: string;
  /** File name → size in random bytes. */
  files: Record<string, number>;
  requires?: string[];
}

export interface ReferenceRepo {
  url: string;
  stop(): Promise<void>;
}

const repoCli = (args: string[]) => promisify(execFile)(PYTHON, ['-m', 'model_repo', ...args]);

export async function publish(storage: string, scratch: string, spec: PublishSpec): Promise<void> {
  const source = join(scratch, `${spec.id}-${spec.version}`);
  for (const [name, size] of Object.entries(spec.files)) {
    await mkdir(dirname(join(source, name)), { recursive: true });
    await writeFile(join(source, name), randomBytes(size));
  }
  await repoCli([
    'publish', source, '--storage', storage, '--id', spec.id, '--version', spec.version,
    '--name', spec.name, '--task', spec.task, '--languages', spec.languages,
    ...(spec.requires ?? []).flatMap((r) => ['--requires', r]),
  ]);
}

export async function serveRepository(storage: string, throttleBytesPerSecond?: number): Promise<ReferenceRepo> {
  const child: ChildProcess = spawn(
    PYTHON,
    ['-m', 'model_repo', 'serve', '--storage', storage, '--host', '127.0.0.1', '--port', '0', '--log-level', 'info',
      ...(throttleBytesPerSecond ? ['--throttle', String(throttleBytesPerSecond)] : [])],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const lines = createInterface({ input: child.stderr! });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('model-manager-repo serve did not start within 20 s')), 20_000);
    lines.on('line', (line) => {
      if (process.env.BRIDGE_TEST_LOG) console.error(`[repo] ${line}`);
      const match = /running on (http:\/\/[\d.]+:\d+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`model-manager-repo serve exited with ${code}`)));
  });
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

export async function recordUsage(url: string, modelId: string, times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    const response = await fetch(`${url}/api/model-usage/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model_id: modelId, kind: 'request' }),
    });
    if (!response.ok) throw new Error(`usage event: ${response.status}`);
  }
}
