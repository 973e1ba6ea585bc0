/**
 * WarmPool validation: a pool larger than the agent can use, a buffer on an agent that cannot
 * hold one, and bad sizes or images fail at construction, naming the props and the fix.
 */
import { Duration } from 'cdk8s';
import { AgentService, QueueWorker, WarmPool, WarmPoolSize, WorkerMode, WorkerQueue, type AgentServiceProps, type QueueWorkerProps } from '../../lib';
import { chart, minimalProps } from './helpers';

const agent = (overrides: Partial<AgentServiceProps> = {}) => new AgentService(chart(), 'SupportChat', minimalProps(overrides));
const worker = (overrides: Partial<QueueWorkerProps> = {}) =>
  new QueueWorker(chart(), 'ResearchWorker', {
    ...minimalProps(),
    queue: WorkerQueue.sqs({ queueUrl: 'https://sqs.eu-central-1.amazonaws.com/123456789012/tasks' }),
    maxTaskDuration: Duration.minutes(10),
    ...overrides,
  } as QueueWorkerProps);
const warm = (a: AgentService, props: Omit<ConstructorParameters<typeof WarmPool>[2], 'agent'>) => new WarmPool(a.node.scope!, 'WarmPool', { agent: a, ...props });

describe('WarmPool errors', () => {
  test('a buffer larger than the autoscaler allows names minReplicas and maxReplicas', () => {
    const a = agent({ autoscaling: { minReplicas: 2, maxReplicas: 4 } });
    expect(() => warm(a, { readyBuffer: WarmPoolSize.replicas(3) })).toThrow(
      "WarmPool of 'support-chat': 'readyBuffer' (3) plus the agent's 'autoscaling.minReplicas' (2) is 5, above its 'autoscaling.maxReplicas' (4). Lower readyBuffer or raise autoscaling.maxReplicas.",
    );
    expect(() => warm(agent({ autoscaling: { minReplicas: 2, maxReplicas: 4 } }), { readyBuffer: WarmPoolSize.replicas(2) })).not.toThrow();
  });

  test("a buffer at a worker's maxReplicas leaves no pod for the backlog", () => {
    expect(() => warm(worker({ maxReplicas: 3 }), { readyBuffer: WarmPoolSize.replicas(3) })).toThrow(
      "WarmPool of 'research-worker': 'readyBuffer' (3) must be below QueueWorker 'research-worker''s 'maxReplicas' (3): KEDA runs the backlog's pods plus the buffer, capped at maxReplicas, so 3 would leave no pod for the backlog. Lower readyBuffer or raise maxReplicas.",
    );
    expect(() => warm(worker({ maxReplicas: 3 }), { readyBuffer: WarmPoolSize.replicas(2) })).not.toThrow();
  });

  test('a buffer for an agent with a fixed replica count', () => {
    expect(() => warm(agent({ replicas: 3 }), { readyBuffer: WarmPoolSize.replicas(1) })).toThrow(
      "WarmPool of 'support-chat': 'readyBuffer' needs an autoscaled agent, but AgentService 'support-chat' runs a fixed 'replicas' (3). Raise 'replicas' instead, or give the agent 'autoscaling'.",
    );
  });

  test('a buffer for a Job worker', () => {
    expect(() => warm(worker({ mode: WorkerMode.JOB }), { readyBuffer: WarmPoolSize.replicas(1) })).toThrow(
      "WarmPool of 'research-worker': 'readyBuffer' does not apply to QueueWorker 'research-worker' in WorkerMode.JOB: a Job starts per task, so there is no replica to keep ready. Use 'placeholders' (nodes stay provisioned) and 'prePull' (images stay cached), or WorkerMode.DEPLOYMENT.",
    );
    expect(() => warm(worker({ mode: WorkerMode.JOB }), { placeholders: WarmPoolSize.replicas(2) })).not.toThrow();
  });

  test('two buffers for one agent', () => {
    const a = agent({ autoscaling: { minReplicas: 1, maxReplicas: 10 } });
    warm(a, { readyBuffer: WarmPoolSize.replicas(1) });
    expect(() => new WarmPool(a.node.scope!, 'Second', { agent: a, readyBuffer: WarmPoolSize.replicas(1) })).toThrow(
      "WarmPool of 'support-chat': AgentService 'support-chat' already has a ready buffer from another WarmPool; give it one WarmPool.",
    );
    const w = worker();
    warm(w, { readyBuffer: WarmPoolSize.replicas(1) });
    expect(() => new WarmPool(w.node.scope!, 'Second', { agent: w, readyBuffer: WarmPoolSize.replicas(1) })).toThrow(/already has a ready buffer from another WarmPool/);
  });

  test("more placeholders than the agent's max replicas", () => {
    expect(() => warm(agent({ autoscaling: { minReplicas: 1, maxReplicas: 4 } }), { placeholders: WarmPoolSize.replicas(5) })).toThrow(
      "WarmPool of 'support-chat': 'placeholders' (5) is more than the agent's max replicas (4): it could never use that room. Lower placeholders or raise the agent's max replicas.",
    );
    expect(() => warm(worker({ maxReplicas: 2 }), { placeholders: WarmPoolSize.replicas(3) })).toThrow(/'placeholders' \(3\) is more than the agent's max replicas \(2\)/);
    expect(() => warm(agent({ replicas: 2 }), { placeholders: WarmPoolSize.replicas(2) })).not.toThrow();
  });

  test('nothing to keep warm', () => {
    expect(() => warm(agent(), { prePull: false })).toThrow("WarmPool of 'support-chat': nothing to keep warm: set 'readyBuffer', 'placeholders', or leave 'prePull' on.");
  });

  test.each([
    [() => WarmPoolSize.replicas(0), 'WarmPoolSize.replicas(0): the count must be a whole number >= 1.'],
    [() => WarmPoolSize.replicas(1.5), 'WarmPoolSize.replicas(1.5): the count must be a whole number >= 1.'],
    [() => WarmPoolSize.percentOfMaxReplicas(0), 'WarmPoolSize.percentOfMaxReplicas(0): the percentage must be a whole number from 1 to 100.'],
    [() => WarmPoolSize.percentOfMaxReplicas(150), 'WarmPoolSize.percentOfMaxReplicas(150): the percentage must be a whole number from 1 to 100.'],
  ])('size %#', (make, message) => {
    expect(make).toThrow(message);
  });

  test('unpinned images and a bad PriorityClass name', () => {
    expect(() => warm(agent(), { pauseImage: 'registry.k8s.io/pause' })).toThrow(/^'pauseImage' \(registry.k8s.io\/pause\) has no tag/);
    expect(() => warm(agent(), { prePullHelperImage: 'busybox:latest' })).toThrow(/^'prePullHelperImage' \(busybox:latest\) uses 'latest'/);
    expect(() => warm(agent(), { placeholders: WarmPoolSize.replicas(1), placeholderPriorityClass: 'Low Priority' })).toThrow(
      "WarmPool of 'support-chat': 'placeholderPriorityClass' ('Low Priority') is not a valid PriorityClass name.",
    );
  });
});
