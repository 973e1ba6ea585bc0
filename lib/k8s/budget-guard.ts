/**
 * BudgetGuard: budgets, rate limits and a loop guard declared once and attached to agents and
 * gateways (`budgets.attach(agent)`). What it declares lands in each target's runtime config and
 * is enforced there, kept in the guard's store (Redis, shared by every replica); the guard emits
 * the PrometheusRule (AgentAlerts) watching what it is attached to.
 */
import { Construct } from 'constructs';
import type * as z from 'zod';
import { BudgetSchema, LoopGuardSchema, RateLimitSchema } from '../spec';
import { AgentAlerts, type AgentAlertsOptions } from './alerts';
import { AgentService } from './agent-service';
import { BudgetScope, type Budget, type RateLimit } from './budgets';
import type { BudgetStore } from './budget-store';
import { LlmGateway } from './llm-gateway';
import type { LoopGuard } from './loop-guard';
import { resolveName, resolveNamespace } from './names';
import type { SecretKey } from './secrets';

/** Props of a BudgetGuard. */
export interface BudgetGuardProps {
  /**
   * The guard's name: names its PrometheusRule and appears in errors.
   * @default - derived from the construct id
   */
  readonly name?: string;
  /**
   * The namespace of the PrometheusRule.
   * @default - the chart's namespace
   */
  readonly namespace?: string;
  /**
   * Spending caps per calendar window, each for the agent, each user, each run or the team:
   * `Budget.usdPerDay(50)`, `Budget.usdPerMonth(5).forUser()`. More with `addBudget()`.
   * @default - none
   */
  readonly budgets?: Budget[];
  /**
   * Rate limits: `RateLimit.requestsPerMinute(20).forUser()`, `RateLimit.tokensPerMinute(200_000)`. More with `addRateLimit()`.
   * @default - none
   */
  readonly rateLimits?: RateLimit[];
  /**
   * Guards per agent run (x-agent-run-id): a tripped guard answers loop_detected.
   * @default - none
   */
  readonly loopGuard?: LoopGuard;
  /**
   * Where the limits are kept: `BudgetStore.redis({ url | urlSecret, passwordSecret, onUnavailable })`
   * (the URL and password by Secret or AWS Secrets Manager reference; `onUnavailable` decides what
   * happens while Redis cannot be reached). A target without a Redis store of its own gets this one;
   * a target with a different Redis store is an error.
   * @default - each target's own store
   */
  readonly store?: BudgetStore;
  /**
   * Accept that this guard's budgets and rate limits of a shared scope are kept per pod on a target
   * with more than one pod and no Redis store (the effective cap multiplies by the pod count).
   * @default false (such a target is an error at attach)
   */
  readonly acceptPerReplicaBudgets?: boolean;
  /**
   * Agents to attach to, as `attach(agent)` does.
   * @default - none
   */
  readonly agents?: AgentService[];
  /**
   * Gateways to attach to (their budgets apply per calling agent, user or run), as `attach(gateway)` does.
   * @default - none
   */
  readonly gateways?: LlmGateway[];
  /**
   * Emit a PrometheusRule (AgentAlerts) watching the targets.
   * @default true
   */
  readonly emitAlerts?: boolean;
  /**
   * The alerts' thresholds and the PrometheusRule's labels (kube-prometheus-stack: `{ release: ... }`).
   * @default - default thresholds; `runIterationsThreshold` is 80% of `loopGuard.maxIterations` when set
   */
  readonly alerts?: AgentAlertsOptions;
}

/** @internal What a guard hands a target it is attached to. */
export interface BudgetGuardGrant {
  /** "BudgetGuard 'org-limits'", for errors. */
  readonly owner: string;
  readonly budgets: readonly Budget[];
  readonly rateLimits: readonly RateLimit[];
  readonly loopGuard?: LoopGuard;
  /** The store to keep them in, when the guard has a Redis store the target lacks. */
  readonly store?: BudgetStore;
  readonly acceptPerReplicaBudgets: boolean;
}

type Target = AgentService | LlmGateway;

