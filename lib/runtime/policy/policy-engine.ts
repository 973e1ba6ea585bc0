/**
 * Budgets, rate limits and loop guards for one request: which keys apply (agent, user, run,
 * team), how much to reserve up front (the request's maximum cost), and what to settle once the
 * real usage is known. Applies the store's failure mode when Redis cannot be reached.
 */
import { createHash } from 'node:crypto';
import type { SidecarConfig } from '../../spec/config';
import type { Period, Scope } from '../../spec/policy';
import { log } from '../log';
import type { RuntimeMetrics } from '../metering/metrics';
import type { RedisClient } from '../store/redis-client';
import { MemoryLimiterStore, type Adjustment, type Check, type LimiterStore, type ReserveResult, type RunLimit } from './limiter-store';
import { RedisLimiterStore } from './redis-limiter-store';

const MINUTE = 60_000;
/** Slack after a window ends before its key expires, so a late settlement still finds it. */
const WINDOW_SLACK_MS = 60_000;
const ANONYMOUS = '-';

export interface Identity {
  /** The agent: the sidecar's own, or in gateway mode the one whose signature was verified. */
  readonly agent: string;
  /** Its team (a budget scope), if it has one. */
  readonly team?: string;
  /** x-agent-user, if sent. */
  readonly user?: string;
  /** x-agent-run-id, if sent. */
  readonly run?: string;
}

/** What one request may cost at most, reserved before it goes upstream. */
export interface Estimate {
  readonly tokens: number;
  readonly usd: number;
}

export type RejectionCode = 'budget_exceeded' | 'rate_limited' | 'loop_detected' | 'budget_store_unavailable';

export interface Rejection {
  readonly ok: false;
  readonly status: 429 | 503;
  readonly code: RejectionCode;
  readonly scope: Scope | 'store';
  /** Metric label: usd_per_day, tokens_per_minute, requests_per_minute, run_iterations ... */
  readonly limit: string;
  readonly message: string;
  /** Seconds; undefined when trying again cannot help. */
  readonly retryAfter?: number;
}

/** A reservation to settle when the request ends. */
export interface Reservation {
  readonly ok: true;
  /** The run's iteration count, 0 without a run id. */
  readonly iterations: number;
  /** What was reserved, to correct by the real usage (null: nothing to settle). */
  readonly settle: null | {
    readonly store: LimiterStore;
    readonly estimate: Estimate;
    readonly usd: string[];
    readonly tokens: string[];
    readonly rates: Array<{ key: string; intervalMs: number }>;
    readonly run: string | null;
  };
  /** The store could not be reached and the failure mode let the request through. */
  readonly degraded?: 'fail-open' | 'local';
}

interface Meta {
  readonly code: RejectionCode;
  readonly scope: Scope;
  readonly limit: string;
  readonly describe: string;
  readonly settle?: 'usd' | 'tokens' | 'rate' | 'run';
  /** Budget window end, for Retry-After. */
  readonly windowEnd?: number;
  readonly amountAlone?: boolean;
}

/** One budget's use in its current window. */
export interface BudgetUsage {
  readonly agent: string;
  readonly scope: 'agent' | 'team';
  readonly unit: 'usd' | 'tokens';
  readonly period: Period;
  readonly used: number;
  readonly limit: number;
}

export class PolicyEngine {
  private readonly primary: LimiterStore;
  private readonly local: MemoryLimiterStore | null;
  private readonly mode: 'fail-closed' | 'fail-open' | 'local' | null;
  private readonly prefix: string;
  /** Nothing to check or count: the request path skips the engine entirely. */
  readonly idle: boolean;

  constructor(
    private readonly config: SidecarConfig,
    private readonly metrics: RuntimeMetrics,
    redis: RedisClient | null,
  ) {
    const store = config.store;
    if (store.type === 'redis' && redis) {
      this.primary = new RedisLimiterStore(redis);
      this.mode = store.onUnavailable;
      this.local = store.onUnavailable === 'local' ? new MemoryLimiterStore() : null;
      this.prefix = store.keyPrefix;
    } else {
      this.primary = new MemoryLimiterStore();
      this.mode = null;
      this.local = null;
      this.prefix = '';
    }
    this.idle = !config.budgets.length && !config.rateLimits.length && !config.loopGuard;
  }

