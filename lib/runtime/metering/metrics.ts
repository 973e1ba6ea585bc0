/**
 * The runtime's Prometheus metrics. Names and labels are a contract with dashboards and alerts
 * (DESIGN.md); no label ever carries an end user or a run id.
 *
 * Label children are bound once per (agent, provider, model) and cached: an update on the
 * request path is then a map lookup and an addition.
 */
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { TokenUsage } from '../../spec/prices';
import { CounterFamily, HistogramFamily, type CounterSeries, type HistogramSeries } from './families';

export type FailoverReason = 'connect_error' | 'timeout' | 'connection_error' | 'rate_limited' | 'server_error' | 'circuit_open';

/** The model label of models beyond the label cap. */
export const OTHER_MODEL = 'other';

const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];
const TTFT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60];
const ITERATION_BUCKETS = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144];

/** Pre-bound series for one (agent, provider, model). */
export interface RequestMeters {
  readonly input: CounterSeries;
  readonly output: CounterSeries;
  readonly cacheRead: CounterSeries;
  readonly cacheWrite: CounterSeries;
  readonly cost: CounterSeries;
  readonly duration: HistogramSeries;
  readonly ttft: HistogramSeries;
  readonly unpriced: CounterSeries;
  readonly estimated: CounterSeries;
  /** Requests by response code, bound lazily. */
  request(code: number): CounterSeries;
}

export class RuntimeMetrics {
  readonly registry = new Registry();
  readonly tokens: CounterFamily<'agent' | 'provider' | 'model' | 'type'>;
  readonly cost: CounterFamily<'agent' | 'provider' | 'model'>;
  readonly requests: CounterFamily<'agent' | 'provider' | 'model' | 'code'>;
  readonly duration: HistogramFamily<'agent' | 'provider' | 'model'>;
  readonly ttft: HistogramFamily<'agent' | 'provider' | 'model'>;
  readonly guardrailDecisions: CounterFamily<'direction' | 'rule' | 'action'>;
  readonly budgetRejections: CounterFamily<'scope' | 'limit'>;
  readonly runIterations: HistogramFamily<'agent'>;
  readonly toolCalls: CounterFamily<'tool' | 'outcome'>;
  readonly failovers: CounterFamily<'from' | 'to' | 'reason'>;
  readonly retries: CounterFamily<'provider' | 'reason'>;
  readonly unpriced: CounterFamily<'agent' | 'provider' | 'model'>;
  readonly estimated: CounterFamily<'agent' | 'provider' | 'model'>;
  readonly storeErrors: CounterFamily<'mode'>;
  readonly cacheRequests: CounterFamily<'agent' | 'model' | 'result'>;

  private readonly meters = new Map<string, RequestMeters>();
  private readonly models = new Set<string>();
  private readonly inFlight = new Map<string, { value: number }>();

  constructor(
    private readonly maxModelLabels: number,
    info: { version: string; mode: string },
    circuitOpen: () => Array<{ provider: string; open: boolean }>,
  ) {
    const r = this.registry;
    this.tokens = new CounterFamily(
      'llm_tokens_total',
      'Tokens metered from provider usage, by type: input (uncached), output, cache_read, cache_write.',
      ['agent', 'provider', 'model', 'type'],
      r,
    );
    this.cost = new CounterFamily('llm_cost_usd_total', 'Cost in USD from the price table.', ['agent', 'provider', 'model'], r);
    this.requests = new CounterFamily(
      'llm_requests_total',
      'Requests answered, by HTTP status code (499: the client went away first).',
      ['agent', 'provider', 'model', 'code'],
      r,
    );
    this.duration = new HistogramFamily(
      'llm_request_duration_seconds',
      'Time from request received to response complete.',
      ['agent', 'provider', 'model'],
      DURATION_BUCKETS,
      r,
    );
    this.ttft = new HistogramFamily(
      'llm_time_to_first_token_seconds',
      'Time from request received to the first generated token of a streamed answer.',
      ['agent', 'provider', 'model'],
      TTFT_BUCKETS,
      r,
    );
    this.guardrailDecisions = new CounterFamily(
      'guardrail_decisions_total',
      'Guardrail rule decisions, by direction (input, output, tool_result) and action.',
      ['direction', 'rule', 'action'],
      r,
    );
    this.budgetRejections = new CounterFamily(
      'budget_rejections_total',
      'Requests rejected by a budget or rate limit, by scope and limit.',
      ['scope', 'limit'],
      r,
    );
    this.runIterations = new HistogramFamily(
      'agent_run_iterations',
      'LLM calls made by an agent run (x-agent-run-id) so far, observed on every request.',
      ['agent'],
      ITERATION_BUCKETS,
      r,
    );
    this.toolCalls = new CounterFamily('tool_calls_total', 'Tool calls through the runtime, by outcome.', ['tool', 'outcome'], r);
    this.failovers = new CounterFamily(
      'llm_upstream_failovers_total',
      'Requests moved from one provider to the next, by reason.',
      ['from', 'to', 'reason'],
      r,
    );
    this.retries = new CounterFamily(
      'llm_upstream_retries_total',
      'Requests sent again to a provider that already failed them, by reason.',
      ['provider', 'reason'],
      r,
    );
    this.unpriced = new CounterFamily(
      'llm_unpriced_requests_total',
      'Requests for a model missing from the price table (tokens metered, cost counted as 0).',
      ['agent', 'provider', 'model'],
      r,
    );
    this.estimated = new CounterFamily(
      'llm_usage_estimated_total',
      'Requests whose usage was estimated because the provider reported none (cut stream, client gone).',
      ['agent', 'provider', 'model'],
      r,
    );
    this.storeErrors = new CounterFamily(
      'budget_store_errors_total',
      'Budget store calls that failed (Redis unreachable or too slow), by the failure mode applied.',
      ['mode'],
      r,
    );
    this.cacheRequests = new CounterFamily(
      'llm_cache_requests_total',
      'Cacheable requests, by result: hit (answered from the response cache, no provider call) or miss.',
      ['agent', 'model', 'result'],
      r,
    );
    const inFlight = this.inFlight;
    new Gauge({
      name: 'llm_requests_in_flight',
      help: 'LLM requests being served.',
      labelNames: ['agent'],
      registers: [r],
      collect() {
        for (const [agent, counter] of inFlight) this.set({ agent }, counter.value);
      },
    });
    new Gauge({
      name: 'llm_upstream_circuit_open',
      help: '1 while a provider is in cooldown after repeated failures.',
      labelNames: ['provider'],
      registers: [r],
      collect() {
        for (const { provider, open } of circuitOpen()) this.set({ provider }, open ? 1 : 0);
      },
    });
    new Gauge({
      name: 'cdk_agents_runtime_info',
      help: 'Runtime version and mode.',
      labelNames: ['version', 'mode'],
      registers: [r],
    }).set(info, 1);
    collectDefaultMetrics({ register: r });
  }