/** Which guard governs a target: one per target, so its limits, store and alerts have one source. */
const GOVERNED = new WeakMap<Target, BudgetGuard>();

/** Budgets, rate limits and a loop guard for agents and gateways, with the alerts to watch them. */
export class BudgetGuard extends Construct {
  /** The guard's name. */
  public readonly name: string;
  /** The namespace of its PrometheusRule, when known at synth. */
  public readonly namespace?: string;
  /** The loop guard, if any. */
  public readonly loopGuard?: LoopGuard;
  /** The store, if the guard brings one. */
  public readonly store?: BudgetStore;
  /** The alerts on the targets (the construct's default child, id 'Resource'), unless `emitAlerts: false`. */
  public readonly alerts?: AgentAlerts;

  private readonly owner: string;
  private readonly acceptPerReplica: boolean;
  private readonly _budgets: Budget[] = [];
  private readonly _rateLimits: RateLimit[] = [];
  private readonly targets: Target[] = [];

  constructor(scope: Construct, id: string, props: BudgetGuardProps = {}) {
    super(scope, id);
    this.name = resolveName('BudgetGuard', id, props.name);
    this.owner = `BudgetGuard '${this.name}'`;
    this.namespace = resolveNamespace(this, props.namespace);
    this.acceptPerReplica = props.acceptPerReplicaBudgets ?? false;
    this.store = props.store;
    if (props.loopGuard) {
      checkSpec(this.owner, 'loopGuard', LoopGuardSchema, props.loopGuard._toConfig());
      this.loopGuard = props.loopGuard;
    }
    if (props.emitAlerts === false && props.alerts) {
      throw new Error(`${this.owner}: 'alerts' sets alert thresholds, but 'emitAlerts' is false. Remove one.`);
    }
    if (props.emitAlerts !== false) {
      const maxIterations = props.loopGuard?.options.maxIterations;
      const runIterationsThreshold = props.alerts?.runIterationsThreshold ?? (maxIterations ? Math.max(1, Math.floor(maxIterations * 0.8)) : undefined);
      this.alerts = new AgentAlerts(this, 'Resource', { name: this.name, namespace: this.namespace, ...props.alerts, runIterationsThreshold });
    }
    for (const budget of props.budgets ?? []) this.addBudget(budget);
    for (const limit of props.rateLimits ?? []) this.addRateLimit(limit);
    for (const agent of props.agents ?? []) this.attach(agent);
    for (const gateway of props.gateways ?? []) this.attach(gateway);
    this.node.addValidation({ validate: () => this.validateAtSynth() });
  }

  /** Its budgets. */
  public get budgets(): Budget[] {
    return [...this._budgets];
  }

  /** Its rate limits. */
  public get rateLimits(): RateLimit[] {
    return [...this._rateLimits];
  }

  /** The agents it is attached to. */
  public get agents(): AgentService[] {
    return this.targets.filter((t): t is AgentService => t instanceof AgentService);
  }

  /** The gateways it is attached to. */
  public get gateways(): LlmGateway[] {
    return this.targets.filter((t): t is LlmGateway => t instanceof LlmGateway);
  }

