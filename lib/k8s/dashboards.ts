/**
 * AgentDashboards: Grafana dashboards for the runtime's metrics, as ConfigMaps the Grafana
 * dashboard sidecar (kube-prometheus-stack) loads by label. "usage": tokens and cost by agent and
 * model, budget burn, rejections, tool calls, loop iterations, guardrail decisions. "traffic":
 * latency and time to first token, requests, failovers, retries, provider cooldowns, cache hits,
 * the budget store and the runtime processes.
 *
 * Per-agent figures come from the agents' sidecars (`cdk_agents_runtime_info{mode="sidecar"}`):
 * a call through a gateway is metered by the sidecar and by the gateway, and counted once here.
 */
import { createHash } from 'node:crypto';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { checkLabels } from './alerts';
import { dashboardJson, PanelKind, type DashboardSpec, type PanelSpec } from './dashboard-json';
import { commonLabels, resolveName, resolveNamespace } from './names';

/** Props of AgentDashboards. */
export interface AgentDashboardsProps {
  /**
   * Prefix of the ConfigMap names and of the dashboards' uids (`<name>-usage`, `<name>-traffic`).
   * @default - derived from the construct id
   */
  readonly name?: string;
  /**
   * The ConfigMaps' namespace: one the Grafana sidecar watches.
   * @default - the chart's namespace
   */
  readonly namespace?: string;
  /**
   * The labels the Grafana sidecar finds dashboard ConfigMaps by (kube-prometheus-stack:
   * `grafana.sidecar.dashboards.label` / `labelValue`).
   * @default { grafana_dashboard: '1' }
   */
  readonly labels?: { readonly [key: string]: string };
  /**
   * The Grafana folder, as an annotation the sidecar reads (`grafana.sidecar.dashboards.folderAnnotation`).
   * @default - none (the sidecar's default folder)
   */
  readonly folder?: string;
  /**
   * The annotation carrying `folder`.
   * @default 'grafana_folder'
   */
  readonly folderAnnotation?: string;
  /**
   * Prefix of the dashboards' titles.
   * @default 'AI agents'
   */
  readonly titlePrefix?: string;
}

/** The dashboards' keys: ConfigMap name suffixes and uid suffixes. */
export const DASHBOARD_KEYS = ['usage', 'traffic'] as const;

/** Grafana dashboards of the runtime's metrics, as ConfigMaps. */
export class AgentDashboards extends Construct {
  /** The name prefix. */
  public readonly name: string;
  /** The ConfigMaps' namespace, when known at synth. */
  public readonly namespace?: string;
  /** Tokens, cost, budgets, rejections, tools, loop iterations, guardrails (the construct's default child, id 'Resource'). */
  public readonly usageDashboard: kplus.ConfigMap;
  /** Latency, time to first token, requests, failovers, retries, cooldowns, cache, budget store, runtime. */
  public readonly trafficDashboard: kplus.ConfigMap;

  private readonly owner: string;

  constructor(scope: Construct, id: string, props: AgentDashboardsProps = {}) {
    super(scope, id);
    this.name = resolveName('AgentDashboards', id, props.name);
    this.owner = `AgentDashboards '${this.name}'`;
    this.namespace = resolveNamespace(this, props.namespace);
    const labels = props.labels ? checkLabels(this.owner, props.labels) : { grafana_dashboard: '1' };
    if (!Object.keys(labels).length) throw new Error(`${this.owner}: 'labels' is empty: the Grafana sidecar finds dashboards by label. Leave it out for { grafana_dashboard: '1' }.`);
    const folderAnnotation = props.folderAnnotation ?? 'grafana_folder';
    if (props.folderAnnotation !== undefined && props.folder === undefined) {
      throw new Error(`${this.owner}: 'folderAnnotation' is set without 'folder'. Set the folder, or remove folderAnnotation.`);
    }
    checkLabels(this.owner, { [folderAnnotation]: 'x' }, 'folderAnnotation');
    if (props.folder !== undefined && !props.folder.trim()) throw new Error(`${this.owner}: 'folder' is empty; leave it out for the sidecar's default folder.`);
    const title = props.titlePrefix ?? 'AI agents';
    const annotations = props.folder !== undefined ? { [folderAnnotation]: props.folder } : undefined;

    const configMap = (constructId: string, key: (typeof DASHBOARD_KEYS)[number], spec: (uid: string, title: string) => DashboardSpec) => {
      const uid = dashboardUid(this.name, key);
      return new kplus.ConfigMap(this, constructId, {
        metadata: { name: `${this.name}-${key}`, namespace: this.namespace, labels: { ...commonLabels(this.name, 'dashboards'), ...labels }, annotations },
        data: { [`${uid}.json`]: `${JSON.stringify(dashboardJson(spec(uid, title)), null, 2)}\n` },
      });
    };
    this.usageDashboard = configMap('Resource', 'usage', usageDashboard);
    this.trafficDashboard = configMap('Traffic', 'traffic', trafficDashboard);
  }
}