  /** Exposes budget_store_up: 1 while the shared budget store (Redis) is reachable. */
  watchStore(up: () => boolean): void {
    new Gauge({
      name: 'budget_store_up',
      help: '1 while the shared budget store (Redis) is reachable; enforcement follows store.onUnavailable when 0.',
      registers: [this.registry],
      collect() {
        this.set(up() ? 1 : 0);
      },
    });
  }

  /** Exposes budget_usage_ratio: used / limit of each agent- and team-scope budget's current window. */
  watchBudgets(usage: () => Promise<ReadonlyArray<{ agent: string; scope: string; unit: string; period: string; used: number; limit: number }>>): void {
    new Gauge({
      name: 'budget_usage_ratio',
      help: 'Share of an agent- or team-scope budget used in its current calendar window (UTC); 1 is exhausted.',
      labelNames: ['agent', 'scope', 'unit', 'period'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const u of await usage()) this.set({ agent: u.agent, scope: u.scope, unit: u.unit, period: u.period }, u.used / u.limit);
      },
    });
  }

  /** The in-flight request count of an agent (incremented and decremented by the caller). */
  inFlightOf(agent: string): { value: number } {
    let counter = this.inFlight.get(agent);
    if (!counter) this.inFlight.set(agent, (counter = { value: 0 }));
    return counter;
  }

  /** Meters for one (agent, provider, model); models beyond the label cap count as "other". */
  for(agent: string, provider: string, model: string): RequestMeters {
    const key = `${agent}\u0000${provider}\u0000${model}`;
    let meters = this.meters.get(key);
    if (meters) return meters;
    if (model !== OTHER_MODEL && !this.models.has(model)) {
      if (this.models.size >= this.maxModelLabels) return this.for(agent, provider, OTHER_MODEL);
      this.models.add(model);
    }
    const codes = new Map<number, CounterSeries>();
    meters = {
      input: this.tokens.child(agent, provider, model, 'input'),
      output: this.tokens.child(agent, provider, model, 'output'),
      cacheRead: this.tokens.child(agent, provider, model, 'cache_read'),
      cacheWrite: this.tokens.child(agent, provider, model, 'cache_write'),
      cost: this.cost.child(agent, provider, model),
      duration: this.duration.child(agent, provider, model),
      ttft: this.ttft.child(agent, provider, model),
      unpriced: this.unpriced.child(agent, provider, model),
      estimated: this.estimated.child(agent, provider, model),
      request: (code) => {
        let child = codes.get(code);
        if (!child) codes.set(code, (child = this.requests.child(agent, provider, model, String(code))));
        return child;
      },
    };
    this.meters.set(key, meters);
    return meters;
  }
}

/** Adds one request's usage to its meters. */
export function recordUsage(meters: RequestMeters, usage: TokenUsage, cost: number): void {
  if (usage.input) meters.input.inc(usage.input);
  if (usage.output) meters.output.inc(usage.output);
  if (usage.cacheRead) meters.cacheRead.inc(usage.cacheRead);
  if (usage.cacheWrite) meters.cacheWrite.inc(usage.cacheWrite);
  if (cost) meters.cost.inc(cost);
}
