/**
 * Where budgets, rate limits and run state are kept, behind one contract: a reservation checks
 * every applicable key and, only if all pass, applies them all; a settlement adjusts reserved
 * amounts to what was really used (or releases them).
 *
 * Three kinds of check:
 * - budget counter (`b`): fixed calendar window; passes if used + amount <= limit.
 * - GCRA (`g`): a rate of `windowMs / intervalMs` units per window, a full window's worth at
 *   once at most, and no double burst across any boundary (the theoretical arrival time moves
 *   forward by `amount * intervalMs` and may not run more than `windowMs` ahead of now).
 * - run state (`r`): one agent run's iterations, first-call time, stuck-loop detector, and the
 *   tokens and dollars it has spent, all in one record (one key on Redis).
 */

export type Check =
  | { readonly kind: 'b'; readonly key: string; readonly amount: number; readonly limit: number; readonly ttlMs: number }
  | { readonly kind: 'g'; readonly key: string; readonly amount: number; readonly intervalMs: number; readonly windowMs: number }
  | {
      readonly kind: 'r';
      readonly key: string;
      /** 0: unlimited. */
      readonly maxIterations: number;
      readonly maxDurationMs: number;
      readonly maxRepeats: number;
      /** Hash of the request's new content, for the stuck-loop detector ('' when it is off). */
      readonly hash: string;
      readonly ttlMs: number;
      /** Tokens and dollars reserved for this call, against the run's caps (0: uncapped). */
      readonly tokens: number;
      readonly maxTokens: number;
      readonly usd: number;
      readonly maxUsd: number;
    };

/** Which run guard tripped. */
export type RunLimit = 'iterations' | 'duration' | 'repeats' | 'tokens' | 'usd';

export type Adjustment =
  | { readonly kind: 'b'; readonly key: string; readonly delta: number }
  | { readonly kind: 'g'; readonly key: string; readonly delta: number; readonly intervalMs: number }
  | { readonly kind: 'r'; readonly key: string; readonly tokens: number; readonly usd: number };

export type ReserveResult =
  | { readonly ok: true; /** The run's iteration count after this call, 0 without a run check. */ readonly iterations: number }
  | {
      readonly ok: false;
      /** Index of the check that failed. */
      readonly index: number;
      /** When trying again can succeed; -1 for never (a run guard). */
      readonly retryAfterMs: number;
      /** For a run check: which guard tripped. */
      readonly run?: RunLimit;
    };

export interface LimiterStore {
  reserve(checks: readonly Check[], now: number): Promise<ReserveResult>;
  settle(adjustments: readonly Adjustment[], now: number): Promise<void>;
  /** What budget keys hold now (0 for a key that does not exist): for the usage gauge. */
  read(keys: readonly string[], now: number): Promise<number[]>;
}

/** Rates like 14 per minute make fractional intervals: sums of them may not exceed the window by rounding. */
export const EPSILON_MS = 0.001;

interface Entry {
  value: number;
  expiresAt: number;
}

interface RunState {
  iterations: number;
  startedAt: number;
  hash: string;
  repeats: number;
  tokens: number;
  usd: number;
  expiresAt: number;
}

/** In one process: zero setup, the default; also the per-process fallback when Redis is down. */
export class MemoryLimiterStore implements LimiterStore {
  private readonly values = new Map<string, Entry>();
  private readonly runs = new Map<string, RunState>();
  private readonly sweeper: NodeJS.Timeout;

  constructor() {
    this.sweeper = setInterval(() => this.sweep(Date.now()), 30_000);
    this.sweeper.unref();
  }

  reserve(checks: readonly Check[], now: number): Promise<ReserveResult> {
    return Promise.resolve(this.reserveNow(checks, now));
  }

  settle(adjustments: readonly Adjustment[], now: number): Promise<void> {
    this.settleNow(adjustments, now);
    return Promise.resolve();
  }

  read(keys: readonly string[], now: number): Promise<number[]> {
    return Promise.resolve(keys.map((key) => this.current(key, now)));
  }

