// The system proxy for the sidecar. Node (and Python) see neither PAC/WPAD nor the OS
// proxy settings; Chromium does. So the main process asks
// `session.defaultSession.resolveProxy(repositoryUrl)` and the bridge passes the answer
// on: `--proxy URL` when the sidecar starts, the `setNetwork` method when it changes.
import { ProtocolError } from './errors.js';
import type { SetNetworkParams, SetNetworkResult } from './types.js';
import type { Logger } from './options.js';

export interface NetworkOptions {
  /** In Electron: `(url) => session.defaultSession.resolveProxy(url)`. Answers PAC syntax. */
  resolveProxy(url: string): Promise<string>;
  /** The URL whose proxy is asked (default: the first repository URL). */
  url?: string;
  /** Ask again this often; the sidecar hears only of changes. 0: only on refreshNetwork(). Default 60 s. */
  pollMs?: number;
  /** Bound on one resolveProxy call (a PAC script may be downloaded first). Default 5 s. */
  resolveTimeoutMs?: number;
}

/** "direct", or the proxy as a URL (http://, https://, socks4://, socks5://). */
export type ProxySetting = string;

const SCHEMES: Record<string, string> = {
  PROXY: 'http',
  HTTP: 'http',
  HTTPS: 'https',
  SOCKS: 'socks4', // PAC's plain SOCKS is version 4, as Chromium reads it
  SOCKS4: 'socks4',
  SOCKS5: 'socks5',
};

/**
 * PAC syntax ("PROXY host:port; DIRECT", "HTTPS h:p", "SOCKS5 h:p", "DIRECT") → the
 * sidecar's form. The sidecar takes one proxy, so the first usable entry wins (later
 * ones are Chromium's fallbacks); an entry it cannot use (QUIC, garbage) is skipped.
 */
export function proxyFromPac(pac: string): { proxy: ProxySetting; skipped: string[] } {
  const skipped: string[] = [];
  for (const raw of pac.split(';')) {
    const entry = raw.trim();
    if (!entry) continue;
    const [type = '', hostPort, ...rest] = entry.split(/\s+/);
    const kind = type.toUpperCase();
    if (kind === 'DIRECT' && hostPort === undefined) return { proxy: 'direct', skipped };
    const scheme = SCHEMES[kind];
    const url = scheme && hostPort && rest.length === 0 ? proxyUrl(scheme, hostPort) : null;
    if (url) return { proxy: url, skipped };
    skipped.push(entry);
  }
  return { proxy: 'direct', skipped };
}

// PAC gives host:port only (an IPv6 host in brackets); anything more is not an entry we understand.
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/;

function proxyUrl(scheme: string, hostPort: string): string | null {
  const match = HOST_PORT.exec(hostPort);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65_535) return null;
  try {
    new URL(`http://${match[1]}`); // the host is one a URL can hold
  } catch {
    return null;
  }
  return `${scheme}://${match[1]!.toLowerCase()}:${port}`;
}

/** A proxy URL fit for a log line: credentials replaced. */
export function redactProxy(proxy: string | null): string {
  if (proxy === null) return 'the environment';
  try {
    const url = new URL(proxy);
    if (!url.username && !url.password) return proxy;
    url.username = '***';
    url.password = '';
    return url.href.replace(/\/$/, '');
  } catch {
    return proxy.includes('@') ? '***' : proxy;
  }
}

/** An older sidecar has no setNetwork: JSON-RPC "method not found". */
export const isMethodNotFound = (error: unknown): boolean => error instanceof ProtocolError && error.rpcCode === -32601;

const PROXY_ENV = ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy'];

export interface NetworkState {
  /** What the system answered last, in the sidecar's form; null: not known (no answer yet). */
  resolved: ProxySetting | null;
  /** What the running sidecar uses: a setting, or null for its environment's. */
  applied: ProxySetting | null;
  /** Whether the sidecar takes `setNetwork` (unknown until asked). */
  runtime: 'unknown' | 'supported' | 'unsupported';
  /** Whether the sidecar takes `--proxy` (false after an older one refused it). */
  startFlag: boolean;
}

