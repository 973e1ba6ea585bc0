/**
 * QueueWorker output: snapshots of both modes, every combination of mode, sidecar lifecycle and
 * queue valid and restricted, the KEDA objects field by field, the pod changes each mode makes,
 * and the lifecycle scripts run as written in the manifests: the preStop hook that keeps the
 * sidecar serving until the agent is done, and the supervisor that lets a Job complete.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApiObject, Duration, JsonPatch } from 'cdk8s';
import { NetworkPolicyIpBlock, Pods } from 'cdk8s-plus-28';
import {
  AgentTool,
  Budget,
  BudgetStore,
  K8sRules,
  LlmGateway,
  LlmProvider,
  QueueWorker,
  RuleLevel,
  SIDECAR_NODE_FLAGS,
  SecretKey,
  SecretStoreRef,
  SidecarDelivery,
  SidecarLifecycle,
  WORKER_DONE_FILE,
  WorkerMode,
  WorkerQueue,
  type QueueWorkerProps,
} from '../../lib';
import { checkReadOnlyRoot, checkRestricted, validateManifests } from '../support/k8s-validate';
import { chart, env, find, findAll, minimalProps, sidecarJson, synth, type Json } from './helpers';

const QUEUE_URL = 'https://sqs.eu-central-1.amazonaws.com/123456789012/agents-research-worker';
const ROLE_ARN = 'arn:aws:iam::123456789012:role/agents-research-worker';
const KEDA_ROLE_ARN = 'arn:aws:iam::123456789012:role/agents-keda';
const ROOT = path.join(__dirname, '..', '..');

const sqs = () => WorkerQueue.sqs({ queueUrl: QUEUE_URL, roleArn: ROLE_ARN });
const redisList = () =>
  WorkerQueue.redisList({ url: 'redis://queue.data.svc.cluster.local:6379/2', listName: 'research-tasks', passwordSecret: SecretKey.fromSecret('queue-redis', 'password') });
const redisStream = () =>
  WorkerQueue.redisStream({ url: 'rediss://queue.data.svc.cluster.local:6380', stream: 'research', consumerGroup: 'workers', username: 'worker' });

function workerProps(overrides: Partial<QueueWorkerProps> = {}): QueueWorkerProps {
  return { ...minimalProps(), queue: sqs(), maxTaskDuration: Duration.minutes(10), ...overrides } as QueueWorkerProps;
}

function worker(overrides: Partial<QueueWorkerProps> = {}) {
  const c = chart();
  const w = new QueueWorker(c, 'ResearchWorker', workerProps(overrides));
  return { c, w, objects: synth(c) };
}

/** The pod template of the worker's Deployment or ScaledJob. */
function podOf(objects: Json[]): Json {
  const scaledJob = objects.find((o) => o.kind === 'ScaledJob');
  return scaledJob ? scaledJob.spec.jobTargetRef.template : find(objects, 'Deployment', 'research-worker').spec.template;
}

function containerOf(pod: Json, name: string): Json {
  const found = [...(pod.spec.initContainers ?? []), ...pod.spec.containers].find((c: Json) => c.name === name);
  if (!found) throw new Error(`no container ${name}`);
  return found;
}

