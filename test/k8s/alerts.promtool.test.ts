/**
 * The alert rules as Prometheus runs them: the rule groups of the synthesized PrometheusRule are
 * written to a rule file, `promtool check rules` accepts it, and `promtool test rules` shows each
 * alert firing on a bad series (with its exact labels and rendered summary and description) and
 * staying silent on a normal one. promtool comes from Debian's `prometheus` package (.ci/run
 * installs it).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { loadSynthesized } from '../support/k8s-validate';
import { ALERT_NAMES, AgentService, Budget, BudgetGuard, BudgetStore, LlmGateway, LlmProvider, LoopGuard, SecretKey } from '../../lib';
import { chart, find, minimalProps, synth, type Json } from './helpers';

const NS = 'agents';
const AGENT = 'support-chat';
const GATEWAY = 'llm-gateway';

/** A guard on an agent and its gateway: the rules select jobs support-chat and llm-gateway in namespace agents. */
function ruleGroups(): Json[] {
  const c = chart(NS);
  const gateway = new LlmGateway(c, 'LlmGateway', { providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') })] });
  const agent = new AgentService(c, 'SupportChat', minimalProps({ providers: undefined, gateway }));
  new BudgetGuard(c, 'SupportBudgets', {
    budgets: [Budget.usdPerDay(50)],
    loopGuard: LoopGuard.of({ maxIterations: 25 }),
    store: BudgetStore.redis({ url: 'redis://redis.data.svc.cluster.local:6379' }),
    agents: [agent],
    gateways: [gateway],
  });
  return find(synth(c), 'PrometheusRule', 'support-budgets').spec.groups;
}

function promtool(args: string[]): { status: number | null; output: string } {
  const result = spawnSync('promtool', args, { encoding: 'utf8' });
  if (result.error) throw new Error(`promtool is not installed (apt-get install -y prometheus; .ci/run does it): ${result.error.message}`);
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

const dir = mkdtempSync(path.join(tmpdir(), 'alerts-promtool-'));
const groups = ruleGroups();
const rules: Json[] = groups.flatMap((g) => g.rules);
const RULES_FILE = path.join(dir, 'rules.yaml');
writeFileSync(RULES_FILE, stringify({ groups }));

// ---------------------------------------------------------------------------------------------
// Expected annotations: the rule's own templates rendered with the expected labels and value, for
// the template forms the rules use (any other form fails the test).

/** Go's %.4g for the values in these tests (no exponent form). */
function g4(v: number): string {
  return String(Number(v.toPrecision(4)));
}

/** Prometheus' `humanize`: SI prefixes around 1. */
function humanize(v: number): string {
  if (v === 0) return '0';
  const big = ['k', 'M', 'G', 'T'];
  const small = ['m', 'u', 'n', 'p'];
  let prefix = '';
  if (Math.abs(v) >= 1) {
    for (const p of big) {
      if (Math.abs(v) < 1000) break;
      prefix = p;
      v /= 1000;
    }
  } else {
    for (const p of small) {
      if (Math.abs(v) >= 1) break;
      prefix = p;
      v *= 1000;
    }
  }
  return `${g4(v)}${prefix}`;
}

function render(template: string, labels: Record<string, string>, value: number): string {
  return template.replace(/\{\{\s*([^}]*?)\s*\}\}/g, (_, expr: string) => {
    const label = /^\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)$/.exec(expr);
    if (label) {
      if (labels[label[1]] === undefined) throw new Error(`template uses $labels.${label[1]}, which the alert does not carry`);
      return labels[label[1]];
    }
    if (expr === '$value | humanizePercentage') return `${g4(value * 100)}%`;
    if (expr === '$value | humanize') return humanize(value);
    throw new Error(`unsupported template {{ ${expr} }}`);
  });
}

interface Expected {
  readonly labels: Record<string, string>;
  /** The alert's value at eval time (for $value in annotations). */
  readonly value: number;
}

interface Case {
  /** Series as 'name{labels}' -> promtool values notation. */
  readonly series: Record<string, string>;
  readonly evalTime: string;
  readonly alerts: Expected[];
}

interface AlertCases {
  readonly bad: Case;
  /** Normal traffic, each case its own promtool test group. */
  readonly normal: Case[];
}

function s(metric: string, labels: Record<string, string>): string {
  return `${metric}{${Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',')}}`;
}

const agentTarget = { namespace: NS, job: AGENT, instance: '10.0.0.1:8788', pod: 'support-chat-5d9c7b-x2x4q' };
const agentTarget2 = { namespace: NS, job: AGENT, instance: '10.0.0.2:8788', pod: 'support-chat-5d9c7b-p9k2f' };
const gatewayTarget = { namespace: NS, job: GATEWAY, instance: '10.0.1.1:8788', pod: 'llm-gateway-7f8d9c-abcde' };
/** A workload the guard is not attached to: its series never alert through these rules. */
const otherTarget = { namespace: NS, job: 'other-agent', instance: '10.0.2.1:8788', pod: 'other-agent-6c5b4a-zzzzz' };

/** A counter from 0 in segments of `samples` one-minute samples each growing `perMinute`, in promtool's notation. */
function counter(...segments: Array<[perMinute: number, samples: number]>): string {
  let last: number | undefined;
  return segments
    .map(([perMinute, samples]) => {
      const first = last === undefined ? 0 : last + perMinute;
      last = first + perMinute * (samples - 1);
      return `${first}+${perMinute}x${samples - 1}`;
    })
    .join(' ');
}

const budgetLabels = { agent: AGENT, scope: 'agent', unit: 'usd', period: 'day' };
const budgetAlertLabels = (severity: string, labels = budgetLabels, job = AGENT) => ({ namespace: NS, job, ...labels, severity });
const bucket = (le: string, perMinute: number, minutes = 30) => [s('agent_run_iterations_bucket', { ...agentTarget, agent: AGENT, le }), `0+${perMinute}x${minutes}`] as const;

/** p99 of the iteration histogram with 63 calls a minute: 13 up to 13 iterations, the other 50 between 21 and 34. */
const P99_LONG_RUNS = 21 + ((34 - 21) * (0.99 * 63 - 13)) / (63 - 13);

const CASES: Record<(typeof ALERT_NAMES)[number], AlertCases> = {
  AgentBudgetNearlyExhausted: {
    bad: {
      // Two replicas sharing Redis report the same ratio: one alert.
      series: {
        [s('budget_usage_ratio', { ...agentTarget, ...budgetLabels })]: '0.5 0.85+0x20',
        [s('budget_usage_ratio', { ...agentTarget2, ...budgetLabels })]: '0.5 0.85+0x20',
      },
      evalTime: '10m',
      alerts: [{ labels: budgetAlertLabels('warning'), value: 0.85 }],
    },
    normal: [
      {
        series: {
          [s('budget_usage_ratio', { ...agentTarget, ...budgetLabels })]: '0.5+0x20',
          // A minute window is a rate, not a budget to page about.
          [s('budget_usage_ratio', { ...agentTarget, ...budgetLabels, period: 'minute' })]: '0.95+0x20',
          // Used up: AgentBudgetExhausted, not this one.
          [s('budget_usage_ratio', { ...agentTarget, ...budgetLabels, unit: 'tokens' })]: '1+0x20',
          // Not a workload of this guard.
          [s('budget_usage_ratio', { ...otherTarget, ...budgetLabels, agent: 'other-agent' })]: '0.9+0x20',
        },
        evalTime: '10m',
        alerts: [],
      },
    ],
  },
  AgentBudgetExhausted: {
    bad: {
      series: {
        [s('budget_usage_ratio', { ...agentTarget, ...budgetLabels })]: '0.5 1+0x10',
        // At 95% the next call no longer fits: the runtime refuses calls for this limit.
        [s('budget_usage_ratio', { ...gatewayTarget, ...budgetLabels, unit: 'tokens', period: 'month' })]: '0.5 0.95+0x10',
        [s('budget_rejections_total', { ...gatewayTarget, scope: 'agent', limit: 'tokens_per_month' })]: '0 0+4x10',
      },
      evalTime: '5m',
      alerts: [
        { labels: budgetAlertLabels('critical'), value: 1 },
        { labels: budgetAlertLabels('critical', { ...budgetLabels, unit: 'tokens', period: 'month' }, GATEWAY), value: 0.95 },
      ],
    },
    normal: [
      {
        series: {
          // 95% used, nothing refused yet.
          [s('budget_usage_ratio', { ...agentTarget, ...budgetLabels })]: '0.95+0x10',
          [s('budget_rejections_total', { ...agentTarget, scope: 'agent', limit: 'usd_per_day' })]: '7+0x10',
          // Refusals for another limit (a per-user budget) do not make the agent's budget exhausted.
          [s('budget_usage_ratio', { ...gatewayTarget, ...budgetLabels, unit: 'tokens', period: 'month' })]: '0.95+0x10',
          [s('budget_rejections_total', { ...gatewayTarget, scope: 'user', limit: 'tokens_per_month' })]: '0+4x10',
        },
        evalTime: '5m',
        alerts: [],
      },
    ],
  },
  AgentTokenBurnAnomaly: {
    bad: {
      series: {
        // A day at 1 token/s, then 40 minutes at 100 tokens/s.
        [s('llm_tokens_total', { ...agentTarget, agent: AGENT, provider: GATEWAY, model: 'gpt-4o-mini', type: 'output' })]: counter([60, 1441], [6000, 40]),
        // The gateway meters the same calls: the alert counts the agent's sidecar only (one alert).
        [s('llm_tokens_total', { ...gatewayTarget, agent: AGENT, provider: 'openai', model: 'gpt-4o-mini', type: 'output' })]: counter([60, 1441], [6000, 40]),
      },
      evalTime: '1480m',
      alerts: [{ labels: { namespace: NS, job: AGENT, agent: AGENT, severity: 'warning' }, value: 100 }],
    },
    normal: [
      {
        // Busy but steady: 100 tokens/s all along.
        series: { [s('llm_tokens_total', { ...agentTarget, agent: AGENT, provider: GATEWAY, model: 'gpt-4o-mini', type: 'output' })]: counter([6000, 1481]) },
        evalTime: '1480m',
        alerts: [],
      },
      {
        // Twenty times its usual rate, but only 20 tokens/s: under tokenBurnMinTokensPerSecond.
        series: { [s('llm_tokens_total', { ...agentTarget, agent: AGENT, provider: GATEWAY, model: 'gpt-4o-mini', type: 'output' })]: counter([60, 1441], [1200, 40]) },
        evalTime: '1480m',
        alerts: [],
      },
      {
        // A burst on an agent this guard does not watch.
        series: { [s('llm_tokens_total', { ...otherTarget, agent: 'other-agent', provider: 'openai', model: 'gpt-4o-mini', type: 'output' })]: counter([60, 1441], [6000, 40]) },
        evalTime: '1480m',
        alerts: [],
      },
    ],
  },
  AgentRunIterationsHigh: {
    bad: {
      series: Object.fromEntries([
        bucket('1', 1),
        bucket('2', 2),
        bucket('3', 3),
        bucket('5', 5),
        bucket('8', 8),
        bucket('13', 13),
        bucket('21', 13),
        bucket('34', 63),
        bucket('55', 63),
        bucket('+Inf', 63),
      ]),
      evalTime: '25m',
      alerts: [{ labels: { namespace: NS, job: AGENT, agent: AGENT, severity: 'warning' }, value: P99_LONG_RUNS }],
    },
    normal: [
      {
        series: Object.fromEntries([bucket('1', 20), bucket('2', 35), bucket('3', 45), bucket('5', 58), bucket('8', 60), bucket('13', 60), bucket('21', 60), bucket('+Inf', 60)]),
        evalTime: '25m',
        alerts: [],
      },
    ],
  },
  AgentBudgetStoreDown: {
    bad: {
      series: {
        [s('budget_store_up', agentTarget)]: '1 1 1 0+0x10',
        [s('budget_store_up', agentTarget2)]: '1+0x12',
      },
      evalTime: '8m',
      alerts: [{ labels: { namespace: NS, job: AGENT, severity: 'critical' }, value: 0 }],
    },
    normal: [
      {
        series: {
          [s('budget_store_up', agentTarget)]: '1+0x12',
          [s('budget_store_up', gatewayTarget)]: '1 0 1+0x10',
          [s('budget_store_up', otherTarget)]: '0+0x12',
        },
        evalTime: '8m',
        alerts: [],
      },
    ],
  },
  AgentBudgetStoreErrors: {
    bad: {
      series: { [s('budget_store_errors_total', { ...gatewayTarget, mode: 'fail-closed' })]: '0+5x30' },
      evalTime: '20m',
      alerts: [{ labels: { namespace: NS, job: GATEWAY, mode: 'fail-closed', severity: 'warning' }, value: 5 / 60 }],
    },
    normal: [
      {
        // A burst of errors that stopped: not sustained for 10 minutes.
        series: { [s('budget_store_errors_total', { ...gatewayTarget, mode: 'fail-closed' })]: '0 3 6 6+0x27' },
        evalTime: '20m',
        alerts: [],
      },
    ],
  },
  AgentGuardrailBlockSpike: {
    bad: {
      // A rule that never blocked before starts blocking 10 requests a minute: counted from zero.
      // Firing at 16m needs the condition since 6m, before a day-old baseline exists (it appears at 11m).
      series: { [s('guardrail_decisions_total', { ...agentTarget, direction: 'input', rule: 'input.injection', action: 'block' })]: '0+10x20' },
      evalTime: '16m',
      alerts: [{ labels: { namespace: NS, job: AGENT, direction: 'input', rule: 'input.injection', severity: 'warning' }, value: 10 / 60 }],
    },
    normal: [
      {
        series: {
          // Blocks at its usual rate all day.
          [s('guardrail_decisions_total', { ...gatewayTarget, direction: 'output', rule: 'output.secret.jwt', action: 'block' })]: '0+10x1480',
          // Warnings are not blocks.
          [s('guardrail_decisions_total', { ...agentTarget, direction: 'input', rule: 'input.injection', action: 'warn' })]: '0+1x1440 1440+50x40',
          // A new rule blocking once a minute: under guardrailBlocksPerMinute.
          [s('guardrail_decisions_total', { ...agentTarget, direction: 'input', rule: 'input.deny.refund', action: 'block' })]: '_x1440 0+1x40',
        },
        evalTime: '1470m',
        alerts: [],
      },
    ],
  },
  LlmUpstreamErrors: {
    bad: {
      series: {
        [s('llm_requests_total', { ...gatewayTarget, agent: AGENT, provider: 'openai', model: 'gpt-4o-mini', code: '200' })]: '0+90x30',
        [s('llm_requests_total', { ...gatewayTarget, agent: AGENT, provider: 'openai', model: 'gpt-4o-mini', code: '502' })]: '0+10x30',
      },
      evalTime: '20m',
      alerts: [{ labels: { namespace: NS, job: GATEWAY, provider: 'openai', severity: 'warning' }, value: 0.1 }],
    },
    normal: [
      {
        series: {
          [s('llm_requests_total', { ...gatewayTarget, agent: AGENT, provider: 'openai', model: 'gpt-4o-mini', code: '200' })]: '0+99x30',
          [s('llm_requests_total', { ...gatewayTarget, agent: AGENT, provider: 'openai', model: 'gpt-4o-mini', code: '502' })]: '0+1x30',
          // 503 budget_store_unavailable is the runtime's own answer (provider none), not an upstream error.
          [s('llm_requests_total', { ...agentTarget, agent: AGENT, provider: 'none', model: 'none', code: '503' })]: '0+50x30',
          // Answered from the response cache.
          [s('llm_requests_total', { ...gatewayTarget, agent: AGENT, provider: 'cache', model: 'gpt-4o-mini', code: '200' })]: '0+50x30',
        },
        evalTime: '20m',
        alerts: [],
      },
    ],
  },
  LlmUpstreamFailovers: {
    bad: {
      series: { [s('llm_upstream_failovers_total', { ...gatewayTarget, from: 'openai', to: 'anthropic', reason: 'server_error' })]: '0+5x30' },
      evalTime: '25m',
      alerts: [{ labels: { namespace: NS, job: GATEWAY, from: 'openai', reason: 'server_error', severity: 'warning' }, value: 5 }],
    },
    normal: [
      {
        series: { [s('llm_upstream_failovers_total', { ...gatewayTarget, from: 'openai', to: 'anthropic', reason: 'rate_limited' })]: '0+0.5x30' },
        evalTime: '25m',
        alerts: [],
      },
    ],
  },
  LlmProviderCircuitOpen: {
    bad: {
      series: { [s('llm_upstream_circuit_open', { ...gatewayTarget, provider: 'openai' })]: '0 0 1+0x20' },
      evalTime: '20m',
      alerts: [{ labels: { namespace: NS, job: GATEWAY, provider: 'openai', severity: 'warning' }, value: 1 }],
    },
    normal: [
      {
        // A cooldown now and then (a quarter of the time): failover handles it.
        series: { [s('llm_upstream_circuit_open', { ...gatewayTarget, provider: 'openai' })]: '1 0 0 0 1 0 0 0 1 0 0 0 1 0 0 0 1 0 0 0 1 0 0 0' },
        evalTime: '20m',
        alerts: [],
      },
    ],
  },
};

function testFile(alertname: string, cases: Array<[string, Case]>): string {
  const rule = rules.find((r) => r.alert === alertname)!;
  const file = path.join(dir, `${alertname}-${cases.map(([n]) => n.replace(/\W+/g, '_')).join('-')}.test.yaml`);
  const doc = {
    rule_files: [RULES_FILE],
    evaluation_interval: '1m',
    tests: cases.map(([name, c]) => ({
      name: `${alertname} ${name}`,
      interval: '1m',
      input_series: Object.entries(c.series).map(([series, values]) => ({ series, values })),
      alert_rule_test: [
        {
          eval_time: c.evalTime,
          alertname,
          exp_alerts: c.alerts.map((a) => ({
            exp_labels: a.labels,
            exp_annotations: {
              summary: render(rule.annotations.summary, a.labels, a.value),
              description: render(rule.annotations.description, a.labels, a.value),
            },
          })),
        },
      ],
    })),
  };
  writeFileSync(file, stringify(doc));
  return file;
}

describe('alert rules under promtool', () => {
  test('promtool check rules accepts the rule file: every rule parses and every template is valid', () => {
    const { status, output } = promtool(['check', 'rules', RULES_FILE]);
    expect(output).toContain(`SUCCESS: ${ALERT_NAMES.length} rules found`);
    expect(status).toBe(0);
  });

  test('the rule file has every alert, each with severity, summary and a description saying what to do', () => {
    expect(rules.map((r) => r.alert)).toEqual([...ALERT_NAMES]);
    for (const r of rules) {
      expect(['warning', 'critical']).toContain(r.labels.severity);
      expect(r.annotations.summary.length).toBeGreaterThan(20);
      // A runbook in a sentence or three: what it means and what to check or change.
      expect(r.annotations.description.length).toBeGreaterThan(200);
      expect(r.annotations.description).toMatch(/\b(Check|Look|Find|Raise|raise|Set|set|Add|fix|Fix|stop|tighten|Use)\b/);
    }
  });

  test('every alert has a firing and a silent case below', () => {
    expect(Object.keys(CASES).sort()).toEqual([...ALERT_NAMES].sort());
    for (const c of Object.values(CASES)) {
      expect(c.bad.alerts.length).toBeGreaterThan(0);
      expect(c.normal.length).toBeGreaterThan(0);
      for (const n of c.normal) expect(n.alerts).toEqual([]);
    }
  });

  // AgentTokenBurnAnomaly evaluates a day of one-minute samples: about 10 s.
  test.each([...ALERT_NAMES])('%s fires on a bad series and stays silent on a normal one', (alertname) => {
    const { bad, normal } = CASES[alertname];
    const cases: Array<[string, Case]> = [['fires', bad], ...normal.map((c, i): [string, Case] => [`stays silent ${i + 1}`, c])];
    const { status, output } = promtool(['test', 'rules', testFile(alertname, cases)]);
    expect(output).not.toContain('FAILED');
    expect(status).toBe(0);
  }, 120_000);

  test('the harness can fail: expecting the normal case to fire, or the bad case to stay silent, fails promtool', () => {
    const { bad, normal } = CASES.AgentBudgetExhausted;
    const wrong: Array<[string, Case]> = [
      ['normal expected to fire', { ...normal[0], alerts: bad.alerts }],
      ['bad expected silent', { ...bad, alerts: [] }],
    ];
    for (const c of wrong) {
      const { status, output } = promtool(['test', 'rules', testFile('AgentBudgetExhausted', [c])]);
      expect(status).not.toBe(0);
      expect(output).toContain('FAILED');
    }
  });

  test('the example platform\'s PrometheusRules pass promtool check rules too', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'example-rules-'));
    const root = path.join(__dirname, '..', '..');
    const synthesized = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(root, 'examples', 'k8s.ts')], {
      cwd: root,
      env: { ...process.env, CDK8S_OUTDIR: out },
      encoding: 'utf8',
    });
    if (synthesized.status !== 0) throw new Error(`synth of examples/k8s.ts failed (${synthesized.status}):\n${synthesized.stderr}`);
    const exampleRules = (loadSynthesized(out) as Json[]).filter((o) => o.kind === 'PrometheusRule');
    expect(exampleRules.map((r) => r.metadata.name).sort()).toEqual(['gateway-budgets', 'research-alerts', 'support-budgets']);
    for (const r of exampleRules) {
      const file = path.join(dir, `example-${r.metadata.name}.yaml`);
      writeFileSync(file, stringify({ groups: r.spec.groups }));
      const { status, output } = promtool(['check', 'rules', file]);
      expect(output).toMatch(/SUCCESS: \d+ rules found/);
      expect(status).toBe(0);
    }
  }, 120_000);

  test('promtool check rules refuses a broken expression (the check is real)', () => {
    const broken = path.join(dir, 'broken.yaml');
    writeFileSync(broken, stringify({ groups: [{ name: 'x', rules: [{ alert: 'X', expr: 'sum by (agent (rate(llm_tokens_total[5m]))' }] }] }));
    expect(promtool(['check', 'rules', broken]).status).not.toBe(0);
  });
});