  /** The same, synchronously (single-threaded: check-then-apply cannot interleave). */
  reserveNow(checks: readonly Check[], now: number): ReserveResult {
    const runUpdates: Array<RunState | undefined> = [];
    for (let i = 0; i < checks.length; i++) {
      const c = checks[i];
      if (c.kind === 'b') {
        const used = this.current(c.key, now);
        if (used >= c.limit || used + c.amount > c.limit) return { ok: false, index: i, retryAfterMs: this.ttl(c.key, now, c.ttlMs) };
      } else if (c.kind === 'g') {
        const tat = Math.max(this.current(c.key, now), now);
        const next = tat + c.amount * c.intervalMs;
        if (next - now > c.windowMs + EPSILON_MS) {
          return { ok: false, index: i, retryAfterMs: c.amount * c.intervalMs > c.windowMs ? -1 : Math.ceil(next - now - c.windowMs) };
        }
      } else {
        const prior = this.runs.get(c.key);
        const live = prior && prior.expiresAt > now ? prior : undefined;
        const state: RunState = {
          iterations: (live?.iterations ?? 0) + 1,
          startedAt: live?.startedAt ?? now,
          hash: c.hash,
          repeats: live && c.hash && live.hash === c.hash ? live.repeats + 1 : 1,
          tokens: (live?.tokens ?? 0) + c.tokens,
          usd: (live?.usd ?? 0) + c.usd,
          expiresAt: now + c.ttlMs,
        };
        const tripped = runTripped(c, state, now);
        if (tripped) return { ok: false, index: i, retryAfterMs: -1, run: tripped };
        runUpdates[i] = state;
      }
    }
    let iterations = 0;
    for (let i = 0; i < checks.length; i++) {
      const c = checks[i];
      if (c.kind === 'b') {
        this.add(c.key, c.amount, now, c.ttlMs);
      } else if (c.kind === 'g') {
        const next = Math.max(this.current(c.key, now), now) + c.amount * c.intervalMs;
        this.values.set(c.key, { value: next, expiresAt: next + 1_000 });
      } else {
        const state = runUpdates[i]!;
        this.runs.set(c.key, state);
        iterations = state.iterations;
      }
    }
    return { ok: true, iterations };
  }

  settleNow(adjustments: readonly Adjustment[], now: number): void {
    for (const a of adjustments) {
      if (a.kind === 'r') {
        const run = this.runs.get(a.key);
        if (run && run.expiresAt > now) {
          run.tokens = Math.max(0, run.tokens + a.tokens);
          run.usd = Math.max(0, run.usd + a.usd);
        }
        continue;
      }
      const entry = this.values.get(a.key);
      if (!entry || entry.expiresAt <= now) continue; // the window ended: nothing to correct
      if (a.kind === 'b') {
        entry.value = Math.max(0, entry.value + a.delta);
      } else {
        entry.value += a.delta * a.intervalMs;
        entry.expiresAt = entry.value + 1_000;
      }
    }
  }

  private current(key: string, now: number): number {
    const entry = this.values.get(key);
    return entry && entry.expiresAt > now ? entry.value : 0;
  }

  private ttl(key: string, now: number, fallback: number): number {
    const entry = this.values.get(key);
    return entry && entry.expiresAt > now ? entry.expiresAt - now : fallback;
  }

  private add(key: string, amount: number, now: number, ttlMs: number): void {
    const entry = this.values.get(key);
    if (entry && entry.expiresAt > now) entry.value += amount;
    else this.values.set(key, { value: amount, expiresAt: now + ttlMs });
  }

  private sweep(now: number): void {
    for (const [key, entry] of this.values) if (entry.expiresAt <= now) this.values.delete(key);
    for (const [key, state] of this.runs) if (state.expiresAt <= now) this.runs.delete(key);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}

function runTripped(c: Extract<Check, { kind: 'r' }>, state: RunState, now: number): RunLimit | null {
  if (c.maxIterations > 0 && state.iterations > c.maxIterations) return 'iterations';
  if (c.maxDurationMs > 0 && now - state.startedAt > c.maxDurationMs) return 'duration';
  if (c.maxRepeats > 0 && state.repeats >= c.maxRepeats) return 'repeats';
  // Like a budget: refused when already at the cap, or when this call's reservation would pass it.
  if (c.maxTokens > 0 && (state.tokens - c.tokens >= c.maxTokens || state.tokens > c.maxTokens)) return 'tokens';
  if (c.maxUsd > 0 && (state.usd - c.usd >= c.maxUsd || state.usd > c.maxUsd)) return 'usd';
  return null;
}
