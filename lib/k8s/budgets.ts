/**
 * Budgets and rate limits, typed: `Budget.usdPerDay(50)`, `Budget.usdPerMonth(5).forUser()`,
 * `RateLimit.requestsPerMinute(20).forUser()`. The runtime enforces them (lib/spec/policy.ts).
 */
import type { SidecarConfigInput } from '../spec';

type BudgetInput = NonNullable<SidecarConfigInput['budgets']>[number];
type RateLimitInput = NonNullable<SidecarConfigInput['rateLimits']>[number];

/** Who a budget or rate limit is kept for. */
export enum BudgetScope {
  /** The agent as a whole (every replica together, on a shared store). */
  AGENT = 'agent',
  /** Each end user (the x-agent-user header), per agent. */
  USER = 'user',
  /** Each agent run (the x-agent-run-id header). A run lives in one pod, so this is never shared. */
  RUN = 'run',
  /** The agent's team (the `team` prop), shared by every agent of the team on the same store. */
  TEAM = 'team',
}

/** The calendar window (UTC) a budget resets with. */
export enum BudgetPeriod {
  MINUTE = 'minute',
  HOUR = 'hour',
  DAY = 'day',
  MONTH = 'month',
}

/** What a budget counts. */
export enum BudgetUnit {
  /** Cost from the price table. */
  USD = 'usd',
  /** Input, output, cache-read and cache-write tokens together. */
  TOKENS = 'tokens',
}

/** Whether limits of this scope are kept across replicas (and so need a shared store). */
export function isSharedScope(scope: BudgetScope): boolean {
  return scope !== BudgetScope.RUN;
}

function checkLimit(what: string, limit: number): void {
  if (!Number.isFinite(limit) || limit <= 0) throw new Error(`${what}: the limit (${limit}) must be a positive number.`);
}

/** A spending cap per calendar window. Scope: the agent, unless `.forUser()`, `.forRun()` or `.forTeam()`. */
export class Budget {
  public static usdPerHour(limit: number): Budget {
    return Budget.of(BudgetUnit.USD, BudgetPeriod.HOUR, limit);
  }
  public static usdPerDay(limit: number): Budget {
    return Budget.of(BudgetUnit.USD, BudgetPeriod.DAY, limit);
  }
  public static usdPerMonth(limit: number): Budget {
    return Budget.of(BudgetUnit.USD, BudgetPeriod.MONTH, limit);
  }
  public static tokensPerHour(limit: number): Budget {
    return Budget.of(BudgetUnit.TOKENS, BudgetPeriod.HOUR, limit);
  }
  public static tokensPerDay(limit: number): Budget {
    return Budget.of(BudgetUnit.TOKENS, BudgetPeriod.DAY, limit);
  }
  public static tokensPerMonth(limit: number): Budget {
    return Budget.of(BudgetUnit.TOKENS, BudgetPeriod.MONTH, limit);
  }
  /** Any unit and window. */
  public static of(unit: BudgetUnit, period: BudgetPeriod, limit: number, scope: BudgetScope = BudgetScope.AGENT): Budget {
    checkLimit(`Budget ${unit} per ${period}`, limit);
    return new Budget(scope, unit, period, limit);
  }

  private constructor(
    public readonly scope: BudgetScope,
    public readonly unit: BudgetUnit,
    public readonly period: BudgetPeriod,
    public readonly limit: number,
  ) {}

  /** The same cap, for the agent as a whole. */
  public forAgent(): Budget {
    return this.withScope(BudgetScope.AGENT);
  }
  /** The same cap, for each end user. */
  public forUser(): Budget {
    return this.withScope(BudgetScope.USER);
  }
  /** The same cap, for each run. */
  public forRun(): Budget {
    return this.withScope(BudgetScope.RUN);
  }
  /** The same cap, for the agent's team. */
  public forTeam(): Budget {
    return this.withScope(BudgetScope.TEAM);
  }
  public withScope(scope: BudgetScope): Budget {
    return new Budget(scope, this.unit, this.period, this.limit);
  }

  /** "usd per day for each user". */
  public toString(): string {
    return `${this.limit} ${this.unit} per ${this.period} (${this.scope})`;
  }

  /** @internal */
  public _toConfig(): BudgetInput {
    return { scope: this.scope, unit: this.unit, period: this.period, limit: this.limit };
  }
}

/** What a rate limit counts. */
export enum RateLimitUnit {
  REQUESTS = 'requests',
  TOKENS = 'tokens',
}

/** A sustained rate per minute (GCRA: no double burst across window boundaries). Scope: the agent, unless changed. */
export class RateLimit {
  public static requestsPerMinute(limit: number): RateLimit {
    checkLimit('RateLimit.requestsPerMinute', limit);
    return new RateLimit(BudgetScope.AGENT, RateLimitUnit.REQUESTS, limit);
  }
  public static tokensPerMinute(limit: number): RateLimit {
    checkLimit('RateLimit.tokensPerMinute', limit);
    return new RateLimit(BudgetScope.AGENT, RateLimitUnit.TOKENS, limit);
  }

  private constructor(
    public readonly scope: BudgetScope,
    public readonly unit: RateLimitUnit,
    public readonly perMinute: number,
  ) {}

  public forAgent(): RateLimit {
    return this.withScope(BudgetScope.AGENT);
  }
  public forUser(): RateLimit {
    return this.withScope(BudgetScope.USER);
  }
  public forRun(): RateLimit {
    return this.withScope(BudgetScope.RUN);
  }
  public forTeam(): RateLimit {
    return this.withScope(BudgetScope.TEAM);
  }
  public withScope(scope: BudgetScope): RateLimit {
    return new RateLimit(scope, this.unit, this.perMinute);
  }

  public toString(): string {
    return `${this.perMinute} ${this.unit} per minute (${this.scope})`;
  }

  /** @internal */
  public _toConfig(): RateLimitInput {
    return { scope: this.scope, unit: this.unit, perMinute: this.perMinute };
  }
}
