// One sidecar child process: spawn, line-split its stdout and stderr, write requests,
// and stop it in escalating steps (stdin EOF → SIGTERM → SIGKILL). child_process, not
// Electron's utilityProcess: the sidecar is Python, and utilityProcess runs Node modules.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { LineSplitter } from './lines.js';
import type { ExitInfo } from './status.js';

export type { ExitInfo };

export interface SidecarCommand {
  command: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
  cwd?: string | undefined;
}

export interface ProcessHandlers {
  line(text: string): void;
  overlong(bytes: number): void;
  stderr(text: string): void;
}

export interface StopTimings {
  /** After stdin is closed, how long the sidecar may take to finish on its own. */
  graceMs: number;
  /** After SIGTERM, how long before SIGKILL. */
  termMs: number;
}

// If 'close' (all stdio drained) never follows 'exit' — a grandchild holding the pipes
// open — stop waiting for it after this long.
const CLOSE_AFTER_EXIT_MS = 2000;

export class SidecarProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<ExitInfo>;
  readonly startedAt = Date.now();
  /** The last stderr lines, to explain an exit (an older sidecar refusing a flag). */
  readonly stderrTail: string[] = [];
  private done = false;

  constructor(command: SidecarCommand, handlers: ProcessHandlers, maxLineBytes?: number) {
    this.child = spawn(command.command, [...command.args], {
      env: command.env,
      cwd: command.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });
    const stdout = new LineSplitter(handlers, maxLineBytes);
    const onStderr = (text: string) => {
      if (this.stderrTail.push(text) > 20) this.stderrTail.shift();
      handlers.stderr(text);
    };
    const stderr = new LineSplitter({ line: onStderr, overlong: () => handlers.stderr('[overlong stderr line dropped]') }, 64 * 1024);
    this.child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk));
    this.child.stdout!.on('end', () => stdout.end());
    this.child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
    this.child.stderr!.on('end', () => stderr.end());
    // A write after the sidecar died raises EPIPE on the stream; the exit handling
    // reports it, so the stream error itself must not become an uncaught exception.
    this.child.stdin!.on('error', () => {});
    this.exited = new Promise<ExitInfo>((resolve) => {
      const finish = (info: ExitInfo) => {
        if (this.done) return;
        this.done = true;
        resolve(info);
      };
      this.child.once('error', (error) => {
        if (this.child.pid === undefined) finish({ code: null, signal: null, error });
      });
      // 'close' comes after stdout is drained, so the last answers are read before
      // the pending requests are rejected.
      this.child.once('close', (code, signal) => finish({ code, signal }));
      this.child.once('exit', (code, signal) => {
        setTimeout(() => finish({ code, signal }), CLOSE_AFTER_EXIT_MS).unref();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return !this.done && this.child.exitCode === null && this.child.signalCode === null;
  }

  write(line: string): void {
    const stdin = this.child.stdin;
    if (!this.running || !stdin || !stdin.writable) throw new Error('the sidecar is not running');
    stdin.write(line + '\n');
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** Close stdin (the sidecar stops at EOF), then SIGTERM, then SIGKILL. */
  async stop(timings: StopTimings): Promise<ExitInfo> {
    this.child.stdin?.end();
    if (await this.exitsWithin(timings.graceMs)) return this.exited;
    this.kill('SIGTERM');
    if (await this.exitsWithin(timings.termMs)) return this.exited;
    this.kill('SIGKILL');
    return this.exited;
  }

  private async exitsWithin(ms: number): Promise<boolean> {
    if (!this.running) return true;
    const controller = new AbortController();
    try {
      return await Promise.race([
        once(this.child, 'exit', { signal: controller.signal }).then(() => true),
        sleep(ms, false, { signal: controller.signal }),
      ]);
    } catch {
      return !this.running;
    } finally {
      controller.abort();
    }
  }
}
