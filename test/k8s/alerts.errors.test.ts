/** AgentAlerts validation: thresholds and labels at construction, an empty rule set at synth. */
import { AgentAlerts, AgentService, type AgentAlertsProps } from '../../lib';
import { chart, minimalProps, synth } from './helpers';

const alerts = (props: AgentAlertsProps) => new AgentAlerts(chart(), 'Alerts', props);

describe('AgentAlerts errors', () => {
  test.each<[keyof AgentAlertsProps, number, string]>([
    ['budgetWarningRatio', 0, 'above 0 and below 1 (a share of the budget; 1 is AgentBudgetExhausted)'],
    ['budgetWarningRatio', 1, 'above 0 and below 1 (a share of the budget; 1 is AgentBudgetExhausted)'],
    ['tokenBurnFactor', 1, 'greater than 1 (a multiple of the usual rate)'],
    ['tokenBurnMinTokensPerSecond', -1, 'a number >= 0'],
    ['runIterationsThreshold', 0, 'a positive number of LLM calls'],
    ['guardrailBlockFactor', 0.5, 'greater than 1 (a multiple of the usual rate)'],
    ['guardrailBlocksPerMinute', Number.NaN, 'a number >= 0'],
    ['upstreamErrorRatio', 5, 'above 0 and at most 1 (a share of the answers)'],
    ['failoversPerMinute', -2, 'a number >= 0'],
  ])('%s = %s', (prop, value, rule) => {
    expect(() => alerts({ [prop]: value })).toThrow(`AgentAlerts 'alerts': '${prop}' (${value}) must be ${rule}.`);
  });

  test('labels must be valid Kubernetes labels', () => {
    expect(() => alerts({ labels: { release: '' } })).not.toThrow();
    expect(() => alerts({ labels: { 'release name': 'x' } })).toThrow(/'labels' has an invalid label key 'release name'/);
  });

  test('two watched workloads with one name in one namespace (one scrape job)', () => {
    const c = chart();
    const a = new AgentService(c, 'A', minimalProps({ replicas: 1, name: 'support' }));
    const b = new AgentService(c, 'B', minimalProps({ replicas: 1, name: 'support' }));
    const rule = new AgentAlerts(c, 'Alerts', { agents: [a] });
    expect(() => rule.watch(b)).toThrow("AgentAlerts 'alerts': test/B and test/A are both named 'support' in the same namespace; the alerts tell workloads apart by name (the scrape job). Rename one.");
  });

  test('watching nothing: at synth', () => {
    const c = chart();
    new AgentAlerts(c, 'Alerts');
    expect(() => synth(c)).toThrow(/AgentAlerts 'alerts': watches nothing\. Call alerts\.watch\(agent\)/);
  });
});
