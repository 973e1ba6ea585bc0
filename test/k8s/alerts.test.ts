/**
 * AgentAlerts output: one PrometheusRule whose rules select the watched workloads by namespace
 * and scrape job, with thresholds from the props, every alert with a severity, a summary and a
 * description saying what to do. (promtool runs them in alerts.promtool.test.ts.)
 */
import { AgentAlerts, AgentService, ALERT_NAMES, LlmGateway, LlmProvider, SecretKey } from '../../lib';
import { validateManifests } from '../support/k8s-validate';
import { bareChart, chart, find, minimalProps, synth, type Json } from './helpers';
import type { Chart } from 'cdk8s';

function workloads(c: Chart) {
  const gateway = new LlmGateway(c, 'LlmGateway', { providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') })] });
  const support = new AgentService(c, 'SupportChat', minimalProps({ providers: undefined, gateway }));
  const billing = new AgentService(c, 'Billing', minimalProps({ providers: undefined, gateway, namespace: 'finance' }));
  return { gateway, support, billing };
}

const rulesOf = (rule: Json): Json[] => rule.spec.groups.flatMap((g: Json) => g.rules);

describe('AgentAlerts', () => {
  test('snapshot', () => {
    const c = chart();
    const { gateway, support } = workloads(c);
    new AgentAlerts(c, 'Alerts', { agents: [support], gateways: [gateway], labels: { release: 'kube-prometheus-stack' } });
    expect(find(synth(c), 'PrometheusRule', 'alerts')).toMatchSnapshot();
  });

  test('a valid PrometheusRule, the default child, with every alert in two groups', () => {
    const c = chart();
    const { gateway, support } = workloads(c);
    const alerts = new AgentAlerts(c, 'Alerts', { agents: [support], gateways: [gateway] });
    const objects = synth(c);
    expect(validateManifests(objects)).toEqual([]);
    expect(alerts.node.defaultChild).toBe(alerts.prometheusRule);
    const rule = find(objects, 'PrometheusRule', 'alerts');
    expect(rule.spec.groups.map((g: Json) => g.name)).toEqual(['alerts.budgets', 'alerts.runtime']);
    expect(rulesOf(rule).map((r) => r.alert)).toEqual([...ALERT_NAMES]);
    for (const r of rulesOf(rule)) {
      expect(Object.keys(r).sort()).toEqual(['alert', 'annotations', 'expr', 'for', 'labels']);
      expect(Object.keys(r.annotations).sort()).toEqual(['description', 'summary']);
      expect(r.for).toMatch(/^\d+m$/);
    }
  });

  test('rules select the watched workloads across namespaces; per-agent alerts only the agents', () => {
    const c = chart();
    const { gateway, support, billing } = workloads(c);
    const alerts = new AgentAlerts(c, 'Alerts');
    alerts.watch(support);
    alerts.watch(billing);
    alerts.watch(gateway);
    alerts.watch(support); // again: nothing changes
    const rules = rulesOf(find(synth(c), 'PrometheusRule', 'alerts'));
    const byName = (n: string) => rules.find((r) => r.alert === n)!.expr as string;
    expect(byName('AgentBudgetStoreDown')).toBe('min by (namespace, job) (budget_store_up{namespace=~"agents|finance", job=~"billing|llm-gateway|support-chat"}) == 0');
    expect(byName('AgentTokenBurnAnomaly')).toContain('llm_tokens_total{namespace=~"agents|finance", job=~"billing|support-chat"}');
    expect(byName('AgentRunIterationsHigh')).toContain('agent_run_iterations_bucket{namespace=~"agents|finance", job=~"billing|support-chat"}');
  });

  test('watching only gateways leaves out the per-agent alerts (sidecars see every call of their agent; a gateway only some)', () => {
    const c = chart();
    const { gateway } = workloads(c);
    new AgentAlerts(c, 'Alerts', { gateways: [gateway] });
    const names = rulesOf(find(synth(c), 'PrometheusRule', 'alerts')).map((r) => r.alert);
    expect(names).toEqual(ALERT_NAMES.filter((n) => n !== 'AgentTokenBurnAnomaly' && n !== 'AgentRunIterationsHigh'));
  });

  test('thresholds from the props reach the expressions', () => {
    const c = chart();
    const { gateway, support } = workloads(c);
    new AgentAlerts(c, 'Alerts', {
      agents: [support],
      gateways: [gateway],
      budgetWarningRatio: 0.9,
      tokenBurnFactor: 8,
      tokenBurnMinTokensPerSecond: 200,
      runIterationsThreshold: 30,
      guardrailBlockFactor: 4,
      guardrailBlocksPerMinute: 6,
      upstreamErrorRatio: 0.1,
      failoversPerMinute: 2,
    });
    const rules = rulesOf(find(synth(c), 'PrometheusRule', 'alerts'));
    const expr = (n: string) => rules.find((r) => r.alert === n)!.expr as string;
    expect(expr('AgentBudgetNearlyExhausted')).toMatch(/\) >= 0\.9\nunless/);
    expect(expr('AgentTokenBurnAnomaly')).toMatch(/> 8 \* sum by/);
    expect(expr('AgentTokenBurnAnomaly')).toMatch(/> 200$/);
    expect(expr('AgentRunIterationsHigh')).toMatch(/> 30$/);
    expect(expr('AgentGuardrailBlockSpike')).toMatch(/> 4 \* \(/);
    expect(expr('AgentGuardrailBlockSpike')).toMatch(/> 0\.1$/);
    expect(expr('LlmUpstreamErrors')).toMatch(/> 0\.1$/);
    expect(expr('LlmUpstreamFailovers')).toMatch(/\* 60 > 2$/);
    expect(rules.find((r) => r.alert === 'AgentBudgetNearlyExhausted')!.annotations.description).toMatch(/^More than 90% of this window's budget/);
  });

  test('a chart without a namespace: rules select by job only', () => {
    const c = bareChart();
    const a = new AgentService(c, 'A', minimalProps({ replicas: 1 }));
    new AgentAlerts(c, 'Alerts', { agents: [a] });
    const expr = rulesOf(find(synth(c), 'PrometheusRule', 'alerts'))[0].expr as string;
    expect(expr).toContain('budget_usage_ratio{job="a", period!="minute"}');
    expect(expr).not.toContain('namespace=');
  });
});
