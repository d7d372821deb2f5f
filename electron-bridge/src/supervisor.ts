// Keeps one sidecar process alive: restarts it after a crash with exponential backoff,
// and gives up ("broken") after too many crashes in a window, so a sidecar that dies
// at start-up (bad interpreter, corrupt install) does not spin forever.

export interface RestartPolicy {
  /** Delay before the first restart. */
  initialDelayMs: number;
  /** Upper bound for the delay. */
  maxDelayMs: number;
  factor: number;
  /** Crashes tolerated within `windowMs`; one more and the client is broken. */
  maxRestarts: number;
  windowMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  factor: 2,
  maxRestarts: 5,
  windowMs: 60_000,
};

/** Delay before restart number `attempt` (0-based). */
export function restartDelay(attempt: number, policy: RestartPolicy): number {
  return Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.factor ** attempt);
}

/** Remembers recent crashes; decides whether another restart is allowed and after how long. */
export class RestartBudget {
  private crashes: number[] = [];

  constructor(private readonly policy: RestartPolicy) {}

  /** Record a crash at `now`; the delay before restarting, or null when over the cap. */
  crashed(now: number): number | null {
    this.crashes = this.crashes.filter((t) => now - t < this.policy.windowMs);
    this.crashes.push(now);
    if (this.crashes.length > this.policy.maxRestarts) return null;
    return restartDelay(this.crashes.length - 1, this.policy);
  }

  get recent(): number {
    return this.crashes.length;
  }

  reset(): void {
    this.crashes = [];
  }
}