/** Grafana uids are at most 40 characters: `<name>-<key>`, or a hash-suffixed prefix of it. */
export function dashboardUid(name: string, key: string): string {
  const uid = `${name}-${key}`;
  if (uid.length <= 40) return uid;
  return `${uid.slice(0, 31).replace(/-+$/, '')}-${createHash('sha256').update(uid).digest('hex').slice(0, 8)}`;
}

const AGENT_MODEL = 'agent=~"$agent", model=~"$model"';
const RATE = '$__rate_interval';
/** Only the sidecars' series: each agent's calls once, whether or not they go through a gateway. */
const ON_SIDECARS = '* on (job, instance) group_left cdk_agents_runtime_info{mode="sidecar"}';

const VARIABLES = [
  { name: 'agent', label: 'Agent', selector: 'llm_tokens_total', labelName: 'agent' },
  { name: 'model', label: 'Model', selector: 'llm_tokens_total{agent=~"$agent"}', labelName: 'model' },
];

function quantiles(metric: string, by: string, filter: string, legend: string, sidecarsOnly: boolean): PanelSpec['queries'] {
  return ['0.5', '0.99'].map((q) => ({
    expr: `histogram_quantile(${q}, sum by (${by}, le) (rate(${metric}_bucket{${filter}}[${RATE}])${sidecarsOnly ? ` ${ON_SIDECARS}` : ''}))`,
    legend: `p${Number(q) * 100} ${legend}`,
  }));
}

