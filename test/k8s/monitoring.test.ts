/**
 * AgentMonitoring output: a PodMonitor per agent and a ServiceMonitor per gateway that select
 * exactly the workload's pods (or Service) and its `metrics` port, set the scrape job to the
 * workload's name (the alerts and dashboards rely on it), carry the labels Prometheus selects
 * monitors by, and open the workloads' NetworkPolicies to Prometheus on 8788.
 */
import { Duration } from 'cdk8s';
import { Namespaces, Pods } from 'cdk8s-plus-28';
import { AgentMonitoring, AgentService, JOB_LABEL, LlmGateway, LlmProvider, RUNTIME_ADMIN_PORT, SecretKey } from '../../lib';
import { checkReadOnlyRoot, checkRestricted, validateManifests } from '../support/k8s-validate';
import { chart, container, find, minimalProps, synth, type Json } from './helpers';

function platform(props: { interval?: Duration; scrapeTimeout?: Duration } = {}) {
  const c = chart();
  const prometheus = Pods.select(c, 'Prometheus', {
    labels: { 'app.kubernetes.io/name': 'prometheus' },
    namespaces: Namespaces.select(c, 'MonitoringNs', { names: ['monitoring'] }),
  });
  const gateway = new LlmGateway(c, 'LlmGateway', { providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') })] });
  const support = new AgentService(c, 'SupportChat', minimalProps({ providers: undefined, gateway, port: 8080 }));
  const worker = new AgentService(c, 'Summarizer', minimalProps({ providers: undefined, gateway }));
  const monitoring = new AgentMonitoring(c, 'Monitoring', {
    prometheus,
    labels: { release: 'kube-prometheus-stack' },
    agents: [support],
    gateways: [gateway],
    ...props,
  });
  monitoring.monitor(worker);
  return { c, monitoring, gateway, support, worker, objects: synth(c) };
}

/** Whether a NetworkPolicy lets the Prometheus pods in on the admin port. */
function admitsPrometheus(policy: Json): boolean {
  return (policy.spec.ingress ?? []).some(
    (rule: Json) =>
      rule.ports?.some((p: Json) => p.port === RUNTIME_ADMIN_PORT) &&
      rule.from?.some((f: Json) => f.podSelector?.matchLabels?.['app.kubernetes.io/name'] === 'prometheus' && f.namespaceSelector),
  );
}

describe('AgentMonitoring', () => {
  test('snapshot of the monitors', () => {
    const { objects } = platform({ interval: Duration.seconds(30), scrapeTimeout: Duration.seconds(10) });
    expect(objects.filter((o) => o.kind === 'PodMonitor' || o.kind === 'ServiceMonitor')).toMatchSnapshot();
  });

  test('the output passes the CRD schemas; pods stay restricted', () => {
    const { objects } = platform({ interval: Duration.seconds(30), scrapeTimeout: Duration.seconds(10) });
    expect(validateManifests(objects)).toEqual([]);
    expect(checkRestricted(objects)).toEqual([]);
    expect(checkReadOnlyRoot(objects)).toEqual([]);
  });

  test('a PodMonitor per agent selects exactly its pods and the sidecar\'s metrics port, job = the agent\'s name', () => {
    const { objects, monitoring } = platform();
    expect(monitoring.podMonitors.map((m) => m.name)).toEqual(['support-chat', 'summarizer']);
    for (const name of ['support-chat', 'summarizer']) {
      const monitor = find(objects, 'PodMonitor', name);
      const pod = find(objects, 'Deployment', name).spec.template;
      expect(monitor.metadata.namespace).toBe('agents');
      expect(monitor.metadata.labels.release).toBe('kube-prometheus-stack');
      expect(monitor.spec.namespaceSelector).toEqual({ matchNames: ['agents'] });
      // The selector picks this Deployment's pods (all its labels are on the pod template) and no other agent's.
      for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels)) expect(pod.metadata.labels[k]).toBe(v);
      const other = find(objects, 'Deployment', name === 'support-chat' ? 'summarizer' : 'support-chat').spec.template.metadata.labels;
      expect(Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => other[k] === v)).toBe(false);
      // The named port exists on the sidecar container, at the admin port.
      const [endpoint] = monitor.spec.podMetricsEndpoints;
      expect(endpoint).toMatchObject({ port: 'metrics', path: '/metrics', scheme: 'http' });
      expect(container(find(objects, 'Deployment', name), 'cdk-agents-sidecar').ports).toContainEqual({ name: 'metrics', containerPort: RUNTIME_ADMIN_PORT, protocol: 'TCP' });
      expect(monitor.spec.jobLabel).toBe(JOB_LABEL);
      expect(pod.metadata.labels[JOB_LABEL]).toBe(name);
    }
  });

  test('a ServiceMonitor per gateway selects its Service and the Service\'s metrics port, job = the gateway\'s name', () => {
    const { objects, monitoring } = platform();
    expect(monitoring.serviceMonitors.map((m) => m.name)).toEqual(['llm-gateway']);
    const monitor = find(objects, 'ServiceMonitor', 'llm-gateway');
    const service = find(objects, 'Service', 'llm-gateway');
    for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels)) expect(service.metadata.labels[k]).toBe(v);
    expect(monitor.spec.endpoints).toEqual([{ port: 'metrics', path: '/metrics', scheme: 'http' }]);
    expect(service.spec.ports).toContainEqual(expect.objectContaining({ name: 'metrics', port: RUNTIME_ADMIN_PORT }));
    expect(monitor.spec.jobLabel).toBe(JOB_LABEL);
    expect(service.metadata.labels[JOB_LABEL]).toBe('llm-gateway');
    expect(monitor.metadata.labels.release).toBe('kube-prometheus-stack');
  });

  test('every monitored workload lets Prometheus in on 8788, and only those', () => {
    const { c, objects } = platform();
    for (const name of ['support-chat', 'summarizer', 'llm-gateway']) expect(admitsPrometheus(find(objects, 'NetworkPolicy', name))).toBe(true);
    const unmonitored = new AgentService(c, 'Unmonitored', minimalProps({ replicas: 1 }));
    expect(unmonitored).toBeDefined();
    expect(admitsPrometheus(find(synth(c), 'NetworkPolicy', 'unmonitored'))).toBe(false);
  });

  test('interval and scrape timeout, when set, are on every endpoint', () => {
    const { objects } = platform({ interval: Duration.seconds(15), scrapeTimeout: Duration.seconds(5) });
    expect(find(objects, 'PodMonitor', 'support-chat').spec.podMetricsEndpoints[0]).toMatchObject({ interval: '15s', scrapeTimeout: '5s' });
    expect(find(objects, 'ServiceMonitor', 'llm-gateway').spec.endpoints[0]).toMatchObject({ interval: '15s', scrapeTimeout: '5s' });
    // Unset: Prometheus' own defaults.
    expect(find(platform().objects, 'PodMonitor', 'support-chat').spec.podMetricsEndpoints[0].interval).toBeUndefined();
  });

  test('without labels, the monitors carry only the construct labels', () => {
    const c = chart();
    const a = new AgentService(c, 'A', minimalProps({ replicas: 1 }));
    new AgentMonitoring(c, 'Monitoring', { prometheus: Pods.select(c, 'P', { labels: { app: 'prometheus' } }), agents: [a] });
    expect(Object.keys(find(synth(c), 'PodMonitor', 'a').metadata.labels).sort()).toEqual([
      'app.kubernetes.io/component',
      'app.kubernetes.io/managed-by',
      'app.kubernetes.io/name',
      'app.kubernetes.io/part-of',
    ]);
  });
});