describe('QueueWorker', () => {
  test('snapshot: Deployment mode on SQS', () => {
    expect(worker().objects).toMatchSnapshot();
  });

  test('snapshot: Job mode on a Redis stream', () => {
    expect(worker({ mode: WorkerMode.JOB, queue: redisStream(), maxReplicas: 4 }).objects).toMatchSnapshot();
  });

  describe.each([
    ['Deployment', WorkerMode.DEPLOYMENT],
    ['Job', WorkerMode.JOB],
  ])('%s mode', (_, mode) => {
    test.each([
      ['done file', SidecarLifecycle.DONE_FILE],
      ['native sidecar', SidecarLifecycle.NATIVE],
    ])('with a %s, every queue: valid against 1.28 and KEDA, restricted, read-only roots, no rule-pack errors', (__, sidecarLifecycle) => {
      const queues = [
        () => sqs(),
        (peer: Pods) => WorkerQueue.redisList({ url: 'redis://queue.data.svc:6379/2', listName: 'tasks', passwordSecret: SecretKey.fromSecret('queue-redis', 'password'), peer }),
        (peer: Pods) => WorkerQueue.redisStream({ url: 'rediss://queue.data.svc:6380', stream: 'research', consumerGroup: 'workers', username: 'worker', peer }),
      ];
      for (const queue of queues) {
        const c = chart();
        const redis = Pods.select(c, 'Redis', { labels: { 'app.kubernetes.io/name': 'redis' } });
        const store = BudgetStore.redis({ url: 'redis://redis.data.svc:6379', peer: redis });
        new QueueWorker(c, 'ResearchWorker', workerProps({ mode, sidecarLifecycle, queue: queue(redis), store, budgets: [Budget.usdPerDay(10).forUser()] }));
        const objects = synth(c);
        expect(validateManifests(objects)).toEqual([]);
        expect(checkRestricted(objects)).toEqual([]);
        expect(checkReadOnlyRoot(objects)).toEqual([]);
        expect(K8sRules.check(c).filter((f) => f.level === RuleLevel.ERROR)).toEqual([]);
      }
    });
  });

  describe('Deployment mode', () => {
    test('KEDA owns the replica count: a ScaledObject on the Deployment, no HPA, no replicas', () => {
      const { w, objects } = worker({ minReplicas: 2, maxReplicas: 8, pollingInterval: Duration.seconds(15), scaleDownStabilization: Duration.minutes(10) });
      expect(findAll(objects, 'HorizontalPodAutoscaler')).toEqual([]);
      expect(find(objects, 'Deployment', 'research-worker').spec.replicas).toBeUndefined();
      expect(w.node.defaultChild).toBe(w.deployment);
      const spec = find(objects, 'ScaledObject', 'research-worker').spec;
      expect(spec).toEqual({
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'research-worker' },
        minReplicaCount: 2,
        maxReplicaCount: 8,
        pollingInterval: 15,
        cooldownPeriod: 600,
        advanced: { horizontalPodAutoscalerConfig: { name: 'research-worker', behavior: { scaleDown: { stabilizationWindowSeconds: 600 } } } },
        triggers: [
          {
            type: 'aws-sqs-queue',
            name: 'queue',
            metadata: { queueURL: QUEUE_URL, awsRegion: 'eu-central-1', queueLength: '1', activationQueueLength: '0', scaleOnInFlight: 'true' },
            authenticationRef: { name: 'research-worker' },
          },
        ],
      });
      // At least 2 pods: a PodDisruptionBudget, as for any agent.
      expect(find(objects, 'PodDisruptionBudget', 'research-worker').spec.maxUnavailable).toBe(1);
    });

    test('scale to zero: minReplicas 0, an activation backlog, no PodDisruptionBudget', () => {
      const { objects } = worker({ minReplicas: 0, activationBacklog: 3, messagesPerPod: 2 });
      const spec = find(objects, 'ScaledObject', 'research-worker').spec;
      expect(spec.minReplicaCount).toBe(0);
      expect(spec.triggers[0].metadata).toMatchObject({ queueLength: '2', activationQueueLength: '3' });
      expect(findAll(objects, 'PodDisruptionBudget')).toEqual([]);
    });

    test('a pod scaled in mid-task has maxTaskDuration to finish, while its sidecar waits for the done file', () => {
      const { objects } = worker({ maxTaskDuration: Duration.minutes(15), drainTimeout: Duration.seconds(20) });
      const pod = podOf(objects);
      // The task, then the sidecar's drain, then 10 s for the kubelet.
      expect(pod.spec.terminationGracePeriodSeconds).toBe(900 + 20 + 10);
      const sidecar = containerOf(pod, 'cdk-agents-sidecar');
      const agent = containerOf(pod, 'agent');
      expect(sidecar.lifecycle.postStart).toBeDefined();
      expect(sidecar.lifecycle.preStop.exec.command.slice(0, 2)).toEqual(['node', '-e']);
      expect(sidecar.lifecycle.preStop.exec.command[2]).toContain(`e=Date.now()+${900 * 1000}`);
      expect(sidecar.lifecycle.preStop.exec.command[2]).toContain(JSON.stringify(WORKER_DONE_FILE));
      // The runtime itself runs as in any agent pod.
      expect(sidecar.command).toEqual(['node', ...SIDECAR_NODE_FLAGS, '/opt/cdk-agents/sidecar.js']);
      const lifecycle = pod.spec.volumes.find((v: Json) => v.name === 'worker-lifecycle');
      expect(lifecycle.emptyDir).toEqual({ sizeLimit: '1Mi' });
      for (const c of [sidecar, agent]) expect(c.volumeMounts).toContainEqual({ name: 'worker-lifecycle', mountPath: '/var/run/cdk-agents-worker' });
      expect(env(agent, 'AGENT_WORKER_DONE_FILE')?.value).toBe(WORKER_DONE_FILE);
      expect(env(agent, 'AGENT_WORKER_MAX_TASK_SECONDS')?.value).toBe('900');
      // Deployment pods may be moved by the node autoscaler: they finish their task first.
      expect(pod.metadata.annotations['cluster-autoscaler.kubernetes.io/safe-to-evict']).toBeUndefined();
      expect(pod.spec.topologySpreadConstraints).toHaveLength(2);
    });
  });

  describe('Job mode', () => {
    test('a ScaledJob is the default child, with the same restricted pod as a Job that runs to completion', () => {
      const { w, objects } = worker({ mode: WorkerMode.JOB, maxReplicas: 6, jobRetries: 1 });
      expect(findAll(objects, 'Deployment')).toEqual([]);
      expect(findAll(objects, 'ScaledObject')).toEqual([]);
      expect(findAll(objects, 'PodDisruptionBudget')).toEqual([]);
      expect(w.node.defaultChild).toBe(w.scaledJob);
      expect(() => w.deployment).toThrow("QueueWorker 'research-worker' has no Deployment: its pods run as Jobs of a KEDA ScaledJob.");
      const spec = find(objects, 'ScaledJob', 'research-worker').spec;
      const grace = spec.jobTargetRef.template.spec.terminationGracePeriodSeconds;
      expect(grace).toBe(600 + 25 + 10);
      expect(spec).toMatchObject({
        maxReplicaCount: 6,
        pollingInterval: 30,
        successfulJobsHistoryLimit: 5,
        failedJobsHistoryLimit: 10,
        // Updating the ScaledJob never deletes running Jobs.
        rollout: { strategy: 'gradual' },
        // SQS counts in-flight messages: running Jobs are deducted.
        scalingStrategy: { strategy: 'default' },
        jobTargetRef: { parallelism: 1, completions: 1, backoffLimit: 1, activeDeadlineSeconds: 300 + grace },
      });
      expect(spec.minReplicaCount).toBeUndefined();
      const pod = spec.jobTargetRef.template;
      expect(pod.spec.restartPolicy).toBe('Never');
      expect(pod.spec.topologySpreadConstraints).toBeUndefined();
      expect(pod.metadata.annotations).toMatchObject({ 'cluster-autoscaler.kubernetes.io/safe-to-evict': 'false', 'karpenter.sh/do-not-disrupt': 'true' });
      expect(pod.metadata.labels).toMatchObject({ 'app.kubernetes.io/name': 'research-worker', 'app.kubernetes.io/component': 'agent' });
    });

    test('the rendered Job pod keeps every quantity, port and probe of the agent pod (the bindings render them)', () => {
      const job = podOf(worker({ mode: WorkerMode.JOB }).objects);
      const deployment = podOf(worker().objects);
      for (const name of ['agent', 'cdk-agents-sidecar']) {
        const a = containerOf(job, name);
        const b = containerOf(deployment, name);
        expect(a.resources).toEqual(b.resources);
        expect(a.resources.requests.memory).toBeDefined();
        expect(a.ports).toEqual(b.ports);
        expect(a.readinessProbe).toEqual(b.readinessProbe);
      }
      const jobEnv = containerOf(job, 'agent').env;
      expect(jobEnv).toEqual(containerOf(deployment, 'agent').env.map((e: Json) => (e.name === 'AGENT_WORKER_MODE' ? { ...e, value: 'job' } : e)));
      expect(job.spec.volumes).toEqual(deployment.spec.volumes);
    });

    test('the runtime runs under a supervisor that stops it when the agent is done, so the Job completes', () => {
      const sidecar = containerOf(podOf(worker({ mode: WorkerMode.JOB }).objects), 'cdk-agents-sidecar');
      expect(sidecar.command.slice(0, 2)).toEqual(['node', '-e']);
      expect(sidecar.command.slice(3)).toEqual(['--', ...SIDECAR_NODE_FLAGS, '/opt/cdk-agents/sidecar.js']);
      expect(sidecar.args).toEqual(['--config', '/etc/cdk-agents/config/sidecar.json']);
      // A prebuilt runtime image has the bundle at the same path (the Dockerfile): same supervisor.
      const prebuilt = containerOf(
        podOf(worker({ mode: WorkerMode.JOB, sidecar: SidecarDelivery.image('ghcr.io/acme/cdk-agents-sidecar:0.1.0') }).objects),
        'cdk-agents-sidecar',
      );
      expect(prebuilt.command).toEqual(sidecar.command);
    });

    test('popped list items are not counted, so the accurate strategy; and shared budgets need Redis (each Job starts at zero)', () => {
      const { objects } = worker({
        mode: WorkerMode.JOB,
        queue: redisList(),
        budgets: [Budget.usdPerDay(20), Budget.usdPerDay(2).forUser()],
        store: BudgetStore.redis({ url: 'redis://redis.data.svc:6379' }),
      });
      expect(find(objects, 'ScaledJob', 'research-worker').spec.scalingStrategy).toEqual({ strategy: 'accurate' });
    });
  });

  describe('native sidecar (Kubernetes 1.29+)', () => {
    test.each([WorkerMode.DEPLOYMENT, WorkerMode.JOB])('%s: the sidecar is a restartable init container; no done file, no supervisor', (mode) => {
      const pod = podOf(worker({ mode, sidecarLifecycle: SidecarLifecycle.NATIVE }).objects);
      expect(pod.spec.containers.map((c: Json) => c.name)).toEqual(['agent']);
      expect(pod.spec.initContainers.map((c: Json) => [c.name, c.restartPolicy])).toEqual([['cdk-agents-sidecar', 'Always']]);
      const sidecar = pod.spec.initContainers[0];
      expect(sidecar.command).toEqual(['node', ...SIDECAR_NODE_FLAGS, '/opt/cdk-agents/sidecar.js']);
      expect(sidecar.lifecycle.preStop).toBeUndefined();
      expect(sidecar.lifecycle.postStart).toBeDefined();
      expect(sidecar.readinessProbe).toBeDefined();
      expect(env(pod.spec.containers[0], 'AGENT_WORKER_DONE_FILE')).toBeUndefined();
      expect(pod.spec.volumes.map((v: Json) => v.name)).not.toContain('worker-lifecycle');
    });
  });

  describe('queues', () => {
    test('SQS: IRSA on the ServiceAccount, KEDA through pod identity aws, HTTPS to public addresses only', () => {
      const { objects } = worker({ queue: WorkerQueue.sqs({ queueUrl: QUEUE_URL, roleArn: ROLE_ARN, scalerRoleArn: KEDA_ROLE_ARN, countInFlight: false }) });
      const account = find(objects, 'ServiceAccount', 'research-worker');
      expect(account.metadata.annotations).toEqual({ 'eks.amazonaws.com/role-arn': ROLE_ARN, 'eks.amazonaws.com/sts-regional-endpoints': 'true' });
      expect(account.automountServiceAccountToken).toBe(false);
      expect(find(objects, 'TriggerAuthentication', 'research-worker').spec).toEqual({ podIdentity: { provider: 'aws', roleArn: KEDA_ROLE_ARN } });
      expect(find(objects, 'ScaledObject', 'research-worker').spec.triggers[0].metadata.scaleOnInFlight).toBe('false');
      const egress = find(objects, 'NetworkPolicy', 'research-worker').spec.egress;
      const https = egress.find((r: Json) => r.ports[0].port === 443);
      expect(https.to).toEqual([
        { ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8', '100.64.0.0/10', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16'] } },
      ]);
      const agent = containerOf(podOf(objects), 'agent');
      expect(env(agent, 'AGENT_QUEUE_TYPE')?.value).toBe('aws-sqs');
      expect(env(agent, 'AGENT_QUEUE_URL')?.value).toBe(QUEUE_URL);
      expect(env(agent, 'AGENT_QUEUE_REGION')?.value).toBe('eu-central-1');
    });

    test('SQS without a role: no annotation, KEDA with its own identity; an SQS VPC endpoint as the egress peer', () => {
      const c = chart();
      const endpoint = NetworkPolicyIpBlock.ipv4(c, 'SqsEndpoint', '10.20.0.0/24');
      // Through a gateway, the worker needs no internet for LLMs: what port 443 opens is the queue's alone.
      const gateway = new LlmGateway(c, 'LlmGateway', { providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') })] });
      new QueueWorker(c, 'ResearchWorker', { ...workerProps({ queue: WorkerQueue.sqs({ queueUrl: QUEUE_URL, peer: endpoint }) }), providers: undefined, gateway });
      const objects = synth(c);
      expect(find(objects, 'ServiceAccount', 'research-worker').metadata.annotations).toBeUndefined();
      expect(find(objects, 'TriggerAuthentication', 'research-worker').spec).toEqual({ podIdentity: { provider: 'aws' } });
      const egress = find(objects, 'NetworkPolicy', 'research-worker').spec.egress;
      expect(egress.filter((r: Json) => r.ports[0].port === 443).map((r: Json) => r.to)).toEqual([[{ ipBlock: { cidr: '10.20.0.0/24' } }]]);
    });

    test('the region can be given for a URL that does not say it', () => {
      const queue = WorkerQueue.sqs({ queueUrl: 'https://vpce-0a1b2c3d.sqs.eu-central-1.vpce.amazonaws.com/123456789012/tasks', region: 'eu-central-1' });
      expect(queue._trigger(1, 0).metadata.awsRegion).toBe('eu-central-1');
      expect(queue.name).toBe('tasks');
    });

    test('Redis list: address, list and database for KEDA; the password from its Secret; the agent gets URL, list and password', () => {
      const { objects } = worker({ queue: redisList(), messagesPerPod: 3 });
      expect(find(objects, 'ScaledObject', 'research-worker').spec.triggers[0]).toEqual({
        type: 'redis',
        name: 'queue',
        metadata: { address: 'queue.data.svc.cluster.local:6379', databaseIndex: '2', listName: 'research-tasks', listLength: '3', activationListLength: '0' },
        authenticationRef: { name: 'research-worker' },
      });
      expect(find(objects, 'TriggerAuthentication', 'research-worker').spec).toEqual({
        secretTargetRef: [{ parameter: 'password', name: 'queue-redis', key: 'password' }],
      });
      const agent = containerOf(podOf(objects), 'agent');
      expect(env(agent, 'AGENT_QUEUE_REDIS_URL')?.value).toBe('redis://queue.data.svc.cluster.local:6379/2');
      expect(env(agent, 'AGENT_QUEUE_LIST')?.value).toBe('research-tasks');
      expect(env(agent, 'AGENT_QUEUE_REDIS_PASSWORD')?.valueFrom).toEqual({ secretKeyRef: { name: 'queue-redis', key: 'password' } });
      // The password is the agent's, never the sidecar's.
      const sidecar = containerOf(podOf(objects), 'cdk-agents-sidecar');
      expect(JSON.stringify(sidecar)).not.toContain('queue-redis');
      // No peer: the port to any pod and any address, as for the budget store.
      const egress = find(objects, 'NetworkPolicy', 'research-worker').spec.egress.filter((r: Json) => r.ports[0].port === 6379);
      expect(egress.map((r: Json) => r.to)).toEqual([[{ namespaceSelector: {}, podSelector: {} }], [{ ipBlock: { cidr: '0.0.0.0/0' } }]]);
    });

    test('Redis password from AWS Secrets Manager: synced into the agent Secret, which KEDA reads too', () => {
      const { objects } = worker({
        secretStore: SecretStoreRef.clusterSecretStore('aws-secrets-manager'),
        queue: WorkerQueue.redisList({ url: 'redis://queue.data.svc:6379', listName: 'tasks', passwordSecret: SecretKey.fromAwsSecretsManager('prod/queue', 'password') }),
      });
      const external = find(objects, 'ExternalSecret', 'research-worker-agent-secrets');
      expect(external.spec.data).toEqual([{ secretKey: 'AGENT_QUEUE_REDIS_PASSWORD', remoteRef: { key: 'prod/queue', property: 'password' } }]);
      expect(find(objects, 'TriggerAuthentication', 'research-worker').spec.secretTargetRef).toEqual([
        { parameter: 'password', name: 'research-worker-agent-secrets', key: 'AGENT_QUEUE_REDIS_PASSWORD' },
      ]);
    });

    test('Redis stream with TLS and a user: the group lag for KEDA, the username read from the agent env, egress to the declared peer', () => {
      const c = chart();
      const redis = Pods.select(c, 'QueueRedis', { labels: { 'app.kubernetes.io/name': 'queue-redis' } });
      const queue = WorkerQueue.redisStream({ url: 'rediss://queue.data.svc:6380', stream: 'research', consumerGroup: 'workers', username: 'worker', peer: redis });
      new QueueWorker(c, 'ResearchWorker', workerProps({ queue, activationBacklog: 2 }));
      const objects = synth(c);
      expect(find(objects, 'ScaledObject', 'research-worker').spec.triggers[0]).toMatchObject({
        type: 'redis-streams',
        metadata: { address: 'queue.data.svc:6380', enableTLS: 'true', stream: 'research', consumerGroup: 'workers', lagCount: '1', activationLagCount: '2' },
      });
      expect(find(objects, 'TriggerAuthentication', 'research-worker').spec).toEqual({
        env: [{ parameter: 'username', name: 'AGENT_QUEUE_REDIS_USERNAME', containerName: 'agent' }],
      });
      const agent = containerOf(podOf(objects), 'agent');
      expect(env(agent, 'AGENT_QUEUE_STREAM')?.value).toBe('research');
      expect(env(agent, 'AGENT_QUEUE_CONSUMER_GROUP')?.value).toBe('workers');
      expect(env(agent, 'AGENT_QUEUE_REDIS_USERNAME')?.value).toBe('worker');
      const egress = find(objects, 'NetworkPolicy', 'research-worker').spec.egress.filter((r: Json) => r.ports[0].port === 6380);
      expect(egress.map((r: Json) => r.to)).toEqual([[{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'queue-redis' } } }]]);
    });

    test('a Redis queue without credentials needs no TriggerAuthentication', () => {
      const { w, objects } = worker({ queue: WorkerQueue.redisList({ url: 'redis://queue.data.svc:6379', listName: 'tasks' }) });
      expect(w.triggerAuthentication).toBeUndefined();
      expect(findAll(objects, 'TriggerAuthentication')).toEqual([]);
      expect(find(objects, 'ScaledObject', 'research-worker').spec.triggers[0].authenticationRef).toBeUndefined();
    });
  });

  test('it is an AgentService: gateway.connect(), addTool() and addEnv() after construction reach the Job template', () => {
    const c = chart();
    const gateway = new LlmGateway(c, 'LlmGateway', { providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') })] });
    const w = new QueueWorker(c, 'ResearchWorker', { ...workerProps({ mode: WorkerMode.JOB }), providers: undefined, gateway });
    w.addTool(AgentTool.http({ name: 'search', description: 'Search the catalogue.', parameters: { type: 'object' }, endpoint: 'https://search.example.com/q' }));
    w.addEnv('LOG_LEVEL', 'debug');
    const objects = synth(c);
    const config = sidecarJson(objects, 'research-worker-sidecar-config');
    expect(config.providers[0]).toMatchObject({ name: 'llm-gateway', type: 'cdk-agents-gateway' });
    expect(config.tools.map((t: Json) => t.name)).toEqual(['search']);
    const gatewayConfig = sidecarJson(objects, 'llm-gateway-config');
    expect(gatewayConfig.gateway.agents.map((a: Json) => a.name)).toEqual(['research-worker']);
    const pod = podOf(objects);
    expect(env(containerOf(pod, 'agent'), 'LOG_LEVEL')?.value).toBe('debug');
    // A config change rolls the pods: new Jobs get the new checksum.
    const before = pod.metadata.annotations['cdk-agents.dev/config-checksum'];
    w.addEnv('REGION_HINT', 'eu');
    w.addBudget(Budget.usdPerDay(1).forRun());
    expect(podOf(synth(c)).metadata.annotations['cdk-agents.dev/config-checksum']).not.toBe(before);
  });

  test('the ScaledObject and ScaledJob are reachable and patchable', () => {
    const a = worker();
    ApiObject.of(a.w.scaledObject!).addJsonPatch(JsonPatch.add('/spec/fallback', { failureThreshold: 3, replicas: 2 }));
    expect(find(synth(a.c), 'ScaledObject', 'research-worker').spec.fallback).toEqual({ failureThreshold: 3, replicas: 2 });
    const b = worker({ mode: WorkerMode.JOB });
    ApiObject.of(b.w.scaledJob!).addJsonPatch(JsonPatch.add('/spec/jobTargetRef/ttlSecondsAfterFinished', 3600));
    expect(find(synth(b.c), 'ScaledJob', 'research-worker').spec.jobTargetRef.ttlSecondsAfterFinished).toBe(3600);
  });
});