  /**
   * Reserves the request's maximum cost on every applicable key, atomically: a Reservation to
   * settle later, or a Rejection to answer with (at once in memory, through a promise on Redis).
   */
  reserve(identity: Identity, estimate: Estimate, contentHash: () => string, now = Date.now()): Reservation | Rejection | Promise<Reservation | Rejection> {
    const { checks, metas } = this.plan(identity, estimate, contentHash, now);
    if (!checks.length) return { ok: true, iterations: 0, settle: null };
    const store = this.primary;
    // In memory the answer is immediate: no promise on the request path.
    if (store instanceof MemoryLimiterStore) return this.admission(store, store.reserveNow(checks, now), checks, metas, estimate, now);
    return store.reserve(checks, now).then(
      (result) => this.admission(store, result, checks, metas, estimate, now),
      (err: Error) => this.unavailable(err, checks, metas, estimate, now),
    );
  }

  private admission(
    store: LimiterStore,
    result: ReserveResult,
    checks: readonly Check[],
    metas: readonly Meta[],
    estimate: Estimate,
    now: number,
    degraded?: Reservation['degraded'],
  ): Reservation | Rejection {
    if (!result.ok) return this.rejection(metas[result.index], checks[result.index], result.retryAfterMs, now, result.run);
    return { ok: true, iterations: result.iterations, settle: this.settlement(store, checks, metas, estimate), degraded };
  }

  /** The shared store failed: the configured failure mode decides. */
  private unavailable(err: Error, checks: readonly Check[], metas: readonly Meta[], estimate: Estimate, now: number): Reservation | Rejection {
    this.metrics.storeErrors.inc({ mode: this.mode ?? 'memory' });
    if (this.mode === 'fail-open') return { ok: true, iterations: 0, settle: null, degraded: 'fail-open' };
    if (this.mode === 'local' && this.local) {
      return this.admission(this.local, this.local.reserveNow(checks, now), checks, metas, estimate, now, 'local');
    }
    return {
      ok: false,
      status: 503,
      code: 'budget_store_unavailable',
      scope: 'store',
      limit: 'store',
      message: `the budget store is unavailable (${err.message}); requests are refused until it is back (store.onUnavailable: fail-closed)`,
      retryAfter: 1,
    };
  }

  /** Corrects the reservation by what the request really used (zero for a request that failed). */
  settle(reservation: Reservation, used: Estimate, now = Date.now()): void {
    const s = reservation.settle;
    if (!s) return;
    const adjustments: Adjustment[] = [];
    const dUsd = used.usd - s.estimate.usd;
    const dTokens = used.tokens - s.estimate.tokens;
    if (dUsd) for (const key of s.usd) adjustments.push({ kind: 'b', key, delta: dUsd });
    if (dTokens) {
      for (const key of s.tokens) adjustments.push({ kind: 'b', key, delta: dTokens });
      for (const r of s.rates) adjustments.push({ kind: 'g', key: r.key, delta: dTokens, intervalMs: r.intervalMs });
    }
    if (s.run && (dTokens || dUsd)) adjustments.push({ kind: 'r', key: s.run, tokens: dTokens, usd: dUsd });
    if (!adjustments.length) return;
    s.store.settle(adjustments, now).catch((err: Error) => {
      // The reservation stands until its window ends: over-counted, never under.
      this.metrics.storeErrors.inc({ mode: this.mode ?? 'memory' });
      log.warn('settlement failed; the reservation stays counted until its window ends', { error: err.message });
    });
  }