function usageDashboard(uid: string, titlePrefix: string): DashboardSpec {
  return {
    uid,
    title: `${titlePrefix}: usage, cost and policy`,
    description: 'Tokens, cost and budgets of each agent, and what its policies did: rejections, tool calls, run lengths, guardrail decisions. From the cdk-agents runtime.',
    tags: ['cdk-agents', 'llm'],
    variables: VARIABLES,
    rows: [
      {
        title: 'Usage and cost',
        panels: [
          {
            title: 'Tokens per second by agent and model',
            description: 'Input, output and cache tokens metered from the providers\' usage, as the agents\' sidecars saw them.',
            unit: 'short',
            stacked: true,
            queries: [{ expr: `sum by (agent, model) (rate(llm_tokens_total{${AGENT_MODEL}}[${RATE}]) ${ON_SIDECARS})`, legend: '{{agent}} {{model}}' }],
          },
          {
            title: 'Cost per hour (USD) by agent and model',
            description: 'Spend rate from the price table (lib/spec/prices.ts plus overrides), extrapolated to an hour.',
            unit: 'currencyUSD',
            stacked: true,
            queries: [{ expr: `sum by (agent, model) (rate(llm_cost_usd_total{${AGENT_MODEL}}[${RATE}]) ${ON_SIDECARS}) * 3600`, legend: '{{agent}} {{model}}' }],
          },
          {
            title: 'Budget burn: share of each budget used in its window',
            description: 'Agent and team budgets, from the store (the same on every replica sharing Redis). 80%: AgentBudgetNearlyExhausted; 100%: calls are refused until the window resets (UTC).',
            unit: 'percentunit',
            kind: PanelKind.BAR_GAUGE,
            min: 0,
            max: 1,
            thresholds: [
              [0.8, 'orange'],
              [1, 'red'],
            ],
            queries: [
              {
                expr: 'max by (job, agent, scope, unit, period) (budget_usage_ratio{agent=~"$agent"})',
                legend: '{{agent}} {{scope}} {{unit}}/{{period}} ({{job}})',
              },
            ],
          },
          {
            title: 'Budget and rate-limit rejections per minute',
            description: 'Calls refused with 429 (budget_exceeded, rate_limited, loop_detected) or 503 (store unavailable), by scope and limit, per runtime (job).',
            unit: 'short',
            queries: [{ expr: `sum by (job, scope, limit) (rate(budget_rejections_total[${RATE}])) * 60`, legend: '{{job}} {{scope}} {{limit}}' }],
          },
        ],
      },
      {
        title: 'Agent behaviour',
        panels: [
          {
            title: 'Tool call success rate by tool',
            description: 'Tool calls that ran and answered 2xx, out of those that ran (success, error, timeout); approvals pending or denied are not failures.',
            unit: 'percentunit',
            min: 0,
            max: 1,
            queries: [
              {
                expr:
                  `sum by (job, tool) (rate(tool_calls_total{outcome="success"}[${RATE}]))\n/\n` +
                  `sum by (job, tool) (rate(tool_calls_total{outcome=~"success|error|timeout"}[${RATE}]))`,
                legend: '{{job}} {{tool}}',
              },
            ],
          },
          {
            title: 'Tool calls per minute by outcome',
            description: 'Every tool call through the runtime: success, error, timeout, and the approval flow (pending, approved, denied, expired) and refusals.',
            unit: 'short',
            stacked: true,
            queries: [{ expr: `sum by (job, tool, outcome) (rate(tool_calls_total[${RATE}])) * 60`, legend: '{{job}} {{tool}} {{outcome}}' }],
          },
          {
            title: 'Loop iterations: LLM calls into a run',
            description: 'The run iteration at which calls are made (x-agent-run-id): the 99th percentile rising means runs that do not converge. AgentRunIterationsHigh watches it.',
            unit: 'short',
            queries: [
              ...quantiles('agent_run_iterations', 'agent', 'agent=~"$agent"', '{{agent}}', true),
            ],
          },
          {
            title: 'Guardrail decisions per minute by rule and action',
            description: 'Blocks, redactions and warnings of each rule, by direction (input, output, tool_result) and runtime (job).',
            unit: 'short',
            stacked: true,
            queries: [{ expr: `sum by (job, direction, rule, action) (rate(guardrail_decisions_total[${RATE}])) * 60`, legend: '{{job}} {{direction}} {{rule}} {{action}}' }],
          },
        ],
      },
    ],
  };
}