  /**
   * Enforces the guard's limits in the agent's sidecar: they join the agent's own in its runtime
   * config, in the guard's store, with the same replica check as the agent's own budgets.
   */
  public attach(agent: AgentService): void;
  /** Enforces the guard's limits in the gateway, per calling agent (and user, run or team). */
  public attach(gateway: LlmGateway): void;
  public attach(target: Target): void {
    if (!(target instanceof AgentService) && !(target instanceof LlmGateway)) {
      throw new Error(`${this.owner}: attach() takes an AgentService or an LlmGateway.`);
    }
    const governing = GOVERNED.get(target);
    if (governing === this) return;
    const what = describeTarget(target);
    if (governing) {
      throw new Error(
        `${this.owner}: cannot attach to ${what}: BudgetGuard '${governing.name}' is already attached to it. A target takes one guard, so its limits, ` +
          `store and alerts have one source: put these limits in '${governing.name}' (or on the target itself with addBudget()).`,
      );
    }
    this.checkStore(target, what);
    if (this.loopGuard && target.loopGuard && !sameConfig(this.loopGuard, target.loopGuard)) {
      throw new Error(
        `${this.owner}: cannot attach to ${what}: it already has a different 'loopGuard' (${describeLoopGuard(target.loopGuard)}; this guard's: ` +
          `${describeLoopGuard(this.loopGuard)}). A run has one loop guard: remove one of them.`,
      );
    }
    for (const limit of [...this._budgets, ...this._rateLimits]) this.checkLimitOn(target, what, limit);
    target._attachBudgetGuard(this.grant(this._budgets, this._rateLimits, true));
    GOVERNED.set(target, this);
    this.targets.push(target);
    if (target instanceof AgentService) this.alerts?.watch(target);
    else this.alerts?.watch(target);
  }

  /** Adds a budget, on every target already attached too. */
  public addBudget(budget: Budget): void {
    checkSpec(this.owner, `budgets (${budget})`, BudgetSchema, budget._toConfig());
    const clash = this._budgets.find((b) => b.scope === budget.scope && b.unit === budget.unit && b.period === budget.period);
    if (clash) {
      throw new Error(
        `${this.owner}: two budgets in ${budget.unit} per ${budget.period} for scope ${budget.scope} (${clash.limit} and ${budget.limit}); the runtime keeps one per scope, unit and period. Keep one.`,
      );
    }
    this.addToTargets(budget);
    this._budgets.push(budget);
  }

  /** Adds a rate limit, on every target already attached too. */
  public addRateLimit(limit: RateLimit): void {
    checkSpec(this.owner, `rateLimits (${limit})`, RateLimitSchema, limit._toConfig());
    const clash = this._rateLimits.find((r) => r.scope === limit.scope && r.unit === limit.unit);
    if (clash) {
      throw new Error(
        `${this.owner}: two rate limits in ${limit.unit} per minute for scope ${limit.scope} (${clash.perMinute} and ${limit.perMinute}); the runtime keeps one per scope and unit. Keep one.`,
      );
    }
    this.addToTargets(limit);
    this._rateLimits.push(limit);
  }

  private addToTargets(limit: Budget | RateLimit): void {
    for (const target of this.targets) this.checkLimitOn(target, describeTarget(target), limit);
    const [budgets, rateLimits] = isBudget(limit) ? [[limit], []] : [[], [limit]];
    for (const target of this.targets) target._attachBudgetGuard(this.grant(budgets, rateLimits, false));
  }

  private grant(budgets: readonly Budget[], rateLimits: readonly RateLimit[], withLoopGuard: boolean): BudgetGuardGrant {
    return {
      owner: this.owner,
      budgets,
      rateLimits,
      loopGuard: withLoopGuard ? this.loopGuard : undefined,
      store: this.store?.isShared ? this.store : undefined,
      acceptPerReplicaBudgets: this.acceptPerReplica,
    };
  }

  /** A Redis store of the guard replaces a target's memory store; two different Redis stores conflict. */
  private checkStore(target: Target, what: string): void {
    const own = target.budgetStore;
    if (!this.store?.isShared || !own.isShared || storeKey(own) === storeKey(this.store)) return;
    throw new Error(
      `${this.owner}: cannot attach to ${what}: it keeps its limits in ${describeStore(own)}, this guard in ${describeStore(this.store)}. ` +
        `Counters in two stores never add up: give both the same 'store' (or remove the target's own).`,
    );
  }