  private plan(identity: Identity, estimate: Estimate, contentHash: () => string, now: number): { checks: Check[]; metas: Meta[] } {
    const checks: Check[] = [];
    const metas: Meta[] = [];
    const config = this.config;
    for (const b of config.budgets) {
      const id = this.scopeId(b.scope, identity);
      if (id === undefined) continue;
      const { start, end } = windowOf(b.period, now);
      const amount = b.unit === 'usd' ? estimate.usd : estimate.tokens;
      checks.push({ kind: 'b', key: `${this.prefix}b:${b.scope}:${id}:${b.unit}:${b.period}:${start}`, amount, limit: b.limit, ttlMs: end - now + WINDOW_SLACK_MS });
      metas.push({
        code: 'budget_exceeded',
        scope: b.scope,
        limit: `${b.unit}_per_${b.period}`,
        describe: `${b.scope} budget of ${b.unit === 'usd' ? `$${b.limit}` : `${b.limit} tokens`} per ${b.period}`,
        settle: b.unit,
        windowEnd: end,
        amountAlone: amount > b.limit,
      });
    }
    for (const r of config.rateLimits) {
      const id = this.scopeId(r.scope, identity);
      if (id === undefined) continue;
      const amount = r.unit === 'requests' ? 1 : estimate.tokens;
      checks.push({ kind: 'g', key: `${this.prefix}g:${r.scope}:${id}:${r.unit}`, amount, intervalMs: MINUTE / r.perMinute, windowMs: MINUTE });
      metas.push({
        code: 'rate_limited',
        scope: r.scope,
        limit: `${r.unit}_per_minute`,
        describe: `${r.scope} rate limit of ${r.perMinute} ${r.unit} per minute`,
        settle: r.unit === 'tokens' ? 'rate' : undefined,
        amountAlone: amount > r.perMinute,
      });
    }
    const guard = config.loopGuard;
    if (identity.run !== undefined) {
      const run = `${this.prefix}r:${identity.agent}:${keyPart(identity.run)}`;
      const ttlMs = guard?.runTtlMs ?? 86_400_000;
      // Counted even without a guard: every request with a run id feeds agent_run_iterations.
      // The run's spend (tokens and dollars) lives in the same record as its iterations.
      checks.push({
        kind: 'r',
        key: run,
        maxIterations: guard?.maxIterations ?? 0,
        maxDurationMs: guard?.maxDurationMs ?? 0,
        maxRepeats: guard?.maxRepeats ?? 0,
        hash: guard?.maxRepeats ? contentHash() : '',
        ttlMs,
        tokens: estimate.tokens,
        maxTokens: guard?.maxTokens ?? 0,
        usd: estimate.usd,
        maxUsd: guard?.maxCostUsd ?? 0,
      });
      metas.push({
        code: 'loop_detected',
        scope: 'run',
        limit: 'run_guard',
        describe: 'run loop guard',
        settle: 'run',
        amountAlone: (!!guard?.maxTokens && estimate.tokens > guard.maxTokens) || (!!guard?.maxCostUsd && estimate.usd > guard.maxCostUsd),
      });
    }
    return { checks, metas };
  }

  /**
   * How much of each agent- and team-scope budget the current window has used, per agent this
   * process serves (its own, or in gateway mode every connected one). Read at scrape time; no
   * samples when the store cannot be read (budget_store_up says why).
   */
  async budgetUsage(agents: readonly Identity[], now = Date.now()): Promise<BudgetUsage[]> {
    const samples: Array<Omit<BudgetUsage, 'used'>> = [];
    const keys: string[] = [];
    for (const b of this.config.budgets) {
      if (b.scope !== 'agent' && b.scope !== 'team') continue;
      const { start } = windowOf(b.period, now);
      for (const identity of agents) {
        if (b.scope === 'team' && identity.team === undefined) continue;
        keys.push(`${this.prefix}b:${b.scope}:${this.scopeId(b.scope, identity)}:${b.unit}:${b.period}:${start}`);
        samples.push({ agent: identity.agent, scope: b.scope, unit: b.unit, period: b.period, limit: b.limit });
      }
    }
    if (!keys.length) return [];
    try {
      const used = await this.primary.read(keys, now);
      return samples.map((s, i) => ({ ...s, used: used[i] }));
    } catch {
      return [];
    }
  }

  /** The key of a scope for this request; undefined when the scope does not apply (no run id). */
  private scopeId(scope: Scope, identity: Identity): string | undefined {
    switch (scope) {
      case 'agent':
        return identity.agent;
      case 'team':
        // In gateway mode an agent connected without a team is under no team budget.
        return identity.team;
      case 'user':
        // Users are kept per agent; requests without x-agent-user share one anonymous budget.
        return `${identity.agent}:${identity.user === undefined ? ANONYMOUS : keyPart(identity.user)}`;
      case 'run':
        return identity.run === undefined ? undefined : `${identity.agent}:${keyPart(identity.run)}`;
    }
  }

