/**
 * AgentAlerts: a PrometheusRule with the alerts on-call needs for agents and gateways (budgets
 * running out, token burn far above an agent's own baseline, long runs, guardrail block spikes,
 * upstream errors and failovers, the budget store), each with a summary and a description saying
 * what to do. The rules select the watched workloads by `namespace` and `job`, which
 * AgentMonitoring's monitors set to the workload's name.
 */
import { Lazy } from 'cdk8s';
import { Construct } from 'constructs';
import { PrometheusRule, PrometheusRuleSpecGroupsRulesExpr, type PrometheusRuleSpec } from '../imports/monitoring.coreos.com_prometheusrules';
import { AgentService } from './agent-service';
import { LlmGateway } from './llm-gateway';
import { commonLabels, resolveName, resolveNamespace } from './names';

/** Thresholds and labels of the alerts; every field has a default. */
export interface AgentAlertsOptions {
  /**
   * Labels on the PrometheusRule. Prometheus picks rules up by label: kube-prometheus-stack's only
   * those labelled with its release (`{ release: 'kube-prometheus-stack' }`).
   * @default - none (a Prometheus whose ruleSelector is empty)
   */
  readonly labels?: { readonly [key: string]: string };
  /**
   * Share of an agent or team budget's window used from which AgentBudgetNearlyExhausted fires (0 to 1).
   * @default 0.8
   */
  readonly budgetWarningRatio?: number;
  /**
   * AgentTokenBurnAnomaly fires when an agent's token rate over 15 minutes is this many times its
   * average over the day before.
   * @default 5
   */
  readonly tokenBurnFactor?: number;
  /**
   * ... and above this many tokens per second (quiet agents are not paged for small bursts).
   * @default 50
   */
  readonly tokenBurnMinTokensPerSecond?: number;
  /**
   * AgentRunIterationsHigh fires when the 99th percentile of the run iteration at which LLM calls
   * are made stays above this.
   * @default 20
   */
  readonly runIterationsThreshold?: number;
  /**
   * AgentGuardrailBlockSpike fires when a rule's blocks over 10 minutes run at this many times their
   * average over the day before (a rule that never blocked before counts from zero).
   * @default 3
   */
  readonly guardrailBlockFactor?: number;
  /**
   * ... and at more than this many blocks per minute.
   * @default 3
   */
  readonly guardrailBlocksPerMinute?: number;
  /**
   * LlmUpstreamErrors fires when this share of a provider's answers are 5xx (0 to 1).
   * @default 0.05
   */
  readonly upstreamErrorRatio?: number;
  /**
   * LlmUpstreamFailovers fires above this many failovers per minute away from a provider.
   * @default 1
   */
  readonly failoversPerMinute?: number;
}

/** Props of AgentAlerts. */
export interface AgentAlertsProps extends AgentAlertsOptions {
  /**
   * The PrometheusRule's name, and the prefix of its rule groups.
   * @default - derived from the construct id
   */
  readonly name?: string;
  /**
   * The PrometheusRule's namespace.
   * @default - the chart's namespace
   */
  readonly namespace?: string;
  /**
   * Agents to watch. More with `watch()`.
   * @default - none
   */
  readonly agents?: AgentService[];
  /**
   * Gateways to watch. More with `watch()`.
   * @default - none
   */
  readonly gateways?: LlmGateway[];
}

/** How bad an alert is: the `severity` label Alertmanager routes on. */
export enum AlertSeverity {
  /** Look at it today. */
  WARNING = 'warning',
  /** Users are affected now. */
  CRITICAL = 'critical',
}

/** One alerting rule, as Prometheus reads it. */
export interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  readonly for: string;
  readonly labels: { readonly severity: AlertSeverity };
  readonly annotations: { readonly summary: string; readonly description: string };
}

/** A rule group, as Prometheus reads it. */
export interface AlertRuleGroup {
  readonly name: string;
  readonly rules: AlertRule[];
}

/** The alert names, in the order they are emitted. */
export const ALERT_NAMES = [
  'AgentBudgetNearlyExhausted',
  'AgentBudgetExhausted',
  'AgentTokenBurnAnomaly',
  'AgentRunIterationsHigh',
  'AgentBudgetStoreDown',
  'AgentBudgetStoreErrors',
  'AgentGuardrailBlockSpike',
  'LlmUpstreamErrors',
  'LlmUpstreamFailovers',
  'LlmProviderCircuitOpen',
] as const;

interface Watched {
  readonly kind: 'agent' | 'gateway';
  readonly name: string;
  readonly namespace?: string;
  readonly path: string;
}

