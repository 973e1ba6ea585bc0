/** AgentMonitoring validation: errors at construction naming the prop and the fix. */
import { Duration } from 'cdk8s';
import { Pods } from 'cdk8s-plus-28';
import { AgentMonitoring, AgentService, type AgentMonitoringProps } from '../../lib';
import { chart, minimalProps } from './helpers';
import type { Chart } from 'cdk8s';

const prometheus = (c: Chart) => Pods.select(c, 'Prometheus', { labels: { 'app.kubernetes.io/name': 'prometheus' } });
const monitoring = (c: Chart, props: Partial<AgentMonitoringProps> = {}) => new AgentMonitoring(c, 'Monitoring', { prometheus: prometheus(c), ...props });

describe('AgentMonitoring errors', () => {
  test('a workload monitored twice would have every series scraped twice', () => {
    const c = chart();
    const a = new AgentService(c, 'A', minimalProps({ replicas: 1 }));
    monitoring(c, { agents: [a] });
    const second = new AgentMonitoring(c, 'Again', { prometheus: Pods.select(c, 'Other', { labels: { app: 'p' } }) });
    expect(() => second.monitor(a)).toThrow(
      "AgentMonitoring 'test/Again': AgentService 'a' is already monitored by AgentMonitoring 'test/Monitoring'; a second monitor would scrape every series twice and double every sum. Monitor it once.",
    );
  });

  test('scrapeTimeout above interval', () => {
    expect(() => monitoring(chart(), { interval: Duration.seconds(10), scrapeTimeout: Duration.seconds(15) })).toThrow(
      "AgentMonitoring 'test/Monitoring': 'scrapeTimeout' (15s) must be at most 'interval' (10s); Prometheus refuses the scrape config otherwise.",
    );
  });

  test('an interval in fractions of a second', () => {
    expect(() => monitoring(chart(), { interval: Duration.millis(1500) })).toThrow(/'interval' \(1\.5s\) must be a whole number of seconds/);
  });

  test('labels must be valid label keys and values', () => {
    expect(() => monitoring(chart(), { labels: { release: 'kube prometheus stack' } })).toThrow(/'labels\.release' \('kube prometheus stack'\) is not a valid label value/);
    expect(() => monitoring(chart(), { labels: { 'bad key!': 'x' } })).toThrow(/'labels' has an invalid label key 'bad key!'/);
  });

  test('prometheus is required (the NetworkPolicies would keep it out)', () => {
    expect(() => new AgentMonitoring(chart(), 'Monitoring', {} as AgentMonitoringProps)).toThrow(/'prometheus' is required: the Prometheus pods the workloads' NetworkPolicies must let in on 8788/);
  });
});