  private settlement(store: LimiterStore, checks: readonly Check[], metas: readonly Meta[], estimate: Estimate): Reservation['settle'] {
    const usd: string[] = [];
    const tokens: string[] = [];
    const rates: Array<{ key: string; intervalMs: number }> = [];
    let run: string | null = null;
    checks.forEach((c, i) => {
      const kind = metas[i].settle;
      if (kind === 'usd') usd.push(c.key);
      else if (kind === 'tokens') tokens.push(c.key);
      else if (kind === 'rate' && c.kind === 'g') rates.push({ key: c.key, intervalMs: c.intervalMs });
      else if (kind === 'run') run = c.key;
    });
    return usd.length || tokens.length || rates.length || run ? { store, estimate, usd, tokens, rates, run } : null;
  }

  private rejection(meta: Meta, check: Check, retryAfterMs: number, now: number, run?: RunLimit): Rejection {
    if (run) meta = { ...meta, limit: RUN_LIMIT_LABELS[run] };
    this.metrics.budgetRejections.inc({ scope: meta.scope, limit: meta.limit });
    let message: string;
    let retryAfter: number | undefined;
    if (meta.amountAlone) {
      message = `this request alone would exceed the ${meta.describe} (it reserves ${describeAmount(check)} up front: its input estimate plus max_tokens); lower max_tokens or raise the limit`;
    } else if (meta.code === 'loop_detected') {
      message = `${meta.describe} tripped (${loopReason(check, run)}): the agent run is stopped; start a new run (x-agent-run-id) once the loop is fixed`;
    } else {
      const waitMs = meta.windowEnd !== undefined ? meta.windowEnd - now : retryAfterMs;
      retryAfter = Math.max(1, Math.ceil(waitMs / 1000));
      message = `${meta.describe} reached; retry in ${formatWait(retryAfter)}`;
    }
    return { ok: false, status: 429, code: meta.code, scope: meta.scope, limit: meta.limit, message, retryAfter };
  }

  /** Waits until every reservation and settlement made so far has reached the shared store (or failed). */
  async flush(): Promise<void> {
    if (this.primary instanceof RedisLimiterStore) await this.primary.flush();
  }

  close(): void {
    if (this.primary instanceof MemoryLimiterStore) this.primary.close();
    this.local?.close();
  }
}

function describeAmount(check: Check): string {
  return check.kind === 'r' ? '' : `${+check.amount.toPrecision(4)}`;
}

/** Metric labels of the run guards (budget_rejections_total{scope="run",limit}). */
const RUN_LIMIT_LABELS: Record<RunLimit, string> = {
  iterations: 'run_iterations',
  duration: 'run_duration',
  repeats: 'run_repeats',
  tokens: 'run_tokens',
  usd: 'run_cost',
};

function loopReason(check: Check, run?: RunLimit): string {
  if (check.kind !== 'r') return 'run limit';
  switch (run) {
    case 'iterations':
      return `at most ${check.maxIterations} calls per run`;
    case 'duration':
      return `at most ${check.maxDurationMs} ms per run`;
    case 'repeats':
      return `the same request at most ${check.maxRepeats - 1} times in a row`;
    case 'tokens':
      return `at most ${check.maxTokens} tokens per run`;
    case 'usd':
      return `at most $${check.maxUsd} per run`;
    default:
      return 'run limit';
  }
}

/** The UTC calendar window containing `now`. */
export function windowOf(period: Period, now: number): { start: number; end: number } {
  if (period === 'month') {
    const d = new Date(now);
    const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    const end = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    return { start, end };
  }
  const len = period === 'minute' ? MINUTE : period === 'hour' ? 60 * MINUTE : 24 * 60 * MINUTE;
  const start = Math.floor(now / len) * len;
  return { start, end: start + len };
}

/** An id safe and bounded as part of a key: long or odd ones are hashed. */
function keyPart(id: string): string {
  return id.length <= 64 && /^[\w.@:-]+$/.test(id) ? id : `h${createHash('sha256').update(id).digest('hex').slice(0, 32)}`;
}

function formatWait(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.ceil(seconds / 60)} min`;
  return `${Math.ceil(seconds / 3600)} h`;
}