describe('worker lifecycle scripts, run as written in the manifests', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-lifecycle-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Runs a `node -e` command of the manifests here, with the done file moved to `done`. */
  function run(command: string[], done: string, extra: string[] = []) {
    expect(command.slice(0, 2)).toEqual(['node', '-e']);
    const child = spawn(process.execPath, ['-e', command[2].replace(JSON.stringify(WORKER_DONE_FILE), JSON.stringify(done)), ...command.slice(3), ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exit = new Promise<{ code: number | null; ms: number }>((resolve) => {
      const started = Date.now();
      child.once('exit', (code) => resolve({ code, ms: Date.now() - started }));
    });
    return { child, exit, output: () => output };
  }

  const preStop = (seconds: number) =>
    containerOf(podOf(worker({ maxTaskDuration: Duration.seconds(seconds) }).objects), 'cdk-agents-sidecar').lifecycle.preStop.exec.command as string[];
  const supervisor = () => containerOf(podOf(worker({ mode: WorkerMode.JOB }).objects), 'cdk-agents-sidecar').command as string[];

  test('preStop returns as soon as the agent writes the done file', async () => {
    const done = path.join(dir, 'done');
    const hook = run(preStop(30), done);
    await new Promise((r) => setTimeout(r, 800));
    expect(hook.child.exitCode).toBeNull();
    fs.writeFileSync(done, '');
    const { code, ms } = await hook.exit;
    expect(code).toBe(0);
    expect(ms).toBeLessThan(5_000);
  });

  test('preStop ignores a done file left by an earlier crash, and gives up after maxTaskDuration', async () => {
    const done = path.join(dir, 'done');
    fs.writeFileSync(done, '');
    const old = new Date(Date.now() - 60_000);
    fs.utimesSync(done, old, old);
    const { code, ms } = await run(preStop(2), done).exit;
    expect(code).toBe(0);
    expect(ms).toBeGreaterThanOrEqual(1_900);
  });

  test('the supervisor passes its arguments to the runtime, stops it when the done file appears, and exits with its status', async () => {
    const done = path.join(dir, 'done');
    const child = path.join(dir, 'runtime.js');
    fs.writeFileSync(child, "console.log('args', process.argv.slice(2).join(' '));process.on('SIGTERM',()=>{console.log('draining');setTimeout(()=>process.exit(3),100)});setInterval(()=>{},1000);");
    // The manifest's bundle path, replaced by the stand-in runtime; the flags stay.
    const command = supervisor().map((a) => (a === '/opt/cdk-agents/sidecar.js' ? child : a));
    const job = run(command, done, ['--config', '/etc/x.json']);
    await new Promise((r) => setTimeout(r, 800));
    expect(job.child.exitCode).toBeNull();
    fs.writeFileSync(done, '');
    expect((await job.exit).code).toBe(3);
    expect(job.output()).toContain('args --config /etc/x.json');
    expect(job.output()).toContain('draining');
  });

  test('the supervisor forwards the kubelet SIGTERM to the runtime', async () => {
    const child = path.join(dir, 'runtime.js');
    fs.writeFileSync(child, "process.on('SIGTERM',()=>process.exit(0));setInterval(()=>{},1000);");
    const job = run(supervisor().map((a) => (a === '/opt/cdk-agents/sidecar.js' ? child : a)), path.join(dir, 'done'));
    await new Promise((r) => setTimeout(r, 500));
    job.child.kill('SIGTERM');
    expect((await job.exit).code).toBe(0);
  });

  test('a Job completes: the real runtime under the supervisor drains and exits 0 once the agent is done', async () => {
    const bundle = path.join(ROOT, 'dist', 'sidecar.js');
    expect(fs.existsSync(bundle)).toBe(true); // npm run build
    const done = path.join(dir, 'done');
    const command = supervisor().map((a) => (a === '/opt/cdk-agents/sidecar.js' ? bundle : a));
    const job = run(command, done, ['--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    const deadline = Date.now() + 10_000;
    while (!job.output().includes('"listening"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(job.output()).toContain('"listening"');
    fs.writeFileSync(done, '');
    expect((await job.exit).code).toBe(0);
    expect(job.output()).toContain('"draining"');
  }, 20_000);
});