interface Thresholds {
  readonly budgetWarningRatio: number;
  readonly tokenBurnFactor: number;
  readonly tokenBurnMinTokensPerSecond: number;
  readonly runIterationsThreshold: number;
  readonly guardrailBlockFactor: number;
  readonly guardrailBlocksPerMinute: number;
  readonly upstreamErrorRatio: number;
  readonly failoversPerMinute: number;
}

/** A PrometheusRule watching agents and gateways. */
export class AgentAlerts extends Construct {
  /** The PrometheusRule's name. */
  public readonly name: string;
  /** Its namespace, when known at synth. */
  public readonly namespace?: string;
  /** The PrometheusRule (the construct's default child, id 'Resource'). */
  public readonly prometheusRule: PrometheusRule;

  private readonly owner: string;
  private readonly thresholds: Thresholds;
  private readonly watched: Watched[] = [];

  constructor(scope: Construct, id: string, props: AgentAlertsProps = {}) {
    super(scope, id);
    this.name = resolveName('AgentAlerts', id, props.name);
    this.owner = `AgentAlerts '${this.name}'`;
    this.namespace = resolveNamespace(this, props.namespace);
    this.thresholds = resolveThresholds(this.owner, props);
    this.prometheusRule = new PrometheusRule(this, 'Resource', {
      metadata: {
        name: this.name,
        namespace: this.namespace,
        labels: { ...commonLabels(this.name, 'alerts'), ...checkLabels(this.owner, props.labels) },
      },
      spec: Lazy.any({ produce: (): PrometheusRuleSpec => this.ruleSpec() }),
    });
    for (const agent of props.agents ?? []) this.watch(agent);
    for (const gateway of props.gateways ?? []) this.watch(gateway);
    this.node.addValidation({
      validate: () =>
        this.watched.length ? [] : [`${this.owner}: watches nothing. Call alerts.watch(agent) (or gateway), or remove it: an empty PrometheusRule alerts on nothing.`],
    });
  }

  /** Alerts on an agent: its budgets, token burn, run length, guardrails, upstream errors and budget store. */
  public watch(agent: AgentService): void;
  /** Alerts on a gateway: its budgets (per calling agent), guardrails, providers and budget store. */
  public watch(gateway: LlmGateway): void;
  public watch(target: AgentService | LlmGateway): void {
    const kind = target instanceof AgentService ? 'agent' : target instanceof LlmGateway ? 'gateway' : undefined;
    if (!kind) throw new Error(`${this.owner}: watch() takes an AgentService or an LlmGateway.`);
    if (this.watched.some((w) => w.path === target.node.path)) return;
    const clash = this.watched.find((w) => w.name === target.name && w.namespace === target.namespace);
    if (clash) {
      throw new Error(
        `${this.owner}: ${target.node.path} and ${clash.path} are both named '${target.name}' in the same namespace; the alerts tell workloads apart by name (the scrape job). Rename one.`,
      );
    }
    this.watched.push({ kind, name: target.name, namespace: target.namespace, path: target.node.path });
  }

  /** The alert rules as Prometheus reads them (a rule file's `groups`), for the watched workloads. */
  public renderGroups(): AlertRuleGroup[] {
    return alertRuleGroups(this.name, this.watched, this.thresholds);
  }

  private ruleSpec(): PrometheusRuleSpec {
    return {
      groups: this.renderGroups().map((g) => ({
        name: g.name,
        rules: g.rules.map((r) => ({
          alert: r.alert,
          expr: PrometheusRuleSpecGroupsRulesExpr.fromString(r.expr),
          for: r.for,
          labels: { ...r.labels },
          annotations: { ...r.annotations },
        })),
      })),
    };
  }
}