export interface ProxyHost {
  setNetwork(params: SetNetworkParams): Promise<SetNetworkResult>;
  /** Whether the sidecar's environment names a proxy (then "direct" must be said out loud). */
  env: NodeJS.ProcessEnv;
  logger: Logger;
}

/** Keeps the sidecar's proxy equal to what the system resolves for the repository. */
export class ProxySync {
  private state: NetworkState = { resolved: null, applied: null, runtime: 'unknown', startFlag: true };
  private timer: NodeJS.Timeout | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly options: NetworkOptions,
    private readonly url: string | undefined,
    private readonly host: ProxyHost,
  ) {}

  get snapshot(): NetworkState {
    return { ...this.state };
  }

  /** Ask the system now (bounded); keeps the previous answer when it fails. */
  async resolve(): Promise<ProxySetting | null> {
    if (!this.url) {
      this.host.logger.warn('network: no repository URL to resolve a proxy for; the sidecar uses its environment');
      return null;
    }
    const timeoutMs = this.options.resolveTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const pac = await Promise.race([
        Promise.resolve().then(() => this.options.resolveProxy(this.url!)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      const { proxy, skipped } = proxyFromPac(String(pac));
      if (skipped.length) {
        const shown = skipped.map((entry) => entry.replace(/\S*@/g, '***@')); // never a credential in the log
        this.host.logger.warn(`network: proxy entries the sidecar cannot use were skipped: ${shown.join('; ')}`);
      }
      this.state.resolved = proxy;
    } catch (error) {
      this.host.logger.warn(`network: could not resolve the proxy for ${this.url} (${error instanceof Error ? error.message : String(error)}); keeping ${redactProxy(this.state.resolved)}`);
    } finally {
      clearTimeout(timer);
    }
    return this.state.resolved;
  }

  /** Flags for a sidecar about to start. "direct" is left to the start-up sync (see afterStart). */
  startArgs(): string[] {
    const proxy = this.state.resolved;
    return this.state.startFlag && proxy && proxy !== 'direct' ? ['--proxy', proxy] : [];
  }

  /** The sidecar started with startArgs() and answered its handshake. */
  afterStart(args: readonly string[]): Promise<void> {
    this.state.applied = args.includes('--proxy') ? this.state.resolved : null;
    if (this.state.resolved === 'direct' && !PROXY_ENV.some((name) => this.host.env[name])) {
      this.state.applied = 'direct'; // its environment names no proxy: direct already
    }
    return this.apply();
  }

  /** An older sidecar refused `--proxy`: start without it from now on. */
  flagRefused(): void {
    this.state.startFlag = false;
    this.host.logger.warn('network: this sidecar does not take --proxy; it uses its environment\'s proxy settings');
  }

  /** Re-resolve and tell the sidecar if the answer changed. */
  refresh(): Promise<NetworkState> {
    return this.enqueue(async () => {
      await this.resolve();
      await this.applyNow();
      return this.snapshot;
    });
  }

  startPolling(): void {
    const every = this.options.pollMs ?? 60_000;
    if (every <= 0 || this.timer) return;
    this.timer = setInterval(() => void this.refresh(), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private apply(): Promise<void> {
    return this.enqueue(() => this.applyNow());
  }

  private async applyNow(): Promise<void> {
    const wanted = this.state.resolved;
    if (wanted === null || wanted === this.state.applied || this.state.runtime === 'unsupported') return;
    try {
      const answer = await this.host.setNetwork({ proxy: wanted });
      this.state.runtime = 'supported';
      this.state.applied = wanted;
      this.host.logger.info(`network: the sidecar now uses ${answer.proxy === null ? 'its environment' : answer.proxy} (system: ${redactProxy(wanted)})`);
    } catch (error) {
      if (isMethodNotFound(error)) {
        this.state.runtime = 'unsupported';
        this.host.logger.warn(
          `network: proxy not supported at run time by this sidecar (no setNetwork); ${redactProxy(wanted)} applies from its next start`,
        );
        return;
      }
      this.host.logger.warn(`network: could not set the sidecar's proxy to ${redactProxy(wanted)}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
