#!/usr/bin/env node
// npm test: the compiled test files under node --test. The node-agent file runs first
// and alone, so its printed round-trip figure is not measured while the other files
// (sidecars starting, downloads, chromium) share the CPU; then the rest, 4 at a time.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'build-test', 'test');
const files = readdirSync(dir).filter((f) => f.endsWith('.test.js')).sort().map((f) => join(dir, f));
const first = files.filter((f) => f.endsWith('agent.test.js'));
const rest = files.filter((f) => !first.includes(f));
const run = (list, concurrency) =>
  spawnSync(process.execPath, ['--test', `--test-concurrency=${concurrency}`, '--test-timeout=60000', ...list], { stdio: 'inherit' }).status ?? 1;
const statuses = [first.length ? run(first, 1) : 0, run(rest, 4)];
process.exit(statuses.find((s) => s !== 0) ?? 0);