/** @internal The thresholds with their defaults, checked: errors name the prop. */
export function resolveThresholds(owner: string, o: AgentAlertsOptions, defaults: Partial<Thresholds> = {}): Thresholds {
  const value = (prop: keyof Thresholds, fallback: number, ok: (v: number) => boolean, rule: string): number => {
    const v = o[prop] ?? defaults[prop] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new Error(`${owner}: '${prop}' (${v}) must be ${rule}.`);
    return v;
  };
  const ratio = (v: number) => v > 0 && v <= 1;
  const positive = (v: number) => v > 0;
  return {
    budgetWarningRatio: value('budgetWarningRatio', 0.8, (v) => v > 0 && v < 1, 'above 0 and below 1 (a share of the budget; 1 is AgentBudgetExhausted)'),
    tokenBurnFactor: value('tokenBurnFactor', 5, (v) => v > 1, 'greater than 1 (a multiple of the usual rate)'),
    tokenBurnMinTokensPerSecond: value('tokenBurnMinTokensPerSecond', 50, (v) => v >= 0, 'a number >= 0'),
    runIterationsThreshold: value('runIterationsThreshold', 20, positive, 'a positive number of LLM calls'),
    guardrailBlockFactor: value('guardrailBlockFactor', 3, (v) => v > 1, 'greater than 1 (a multiple of the usual rate)'),
    guardrailBlocksPerMinute: value('guardrailBlocksPerMinute', 3, (v) => v >= 0, 'a number >= 0'),
    upstreamErrorRatio: value('upstreamErrorRatio', 0.05, ratio, 'above 0 and at most 1 (a share of the answers)'),
    failoversPerMinute: value('failoversPerMinute', 1, (v) => v >= 0, 'a number >= 0'),
  };
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/** @internal Labels a Prometheus or Grafana selector matches: valid Kubernetes label keys and values. */
export function checkLabels(owner: string, labels: { readonly [key: string]: string } | undefined, prop = 'labels'): Record<string, string> {
  for (const [key, value] of Object.entries(labels ?? {})) {
    if (!LABEL_KEY.test(key)) throw new Error(`${owner}: '${prop}' has an invalid label key '${key}' (a Kubernetes label key: [prefix/]name).`);
    if (typeof value !== 'string' || !LABEL_VALUE.test(value)) {
      throw new Error(`${owner}: '${prop}.${key}' ('${value}') is not a valid label value (at most 63 letters, digits, '-', '_' and '.', quoted in code: "1").`);
    }
  }
  return { ...labels };
}

/** `label="a"` or `label=~"a|b"`. */
function matcher(label: string, values: readonly string[]): string {
  const unique = [...new Set(values)].sort();
  return unique.length === 1 ? `${label}="${unique[0]}"` : `${label}=~"${unique.join('|')}"`;
}

/** The matchers selecting these workloads' series: their scrape job (the workload's name) and namespace. */
function workloadMatchers(targets: readonly Watched[]): string[] {
  const out: string[] = [];
  // A workload without a namespace (a chart without one) can be anywhere: select by job only.
  if (targets.every((t) => t.namespace !== undefined)) out.push(matcher('namespace', targets.map((t) => t.namespace!)));
  out.push(matcher('job', targets.map((t) => t.name)));
  return out;
}

function sel(metric: string, matchers: readonly string[], ...extra: string[]): string {
  return `${metric}{${[...matchers, ...extra].join(', ')}}`;
}

/** A number as PromQL reads it, without float noise: 0.05 * 60 stays 3. */
function num(value: number): string {
  return String(Number(value.toPrecision(12)));
}

const BUDGET_LABELS = 'namespace, job, agent, scope, unit, period';

/** @internal The rule groups for these workloads. */
export function alertRuleGroups(prefix: string, watched: readonly Watched[], t: Thresholds): AlertRuleGroup[] {
  if (!watched.length) return [];
  const all = workloadMatchers(watched);
  const agents = watched.filter((w) => w.kind === 'agent');
  const agentSel = agents.length ? workloadMatchers(agents) : undefined;
  const ratio = sel('budget_usage_ratio', all, 'period!="minute"');
  // Exhausted: the window is used up, or nearly and the runtime already refuses calls for that
  // limit (a request that would go over is refused, so usage can stop short of 1 for good).
  const exhausted =
    `max by (${BUDGET_LABELS}) (\n` +
    `  ${ratio} >= 1\n` +
    `  or\n` +
    `  (\n` +
    `    label_join(${ratio}, "limit", "_per_", "unit", "period") >= 0.9\n` +
    `    and on (namespace, job, scope, limit)\n` +
    `    sum by (namespace, job, scope, limit) (increase(${sel('budget_rejections_total', all)}[5m])) > 0\n` +
    `  )\n` +
    `)`;
  const budget = '{{ $labels.agent }}: the {{ $labels.scope }} budget in {{ $labels.unit }} per {{ $labels.period }}';
  const where = '({{ $labels.namespace }}/{{ $labels.job }})';
  const job = '{{ $labels.namespace }}/{{ $labels.job }}';

  const budgets: AlertRule[] = [
    rule(
      'AgentBudgetNearlyExhausted',
      `max by (${BUDGET_LABELS}) (${ratio}) >= ${num(t.budgetWarningRatio)}\nunless on (${BUDGET_LABELS})\n${exhausted}`,
      '5m',
      AlertSeverity.WARNING,
      `${budget} is {{ $value | humanizePercentage }} used ${where}`,
      `More than ${num(t.budgetWarningRatio * 100)}% of this window's budget is spent; once it is used up the runtime refuses the agent's LLM calls ` +
        `(429 budget_exceeded) until the window resets (start of the next {{ $labels.period }}, UTC). ` +
        'If the spend is expected, raise the budget (BudgetGuard or the agent\'s budgets) and roll out; if not, find its source: ' +
        'the tokens and cost panels of the usage dashboard, and the audit log (records by user and run) of the pods of {{ $labels.job }}.',
    ),
    rule(
      'AgentBudgetExhausted',
      exhausted,
      '1m',
      AlertSeverity.CRITICAL,
      `${budget} is used up ({{ $value | humanizePercentage }}) ${where}`,
      'The runtime refuses the agent\'s LLM calls with 429 budget_exceeded until the window resets (start of the next {{ $labels.period }}, UTC): ' +
        'the agent is down for its users. If the spend is legitimate, raise the budget and roll out (the new limit applies to the current window). ' +
        'If not, stop the cause first: a run looping (audit log: many records with one run id), an abusive user (one user id), or a new release ' +
        '(compare with the deploy time); scale the agent to zero if it keeps burning elsewhere.',
    ),
  ];
  if (agentSel) {
    const recent = `sum by (namespace, job, agent) (rate(${sel('llm_tokens_total', agentSel)}[15m]))`;
    const baseline = `sum by (namespace, job, agent) (rate(${sel('llm_tokens_total', agentSel)}[1d] offset 15m))`;
    budgets.push(
      rule(
        'AgentTokenBurnAnomaly',
        `(\n  ${recent}\n  > ${num(t.tokenBurnFactor)} * ${baseline}\n)\nand\n${recent} > ${num(t.tokenBurnMinTokensPerSecond)}`,
        '10m',
        AlertSeverity.WARNING,
        `{{ $labels.agent }} burns {{ $value | humanize }} tokens/s, over ${num(t.tokenBurnFactor)}x its rate of the day before ${where}`,
        'Token use over the last 15 minutes is far above this agent\'s own average of the previous day. Usual causes: a run stuck in a loop ' +
          '(see AgentRunIterationsHigh and the loop-iterations panel), one user sending far more than usual, a prompt or model change in a new release, ' +
          'or a real surge. Check the audit log of the pods of {{ $labels.job }} for the runs and users behind it; tighten the loop guard, ' +
          'a per-user rate limit or the budget if it is abuse, or raise the threshold (tokenBurnFactor) if the new level is the norm.',
      ),
      rule(
        'AgentRunIterationsHigh',
        `histogram_quantile(0.99, sum by (namespace, job, agent, le) (rate(${sel('agent_run_iterations_bucket', agentSel)}[15m]))) > ${num(t.runIterationsThreshold)}`,
        '15m',
        AlertSeverity.WARNING,
        `{{ $labels.agent }}: 1% of LLM calls come after call {{ $value | humanize }} of their run ${where}`,
        `Runs of this agent keep going past ${num(t.runIterationsThreshold)} LLM calls: an agent loop that does not converge (the same tool failing, ` +
          'a plan it keeps redoing) costs tokens on every turn. Find the long runs in the audit log (records grouped by run id) and look at what ' +
          'they repeat; fix the prompt or the failing tool, and set or lower the loop guard (maxIterations, maxRepeats) so such runs stop with ' +
          'loop_detected instead of running on.',
      ),
    );
  }
  budgets.push(
    rule(
      'AgentBudgetStoreDown',
      `min by (namespace, job) (${sel('budget_store_up', all)}) == 0`,
      '2m',
      AlertSeverity.CRITICAL,
      `${job}: the Redis budget store is unreachable`,
      'Budgets, rate limits, run state and pending approvals live in Redis. While it is unreachable the store\'s onUnavailable mode applies: ' +
        'fail-closed (the default) refuses every LLM call with 503 budget_store_unavailable, fail-open lets calls through unenforced, local enforces ' +
        'per pod. Check the Redis pods or managed instance, the URL and password Secrets, and that the NetworkPolicy egress to Redis matches ' +
        'its address; enforcement resumes by itself when Redis answers again.',
    ),
    rule(
      'AgentBudgetStoreErrors',
      `sum by (namespace, job, mode) (rate(${sel('budget_store_errors_total', all)}[5m])) > 0`,
      '10m',
      AlertSeverity.WARNING,
      `${job}: budget store calls keep failing (mode {{ $labels.mode }})`,
      'Calls to Redis fail or take longer than commandTimeout (250 ms by default) for 10 minutes; each such request was handled by the ' +
        '{{ $labels.mode }} failure mode (fail-closed: refused). Look at Redis latency and CPU, its connection limit and the network path; raise ' +
        'commandTimeout only if Redis is healthy but far away.',
    ),
  );

  const blocks = (range: string, offset = '') =>
    `sum by (namespace, job, direction, rule) (rate(${sel('guardrail_decisions_total', all, 'action="block"')}[${range}]${offset}))`;
  const upstream = (extra: string[]) => sel('llm_requests_total', all, ...extra, 'provider!~"none|cache"');
  const runtime: AlertRule[] = [
    rule(
      'AgentGuardrailBlockSpike',
      `${blocks('10m')}\n> ${num(t.guardrailBlockFactor)} * (${blocks('1d', ' offset 10m')} or ${blocks('10m')} * 0)\n` +
        `and\n${blocks('10m')} > ${num(t.guardrailBlocksPerMinute / 60)}`,
      '10m',
      AlertSeverity.WARNING,
      `${job}: guardrail {{ $labels.rule }} blocks {{ $value | humanize }}/s ({{ $labels.direction }}), far above its usual rate`,
      `The {{ $labels.rule }} rule blocks requests or answers at over ${num(t.guardrailBlockFactor)} times its average of the day before. ` +
        'An input rule (input.injection, input.deny.*) spiking usually means someone is probing the agent: find the users in the audit log ' +
        '(decision deny, this rule) and rate-limit or block them. An output rule (output.secret.*, output.pii.*) spiking means answers carry ' +
        'data they should not: check what the agent\'s tools return. If the rule misfires on legitimate traffic, set its action to warn ' +
        '(guardrails.actions) while you fix the pattern.',
    ),
    rule(
      'LlmUpstreamErrors',
      `sum by (namespace, job, provider) (rate(${upstream(['code=~"5.."'])}[5m]))\n/\nsum by (namespace, job, provider) (rate(${upstream([])}[5m]))\n> ${num(t.upstreamErrorRatio)}`,
      '10m',
      AlertSeverity.WARNING,
      `${job}: {{ $value | humanizePercentage }} of answers from provider {{ $labels.provider }} are errors`,
      'Requests through this provider end in 5xx after retries and failover (502 upstream_unavailable, 504 upstream_timeout, or the provider\'s ' +
        'own 5xx). Check the provider\'s status page and the retry and failover panels; for a gateway provider (a sidecar calling LlmGateway), ' +
        'check the gateway pods. Add a fallback provider (or fallbackModel on another API shape) if there is none, and raise timeouts.firstByteMs ' +
        'only if answers are slow rather than failing.',
    ),
    rule(
      'LlmUpstreamFailovers',
      `sum by (namespace, job, from, reason) (rate(${sel('llm_upstream_failovers_total', all)}[10m])) * 60 > ${num(t.failoversPerMinute)}`,
      '10m',
      AlertSeverity.WARNING,
      `${job}: {{ $value | humanize }} failovers/min away from provider {{ $labels.from }} ({{ $labels.reason }})`,
      'Calls keep moving from {{ $labels.from }} to the next provider: users are still answered, but by the fallback (other prices, possibly ' +
        'another model), with added latency. reason rate_limited: raise the provider quota or add capacity; server_error, timeout, connect_error: ' +
        'the provider is degraded (status page); circuit_open: it is in cooldown after repeated failures. Check that the fallback has the quota ' +
        'to carry the traffic.',
    ),
    rule(
      'LlmProviderCircuitOpen',
      `max by (namespace, job, provider) (avg_over_time(${sel('llm_upstream_circuit_open', all)}[10m])) > 0.5`,
      '5m',
      AlertSeverity.WARNING,
      `${job}: provider {{ $labels.provider }} was in cooldown most of the last 10 minutes`,
      'The circuit breaker keeps skipping this provider after consecutive failures (circuitBreaker.failureThreshold), retrying it once per ' +
        'cooldown. Calls go to the next provider, or fail when there is none. Check the provider\'s status page and the gateway\'s or ' +
        'sidecar\'s logs for the failures it sees (timeouts, connection errors, 429, 5xx).',
    ),
  ];
  return [
    { name: `${prefix}.budgets`, rules: budgets },
    { name: `${prefix}.runtime`, rules: runtime },
  ];
}

function rule(alert: string, expr: string, forDuration: string, severity: AlertSeverity, summary: string, description: string): AlertRule {
  return { alert, expr, for: forDuration, labels: { severity }, annotations: { summary, description } };
}