function trafficDashboard(uid: string, titlePrefix: string): DashboardSpec {
  return {
    uid,
    title: `${titlePrefix}: LLM traffic`,
    description: 'Latency and time to first token as the agents see them, answers by code, failovers, retries, provider cooldowns, the response cache, the budget store and the runtime processes.',
    tags: ['cdk-agents', 'llm'],
    variables: VARIABLES,
    rows: [
      {
        title: 'Latency',
        panels: [
          {
            title: 'Request latency p50 / p99 by agent and model',
            description: 'From request received to response complete, at the agents\' sidecars (gateway hop included).',
            unit: 's',
            queries: quantiles('llm_request_duration_seconds', 'agent, model', AGENT_MODEL, '{{agent}} {{model}}', true),
          },
          {
            title: 'Time to first token p50 / p99 by agent and model',
            description: 'Streamed answers: from request received to the first generated token, at the agents\' sidecars.',
            unit: 's',
            queries: quantiles('llm_time_to_first_token_seconds', 'agent, model', AGENT_MODEL, '{{agent}} {{model}}', true),
          },
          {
            title: 'Answers per second by agent and code',
            description: 'HTTP status of every answer the sidecars gave (499: the client went away; 429: budgets and limits; 5xx: upstream failures).',
            unit: 'reqps',
            stacked: true,
            queries: [{ expr: `sum by (agent, code) (rate(llm_requests_total{${AGENT_MODEL}}[${RATE}]) ${ON_SIDECARS})`, legend: '{{agent}} {{code}}' }],
          },
          {
            title: 'LLM requests in flight by agent',
            description: 'Calls being served right now by the agents\' sidecars (the metric an in-flight HPA target scales on).',
            unit: 'short',
            queries: [{ expr: `sum by (agent) (llm_requests_in_flight{agent=~"$agent"} ${ON_SIDECARS})`, legend: '{{agent}}' }],
          },
        ],
      },
      {
        title: 'Providers, failover and cache',
        panels: [
          {
            title: 'Failovers per minute',
            description: 'Requests moved from one provider to the next, by reason (connect_error, timeout, connection_error, rate_limited, server_error, circuit_open). LlmUpstreamFailovers watches it.',
            unit: 'short',
            stacked: true,
            queries: [{ expr: `sum by (job, from, to, reason) (rate(llm_upstream_failovers_total[${RATE}])) * 60`, legend: '{{job}} {{from}} -> {{to}} ({{reason}})' }],
          },
          {
            title: 'Retries per minute',
            description: 'Requests sent again to a provider that already failed them, after backoff.',
            unit: 'short',
            stacked: true,
            queries: [{ expr: `sum by (job, provider, reason) (rate(llm_upstream_retries_total[${RATE}])) * 60`, legend: '{{job}} {{provider}} ({{reason}})' }],
          },
          {
            title: 'Providers in cooldown',
            description: '1 while the circuit breaker skips a provider after consecutive failures (LlmProviderCircuitOpen).',
            unit: 'short',
            min: 0,
            max: 1,
            queries: [{ expr: 'max by (job, provider) (llm_upstream_circuit_open)', legend: '{{job}} {{provider}}' }],
          },
          {
            title: 'Response cache hit ratio by agent',
            description: 'Cacheable (deterministic) requests answered from the cache, without a provider call.',
            unit: 'percentunit',
            min: 0,
            max: 1,
            queries: [
              {
                expr:
                  `sum by (agent) (rate(llm_cache_requests_total{agent=~"$agent", result="hit"}[${RATE}]))\n/\n` +
                  `sum by (agent) (rate(llm_cache_requests_total{agent=~"$agent"}[${RATE}]))`,
                legend: '{{agent}}',
              },
            ],
          },
        ],
      },
      {
        title: 'Budget store and runtime',
        panels: [
          {
            title: 'Budget store reachable',
            description: '1 while each runtime reaches its Redis store (AgentBudgetStoreDown at 0); store errors by the failure mode that handled them.',
            unit: 'short',
            queries: [
              { expr: 'min by (job) (budget_store_up)', legend: '{{job}} up' },
              { expr: `sum by (job, mode) (rate(budget_store_errors_total[${RATE}])) * 60`, legend: '{{job}} errors/min ({{mode}})' },
            ],
          },
          {
            title: 'Unpriced and estimated requests per minute',
            description: 'Requests for models missing from the price table (cost counted as 0) and requests whose usage was estimated (cut streams).',
            unit: 'short',
            queries: [
              { expr: `sum by (agent, model) (rate(llm_unpriced_requests_total{${AGENT_MODEL}}[${RATE}]) ${ON_SIDECARS}) * 60`, legend: 'unpriced {{agent}} {{model}}' },
              { expr: `sum by (agent, model) (rate(llm_usage_estimated_total{${AGENT_MODEL}}[${RATE}]) ${ON_SIDECARS}) * 60`, legend: 'estimated {{agent}} {{model}}' },
            ],
          },
          {
            title: 'Runtime memory (RSS) per pod',
            description: 'Resident memory of each sidecar and gateway process, against its memory limit (sidecar default 192Mi).',
            unit: 'bytes',
            queries: [{ expr: 'max by (job, pod) (process_resident_memory_bytes * on (job, instance) group_left cdk_agents_runtime_info)', legend: '{{job}} {{pod}}' }],
          },
          {
            title: 'Runtime CPU per pod',
            description: 'CPU seconds per second of each sidecar and gateway process.',
            unit: 'short',
            queries: [
              {
                expr: `max by (job, pod) (rate(process_cpu_seconds_total[${RATE}]) * on (job, instance) group_left cdk_agents_runtime_info)`,
                legend: '{{job}} {{pod}}',
              },
            ],
          },
        ],
      },
    ],
  };
}
