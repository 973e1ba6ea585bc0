/**
 * WarmPool output: a snapshot; each of the three mechanisms field by field (the ready buffer on
 * an HPA and on KEDA, placeholders sized to the agent pod as synthesized, the pre-pull
 * DaemonSet); the shared cluster-scoped PriorityClass; and every object valid, restricted and
 * free of rule-pack findings, warnings included.
 */
import { ApiObject, Chart, Duration, JsonPatch, Size, Testing } from 'cdk8s';
import { Cpu } from 'cdk8s-plus-28';
import {
  AgentService,
  K8sRules,
  PLACEHOLDER_PRIORITY_CLASS,
  QueueWorker,
  SidecarDelivery,
  SidecarLifecycle,
  WarmPool,
  WarmPoolSize,
  WorkerMode,
  WorkerQueue,
  type AgentServiceProps,
  type QueueWorkerProps,
  type WarmPoolProps,
} from '../../lib';
import { checkReadOnlyRoot, checkRestricted, validateManifests } from '../support/k8s-validate';
import { bareChart, chart, find, findAll, minimalProps, synth, type Json } from './helpers';

const QUEUE_URL = 'https://sqs.eu-central-1.amazonaws.com/123456789012/agents-research-worker';

function autoscaledAgent(c: Chart, overrides: Partial<AgentServiceProps> = {}): AgentService {
  return new AgentService(c, 'SupportChat', minimalProps({ autoscaling: { minReplicas: 2, maxReplicas: 10 }, ...overrides }));
}

function queueWorker(c: Chart, overrides: Partial<QueueWorkerProps> = {}): QueueWorker {
  return new QueueWorker(c, 'ResearchWorker', {
    ...minimalProps(),
    queue: WorkerQueue.sqs({ queueUrl: QUEUE_URL }),
    maxTaskDuration: Duration.minutes(10),
    maxReplicas: 8,
    port: 8080,
    healthPath: '/healthz',
    ...overrides,
  } as QueueWorkerProps);
}

function pool(c: Chart, agent: AgentService, props: Partial<WarmPoolProps> = {}): WarmPool {
  return new WarmPool(c, 'WarmPool', { agent, readyBuffer: WarmPoolSize.replicas(2), placeholders: WarmPoolSize.replicas(3), ...props });
}