  /** The runtime's refusals for a scope or a repeated limit, as errors naming the guard and the target. */
  private checkLimitOn(target: Target, what: string, limit: Budget | RateLimit): void {
    const kind = isBudget(limit) ? 'budget' : 'rate limit';
    if (limit.scope === BudgetScope.TEAM && target instanceof AgentService && !target.team) {
      throw new Error(
        `${this.owner}: cannot attach to ${what}: the ${kind} ${limit} is kept per team, but the agent has no 'team' (the runtime keys team limits by it). ` +
          `Set 'team' on the agent, or give the limit another scope (forAgent(), forUser(), forRun()).`,
      );
    }
    const existing = isBudget(limit)
      ? target.budgets.find((b) => b.scope === limit.scope && b.unit === limit.unit && b.period === limit.period)
      : target.rateLimits.find((r) => r.scope === limit.scope && r.unit === limit.unit);
    if (existing) {
      throw new Error(
        `${this.owner}: cannot attach to ${what}: it already has the ${kind} ${existing}, and this guard brings ${limit}; the runtime keeps one ` +
          `${kind} per ${isBudget(limit) ? 'scope, unit and period' : 'scope and unit'}. Remove one of them.`,
      );
    }
  }

  private validateAtSynth(): string[] {
    const problems: string[] = [];
    if (!this.targets.length) {
      problems.push(`${this.owner}: is attached to nothing, so nothing enforces its limits. Call budgets.attach(agent) (or a gateway), or remove it.`);
    }
    const team = [...this._budgets, ...this._rateLimits].find((l) => l.scope === BudgetScope.TEAM);
    for (const gateway of this.gateways) {
      if (team && !gateway.agents.some((a) => a.team)) {
        problems.push(
          `${this.owner}: ${describeTarget(gateway)} keeps ${team} per calling agent's team, but none of its connected agents has a 'team'. ` +
            `Set 'team' on the agents, or give the limit another scope.`,
        );
      }
    }
    if (!this._budgets.length && !this._rateLimits.length && !this.loopGuard) {
      problems.push(`${this.owner}: declares no budget, rate limit or loop guard. Add one ('budgets', 'rateLimits', 'loopGuard'), or remove the guard.`);
    }
    return problems;
  }
}

function isBudget(limit: Budget | RateLimit): limit is Budget {
  return 'period' in limit;
}

function describeTarget(target: Target): string {
  return `${target.constructor.name} '${target.name}'`;
}

/** The spec's own validator on one section: what the runtime would refuse, named by prop. */
function checkSpec(owner: string, prop: string, schema: z.ZodType, value: unknown): void {
  const result = schema.safeParse(value);
  if (result.success) return;
  const issues = result.error!.issues.map((i) => `${i.path.length ? `${i.path.map(String).join('.')}: ` : ''}${i.message}`);
  throw new Error(`${owner}: '${prop}' would be refused by the runtime: ${issues.join('; ')}.`);
}

function sameConfig(a: LoopGuard, b: LoopGuard): boolean {
  return JSON.stringify(a._toConfig()) === JSON.stringify(b._toConfig());
}

function describeLoopGuard(guard: LoopGuard): string {
  return Object.entries(guard._toConfig())
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

function secretId(key: SecretKey | undefined): string | undefined {
  if (!key) return undefined;
  return key.secretName !== undefined ? `secret ${key.secretName}/${key.key}` : `aws ${key.awsSecretId}${key.awsProperty ? `#${key.awsProperty}` : ''}`;
}

/** Two stores are the same when the runtime would connect to the same Redis with the same settings. */
function storeKey(store: BudgetStore): string {
  const r = store.redis;
  if (!r) return 'memory';
  return JSON.stringify([
    r.url ?? null,
    secretId(r.urlSecret) ?? null,
    store.port ?? null,
    r.username ?? null,
    secretId(r.passwordSecret) ?? null,
    secretId(r.tlsCaSecret) ?? null,
    r.onUnavailable ?? 'fail-closed',
    r.commandTimeout?.toMilliseconds() ?? 250,
    r.keyPrefix ?? 'cdka:',
  ]);
}

function describeStore(store: BudgetStore): string {
  const r = store.redis;
  if (!r) return 'the memory store';
  const where = r.url ?? `the URL in ${secretId(r.urlSecret)}`;
  return `Redis ${where} (onUnavailable ${r.onUnavailable ?? 'fail-closed'}, keyPrefix '${r.keyPrefix ?? 'cdka:'}')`;
}