describe('WarmPool', () => {
  test('snapshot', () => {
    const c = chart();
    pool(c, autoscaledAgent(c));
    expect(synth(c)).toMatchSnapshot();
  });

  test.each([
    ['an autoscaled agent', (c: Chart) => autoscaledAgent(c, { port: 8080, healthPath: '/healthz' }), { readyBuffer: WarmPoolSize.replicas(2) }],
    ['a queue worker', (c: Chart) => queueWorker(c), { readyBuffer: WarmPoolSize.replicas(2) }],
    ['a Job worker with a native sidecar', (c: Chart) => queueWorker(c, { mode: WorkerMode.JOB, sidecarLifecycle: SidecarLifecycle.NATIVE }), { readyBuffer: undefined }],
  ])('for %s: valid against 1.28, restricted, read-only roots, and the rule pack finds nothing, warnings included', (_, make, props) => {
    const c = chart();
    pool(c, make(c), props);
    const objects = synth(c);
    expect(validateManifests(objects)).toEqual([]);
    expect(checkRestricted(objects)).toEqual([]);
    expect(checkReadOnlyRoot(objects)).toEqual([]);
    expect(K8sRules.check(c)).toEqual([]);
  });

  describe('ready buffer', () => {
    test("an autoscaled agent: the HPA's minReplicas rises by the buffer, even after construction", () => {
      const c = chart();
      const agent = autoscaledAgent(c);
      expect(find(synth(c), 'HorizontalPodAutoscaler', 'support-chat').spec.minReplicas).toBe(2);
      const p = pool(c, agent, { placeholders: undefined, prePull: false, readyBuffer: WarmPoolSize.replicas(3) });
      expect(p.readyBuffer).toBe(3);
      const hpa = find(synth(c), 'HorizontalPodAutoscaler', 'support-chat');
      expect(hpa.spec.minReplicas).toBe(5);
      expect(hpa.spec.maxReplicas).toBe(10);
    });

    test('the buffer brings a PodDisruptionBudget once 2 pods run at rest', () => {
      const c = chart();
      const agent = autoscaledAgent(c, { autoscaling: { minReplicas: 1, maxReplicas: 4 } });
      expect(agent.podDisruptionBudget).toBeUndefined();
      pool(c, agent, { readyBuffer: WarmPoolSize.replicas(1), placeholders: undefined });
      expect(agent.podDisruptionBudget).toBeDefined();
      expect(find(synth(c), 'PodDisruptionBudget', 'support-chat').spec.selector.matchLabels).toEqual(agent.selectorLabels);
    });

    test('a queue worker: KEDA runs the backlog\'s pods plus the buffer (a formula on the queue trigger)', () => {
      const c = chart();
      const worker = queueWorker(c, { messagesPerPod: 2, activationBacklog: 1 });
      pool(c, worker, { readyBuffer: WarmPoolSize.replicas(3), placeholders: undefined });
      const spec = find(synth(c), 'ScaledObject', 'research-worker').spec;
      expect(spec.triggers.map((t: Json) => t.name)).toEqual(['queue']);
      // (backlog + 3 * 2) / 2 per pod = backlog pods + 3; active only above the activation backlog, as without the buffer.
      expect(spec.advanced.scalingModifiers).toEqual({ formula: 'queue + 6', target: '2', activationTarget: '7', metricType: 'AverageValue' });
      expect(spec.minReplicaCount).toBe(1);
      expect(spec.maxReplicaCount).toBe(8);
      expect(find(synth(c), 'PodDisruptionBudget', 'research-worker').spec.maxUnavailable).toBe(1);
    });

    test('without a pool the worker has no formula', () => {
      const c = chart();
      queueWorker(c);
      expect(find(synth(c), 'ScaledObject', 'research-worker').spec.advanced.scalingModifiers).toBeUndefined();
    });

    test('a size in percent of max replicas, rounded up', () => {
      const c = chart();
      const p = pool(c, autoscaledAgent(c), { readyBuffer: WarmPoolSize.percentOfMaxReplicas(25), placeholders: WarmPoolSize.percentOfMaxReplicas(1) });
      expect(p.readyBuffer).toBe(3);
      expect(p.placeholders).toBe(1);
      expect(String(WarmPoolSize.percentOfMaxReplicas(25))).toBe('25% of maxReplicas');
    });
  });

  describe('placeholders', () => {
    test('one agent pod each (agent plus sidecar requests), at the shared priority -1, leaving at once when preempted', () => {
      const c = chart();
      const agent = autoscaledAgent(c, {
        resources: { cpu: { request: Cpu.units(1), limit: Cpu.units(2) }, memory: { request: Size.gibibytes(2), limit: Size.gibibytes(4) } },
      });
      const p = pool(c, agent);
      expect(p.node.defaultChild).toBe(p.placeholderDeployment);
      const objects = synth(c);
      const placeholders = find(objects, 'Deployment', 'support-chat-warm-pool');
      expect(placeholders.spec.replicas).toBe(3);
      const pod = placeholders.spec.template.spec;
      expect(pod.priorityClassName).toBe(PLACEHOLDER_PRIORITY_CLASS);
      expect(pod.terminationGracePeriodSeconds).toBe(0);
      expect(pod.automountServiceAccountToken).toBe(false);
      expect(pod.containers).toHaveLength(1);
      const [pause] = pod.containers;
      expect(pause.image).toBe('registry.k8s.io/pause:3.9');
      // 1 CPU and 2 GiB for the agent, 50m and 64Mi for the sidecar.
      expect(pause.resources).toEqual({ requests: { cpu: '1050m', memory: '2112Mi' }, limits: { cpu: '1050m', memory: '2112Mi' } });
      expect(pause.livenessProbe.exec.command).toEqual(['/pause', '-v']);
      expect(pod.topologySpreadConstraints.map((t: Json) => [t.topologyKey, t.whenUnsatisfiable])).toEqual([
        ['topology.kubernetes.io/zone', 'ScheduleAnyway'],
        ['kubernetes.io/hostname', 'ScheduleAnyway'],
      ]);
      // Never the agent's own pods: the agent's selector does not match them.
      expect(placeholders.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'support-chat', 'app.kubernetes.io/component': 'warm-pool-placeholder' });
      expect(find(objects, 'PodDisruptionBudget', 'support-chat-warm-pool').spec).toMatchObject({ maxUnavailable: 1, selector: placeholders.spec.selector });
    });

    test('sized and placed from the agent pod as synthesized: patches to its resources, node selector and tolerations count', () => {
      const c = chart();
      const agent = autoscaledAgent(c);
      agent.deployment.addJsonPatch(
        // Quantities in the bindings are objects with a value (a bare string would be dropped).
        JsonPatch.replace('/spec/template/spec/containers/1/resources/requests/cpu', { value: '2' }),
        JsonPatch.add('/spec/template/spec/nodeSelector', { 'karpenter.sh/nodepool': 'agents' }),
        JsonPatch.add('/spec/template/spec/tolerations', [{ key: 'agents', operator: 'Exists', effect: 'NoSchedule' }]),
      );
      pool(c, agent);
      const objects = synth(c);
      for (const pod of [find(objects, 'Deployment', 'support-chat-warm-pool'), find(objects, 'DaemonSet', 'support-chat-image-prepull')].map((o) => o.spec.template.spec)) {
        expect(pod.nodeSelector).toEqual({ 'karpenter.sh/nodepool': 'agents' });
        expect(pod.tolerations).toEqual([{ key: 'agents', operator: 'Exists', effect: 'NoSchedule' }]);
      }
      expect(find(objects, 'Deployment', 'support-chat-warm-pool').spec.template.spec.containers[0].resources.requests.cpu).toBe('2050m');
    });

    test("a Job worker's pod, native sidecar included, sizes its placeholders", () => {
      const c = chart();
      const worker = queueWorker(c, { mode: WorkerMode.JOB, sidecarLifecycle: SidecarLifecycle.NATIVE });
      const p = pool(c, worker, { readyBuffer: undefined, placeholders: WarmPoolSize.replicas(1) });
      expect(p.podRequests()).toEqual({ cpu: '300m', memory: '576Mi' });
      expect(findAll(synth(c), 'PodDisruptionBudget')).toEqual([]);
    });

    test('one PriorityClass per chart, cluster-scoped (no namespace), below every workload and above the autoscaler cutoff', () => {
      const c = chart();
      pool(c, autoscaledAgent(c));
      const worker = queueWorker(c);
      new WarmPool(c, 'WorkerPool', { agent: worker, placeholders: WarmPoolSize.replicas(1) });
      const classes = findAll(synth(c), 'PriorityClass');
      expect(classes).toEqual([
        {
          apiVersion: 'scheduling.k8s.io/v1',
          kind: 'PriorityClass',
          metadata: { name: 'cdk-agents-warm-pool', labels: { 'app.kubernetes.io/part-of': 'cdk-agents', 'app.kubernetes.io/managed-by': 'cdk8s' } },
          value: -1,
          globalDefault: false,
          preemptionPolicy: 'Never',
          description: 'cdk-agents WarmPool placeholders: room for agent pods, preempted by any of them.',
        },
      ]);
      // A chart without a namespace has nothing to remove.
      const bare = bareChart();
      pool(bare, autoscaledAgent(bare));
      expect(findAll(synth(bare), 'PriorityClass')[0].metadata.namespace).toBeUndefined();
    });

    test('an existing PriorityClass instead', () => {
      const c = chart();
      const p = pool(c, autoscaledAgent(c), { placeholderPriorityClass: 'placeholders' });
      expect(p.priorityClass).toBeUndefined();
      const objects = synth(c);
      expect(findAll(objects, 'PriorityClass')).toEqual([]);
      expect(find(objects, 'Deployment', 'support-chat-warm-pool').spec.template.spec.priorityClassName).toBe('placeholders');
    });
  });

  describe('image pre-pull', () => {
    test("a DaemonSet pulling each image of the agent pod with a static busybox copied in, then pausing", () => {
      const c = chart();
      const p = pool(c, autoscaledAgent(c), { placeholders: undefined, readyBuffer: undefined });
      expect(p.node.defaultChild).toBe(p.prePullDaemonSet);
      const ds = find(synth(c), 'DaemonSet', 'support-chat-image-prepull');
      const pod = ds.spec.template.spec;
      expect(pod.initContainers.map((i: Json) => [i.name, i.image, i.command])).toEqual([
        ['helper', 'docker.io/library/busybox:1.36.1-musl', ['/bin/busybox', 'cp', '/bin/busybox', '/cdk-agents-prepull/busybox']],
        ['pull-cdk-agents-sidecar', 'docker.io/library/node:20.20.2-bookworm-slim', ['/cdk-agents-prepull/busybox', 'true']],
        ['pull-agent', 'ghcr.io/acme/support:1.4.2', ['/cdk-agents-prepull/busybox', 'true']],
      ]);
      for (const init of pod.initContainers) {
        expect(init.volumeMounts).toEqual([{ name: 'prepull-helper', mountPath: '/cdk-agents-prepull' }]);
        expect(init.workingDir).toBe('/');
        expect(init.resources.limits.memory).toBe('32Mi');
      }
      expect(pod.containers.map((x: Json) => [x.name, x.image, x.command])).toEqual([['pause', 'registry.k8s.io/pause:3.9', undefined]]);
      expect(pod.volumes).toEqual([{ name: 'prepull-helper', emptyDir: { sizeLimit: '8Mi' } }]);
      expect(ds.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%' } });
    });

    test('the images as the agent runs them: a prebuilt runtime image, a native sidecar, each once', () => {
      const c = chart();
      const worker = queueWorker(c, {
        mode: WorkerMode.JOB,
        sidecarLifecycle: SidecarLifecycle.NATIVE,
        sidecar: SidecarDelivery.image('ghcr.io/acme/cdk-agents-sidecar:0.1.0'),
        imagePullSecrets: ['ghcr'],
      });
      pool(c, worker, { readyBuffer: undefined });
      const pod = find(synth(c), 'DaemonSet', 'research-worker-image-prepull').spec.template.spec;
      expect(pod.initContainers.map((i: Json) => i.image)).toEqual([
        'docker.io/library/busybox:1.36.1-musl',
        'ghcr.io/acme/cdk-agents-sidecar:0.1.0',
        'ghcr.io/acme/support:1.4.2',
      ]);
      expect(pod.imagePullSecrets).toEqual([{ name: 'ghcr' }]);
    });

    test('other pinned pause and helper images, e.g. from a mirror', () => {
      const c = chart();
      pool(c, autoscaledAgent(c), { pauseImage: 'mirror.acme.example/pause:3.9', prePullHelperImage: 'mirror.acme.example/busybox:1.36.1-musl' });
      const objects = synth(c);
      expect(find(objects, 'Deployment', 'support-chat-warm-pool').spec.template.spec.containers[0].image).toBe('mirror.acme.example/pause:3.9');
      expect(find(objects, 'DaemonSet', 'support-chat-image-prepull').spec.template.spec.initContainers[0].image).toBe('mirror.acme.example/busybox:1.36.1-musl');
    });
  });

  test('a default-deny NetworkPolicy selects the placeholder and pre-pull pods, and nothing else', () => {
    const c = chart();
    pool(c, autoscaledAgent(c));
    const objects = synth(c);
    const policy = find(objects, 'NetworkPolicy', 'support-chat-warm-pool').spec;
    expect(policy.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.ingress).toBeUndefined();
    expect(policy.egress).toBeUndefined();
    const selects = (labels: Record<string, string>) =>
      Object.entries(policy.podSelector.matchLabels).every(([k, v]) => labels[k] === v) &&
      policy.podSelector.matchExpressions.every((e: Json) => e.operator === 'In' && e.values.includes(labels[e.key]));
    expect(selects(find(objects, 'Deployment', 'support-chat-warm-pool').spec.template.metadata.labels)).toBe(true);
    expect(selects(find(objects, 'DaemonSet', 'support-chat-image-prepull').spec.template.metadata.labels)).toBe(true);
    expect(selects(find(objects, 'Deployment', 'support-chat').spec.template.metadata.labels)).toBe(false);
  });

  test('the pool only raises the floor: with readyBuffer alone it emits no object', () => {
    const c = chart();
    const p = pool(c, autoscaledAgent(c), { placeholders: undefined, prePull: false });
    expect(p.node.children.filter((child) => ApiObject.isApiObject(child))).toEqual([]);
    expect(p.networkPolicy).toBeUndefined();
  });

  test('a pool in another chart follows the agent into its namespace', () => {
    const app = Testing.app();
    const agents = new Chart(app, 'agents', { namespace: 'agents', disableResourceNameHashes: true });
    const warm = new Chart(app, 'warm', { namespace: 'elsewhere', disableResourceNameHashes: true });
    pool(warm, autoscaledAgent(agents));
    for (const o of Testing.synth(warm) as Json[]) if (o.kind !== 'PriorityClass') expect(o.metadata.namespace).toBe('agents');
  });
});
