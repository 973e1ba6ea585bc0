/**
 * QueueWorker and WorkerQueue validation: every mistake fails at construction with a message
 * naming the prop and the fix; a worker's budgets go through AgentService's store check.
 */
import { Duration } from 'cdk8s';
import {
  Budget,
  BudgetStore,
  QueueWorker,
  RateLimit,
  SecretKey,
  WorkerMode,
  WorkerQueue,
  type AgentServiceProps,
  type QueueWorkerProps,
} from '../../lib';
import { chart, minimalProps, synth } from './helpers';

const QUEUE_URL = 'https://sqs.eu-central-1.amazonaws.com/123456789012/agents-research-worker';

function props(overrides: Partial<QueueWorkerProps> = {}): QueueWorkerProps {
  return { ...minimalProps(), queue: WorkerQueue.sqs({ queueUrl: QUEUE_URL }), maxTaskDuration: Duration.minutes(10), ...overrides } as QueueWorkerProps;
}

const build = (overrides: Partial<QueueWorkerProps> = {}) => new QueueWorker(chart(), 'ResearchWorker', props(overrides));
/** Props a TypeScript caller cannot pass, as a JavaScript caller could. */
const untyped = (extra: Record<string, unknown>) => build(extra as Partial<QueueWorkerProps>);

describe('QueueWorker errors', () => {
  test('a queue worker without a queue', () => {
    expect(() => untyped({ queue: undefined })).toThrow(
      "QueueWorker 'research-worker': 'queue' is required: WorkerQueue.sqs({ queueUrl, roleArn }), WorkerQueue.redisList({ url, listName }) or WorkerQueue.redisStream({ url, stream, consumerGroup }). An agent without a queue is an AgentService.",
    );
  });

  test('autoscaling and a queue: KEDA owns the HPA', () => {
    const autoscaling: AgentServiceProps['autoscaling'] = { minReplicas: 1, maxReplicas: 4 };
    expect(() => untyped({ autoscaling })).toThrow(
      "QueueWorker 'research-worker': 'autoscaling' and 'queue' are both set, but KEDA scales a queue worker on its backlog and owns its HorizontalPodAutoscaler; a second one would fight it. Remove 'autoscaling' and use 'minReplicas', 'maxReplicas' and 'messagesPerPod'.",
    );
  });

  test('replicas', () => {
    expect(() => untyped({ replicas: 3 })).toThrow("QueueWorker 'research-worker': 'replicas' does not apply: KEDA sets a queue worker's replica count from its backlog. Use 'minReplicas' and 'maxReplicas'.");
  });

  test('maxTaskDuration is required and at least a second', () => {
    expect(() => untyped({ maxTaskDuration: undefined })).toThrow(/'maxTaskDuration' is required: the longest a task may take/);
    expect(() => build({ maxTaskDuration: Duration.millis(0) })).toThrow("QueueWorker 'research-worker': 'maxTaskDuration' must be at least 1 second.");
  });

  test('the name in messages is the prop when given', () => {
    expect(() => untyped({ name: 'deep-research', queue: undefined })).toThrow(/^QueueWorker 'deep-research': 'queue' is required/);
  });

  describe('replica bounds', () => {
    test.each([
      [{ minReplicas: -1 }, "'minReplicas' (-1) must be a whole number >= 0."],
      [{ minReplicas: 1.5 }, "'minReplicas' (1.5) must be a whole number >= 0."],
      [{ maxReplicas: 0 }, "'maxReplicas' (0) must be a whole number >= 1."],
      [{ minReplicas: 5, maxReplicas: 3 }, "'maxReplicas' (3) must be >= 'minReplicas' (5). Raise maxReplicas or lower minReplicas."],
      [{ messagesPerPod: 0 }, "'messagesPerPod' (0) must be a whole number >= 1."],
      [{ activationBacklog: -2 }, "'activationBacklog' (-2) must be a whole number >= 0."],
      [{ pollingInterval: Duration.millis(500) }, "'pollingInterval' (0.5s) must be a whole number of seconds >= 1."],
      [{ scaleDownStabilization: Duration.hours(2) }, "'scaleDownStabilization' (7200s) must be a whole number of seconds from 0 to 3600 (the HPA's limit)."],
    ])('%o', (overrides, message) => {
      expect(() => build(overrides as Partial<QueueWorkerProps>)).toThrow(`QueueWorker 'research-worker': ${message}`);
    });
  });

  describe('mode', () => {
    test('minReplicas in Job mode', () => {
      expect(() => build({ mode: WorkerMode.JOB, minReplicas: 1 })).toThrow(
        "QueueWorker 'research-worker': 'minReplicas' does not apply in WorkerMode.JOB: a Job starts per task and exits when done. For faster starts use a WarmPool's placeholders and prePull, or WorkerMode.DEPLOYMENT.",
      );
    });

    test('scaleDownStabilization in Job mode, jobRetries in Deployment mode', () => {
      expect(() => build({ mode: WorkerMode.JOB, scaleDownStabilization: Duration.minutes(1) })).toThrow(
        "QueueWorker 'research-worker': 'scaleDownStabilization' does not apply in WorkerMode.JOB: nothing scales a Job in.",
      );
      expect(() => build({ jobRetries: 2 })).toThrow("QueueWorker 'research-worker': 'jobRetries' applies to WorkerMode.JOB only.");
      expect(() => build({ mode: WorkerMode.JOB, jobRetries: -1 })).toThrow("QueueWorker 'research-worker': 'jobRetries' (-1) must be a whole number >= 0.");
    });
  });

  test('a grace period shorter than the task plus the drain', () => {
    expect(() => build({ terminationGracePeriod: Duration.minutes(5) })).toThrow(
      "QueueWorker 'research-worker': 'terminationGracePeriod' (300s) must exceed 'maxTaskDuration' plus 'drainTimeout' (600s + 25s), or in-flight calls are killed mid-drain. Raise it to 635s or more.",
    );
    expect(() => build({ terminationGracePeriod: Duration.minutes(15) })).not.toThrow();
  });

  describe("the worker's env", () => {
    test.each([
      ['env', { env: { AGENT_QUEUE_URL: 'https://elsewhere' } }, 'AGENT_QUEUE_URL'],
      ['secretEnv', { secretEnv: { AGENT_WORKER_TOKEN: SecretKey.fromSecret('s', 'k') } }, 'AGENT_WORKER_TOKEN'],
    ])('in %s', (_, overrides, name) => {
      expect(() => build(overrides as Partial<QueueWorkerProps>)).toThrow(
        `QueueWorker 'research-worker': env '${name}' is set by the worker (names starting with AGENT_QUEUE_ or AGENT_WORKER_ describe its queue and lifecycle); rename it.`,
      );
    });

    test('added later', () => {
      const w = build();
      expect(() => w.addEnv('AGENT_WORKER_DONE_FILE', '/tmp/x')).toThrow(/env 'AGENT_WORKER_DONE_FILE' is set by the worker/);
      expect(() => w.addSecretEnv('AGENT_QUEUE_REDIS_PASSWORD', SecretKey.fromSecret('s', 'k'))).toThrow(/env 'AGENT_QUEUE_REDIS_PASSWORD' is set by the worker/);
      expect(() => w.addEnv('AGENT_QUEUE', 'x')).not.toThrow();
    });
  });

  describe('budgets go through the same store check as any agent', () => {
    test('a shared budget on up to 3 replicas without Redis', () => {
      expect(() => build({ maxReplicas: 3, budgets: [Budget.usdPerDay(20)] })).toThrow(
        "QueueWorker 'research-worker': the budget 20 usd per day (agent) is shared by every pod, but with up to 3 replicas and the memory store each pod keeps its own count, so the real cap is 3x. Set 'store: BudgetStore.redis({ url, passwordSecret })' to share it, or 'acceptPerReplicaBudgets: true' if per-pod limits are intended.",
      );
    });

    test('a rate limit added later', () => {
      const w = build({ maxReplicas: 3 });
      expect(() => w.addRateLimit(RateLimit.requestsPerMinute(10).forUser())).toThrow(/the rate limit .* is shared by every pod, but with up to 3 replicas/);
    });

    test('in Job mode even one Job at a time: every task starts a new pod with empty counters', () => {
      expect(() => build({ mode: WorkerMode.JOB, maxReplicas: 1, budgets: [Budget.usdPerDay(5).forUser()] })).toThrow(
        "QueueWorker 'research-worker': the budget 5 usd per day (user) is shared by every task, but each task runs in a new pod whose memory store starts at zero, so the cap would hold per task only. Set 'store: BudgetStore.redis({ url, passwordSecret })' to share it, or 'acceptPerReplicaBudgets: true' if a per-task limit is intended.",
      );
    });

    test('fine with Redis, with one replica, per run, or accepted', () => {
      const redis = BudgetStore.redis({ url: 'redis://redis.data.svc:6379' });
      expect(() => build({ maxReplicas: 5, budgets: [Budget.usdPerDay(20)], store: redis })).not.toThrow();
      expect(() => build({ mode: WorkerMode.JOB, budgets: [Budget.usdPerDay(20)], store: redis })).not.toThrow();
      expect(() => build({ minReplicas: 0, maxReplicas: 1, budgets: [Budget.usdPerDay(20)] })).not.toThrow();
      expect(() => build({ mode: WorkerMode.JOB, budgets: [Budget.usdPerDay(2).forRun()] })).not.toThrow();
      expect(() => build({ mode: WorkerMode.JOB, budgets: [Budget.usdPerDay(20)], acceptPerReplicaBudgets: true })).not.toThrow();
    });
  });

  test('a Redis password from AWS Secrets Manager needs secretStore', () => {
    const queue = WorkerQueue.redisList({ url: 'redis://queue.data.svc:6379', listName: 'tasks', passwordSecret: SecretKey.fromAwsSecretsManager('prod/queue', 'password') });
    expect(() => build({ queue })).toThrow(/'secretEnv.AGENT_QUEUE_REDIS_PASSWORD' comes from AWS Secrets Manager \(prod\/queue\): set 'secretStore'/);
  });

  test('an agent without LLM access still fails at synth, as any AgentService', () => {
    const c = chart();
    new QueueWorker(c, 'ResearchWorker', { ...props(), providers: undefined });
    expect(() => synth(c)).toThrow(/QueueWorker 'research-worker': set 'gateway' \(or call gateway.connect\(agent\)\) or 'providers'/);
  });
});

describe('WorkerQueue errors', () => {
  describe('sqs', () => {
    test.each([
      ['not a URL', /'queueUrl' \('not a URL'\) must be the queue's URL, https:\/\/sqs.REGION.amazonaws.com\/ACCOUNT\/NAME\./],
      ['http://sqs.eu-central-1.amazonaws.com/123456789012/tasks', /must be the queue's URL.*a 12-digit account id and the queue name/],
      ['https://sqs.eu-central-1.amazonaws.com/tasks', /a 12-digit account id and the queue name/],
      ['https://sqs.eu-central-1.amazonaws.com/123456789012/tasks?x=1', /a 12-digit account id and the queue name/],
      ['https://sqs.eu-central-1.amazonaws.com/123456789012/bad.name', /a 12-digit account id and the queue name/],
    ])('queueUrl %s', (queueUrl, message) => {
      expect(() => WorkerQueue.sqs({ queueUrl })).toThrow(message);
    });

    test('a region the URL does not confirm', () => {
      expect(() => WorkerQueue.sqs({ queueUrl: QUEUE_URL, region: 'eu-west-1' })).toThrow(
        "WorkerQueue.sqs: 'region' (eu-west-1) is not the queue URL's region (eu-central-1); remove 'region' or fix the URL.",
      );
      expect(() => WorkerQueue.sqs({ queueUrl: 'https://queue.internal.example/123456789012/tasks' })).toThrow(
        "WorkerQueue.sqs: set 'region': it cannot be read from the queue URL's host (queue.internal.example).",
      );
      expect(() => WorkerQueue.sqs({ queueUrl: 'https://queue.internal.example/123456789012/tasks', region: 'Frankfurt' })).toThrow(
        "WorkerQueue.sqs: 'region' ('Frankfurt') is not an AWS region like eu-central-1.",
      );
    });

    test.each(['roleArn', 'scalerRoleArn'])('%s must be a role ARN', (prop) => {
      expect(() => WorkerQueue.sqs({ queueUrl: QUEUE_URL, [prop]: 'arn:aws:iam::123456789012:user/alice' })).toThrow(
        `WorkerQueue.sqs: '${prop}' ('arn:aws:iam::123456789012:user/alice') must be an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME.`,
      );
    });

    test('FIFO queues, paths in role names and other partitions are fine', () => {
      expect(() =>
        WorkerQueue.sqs({ queueUrl: 'https://sqs.cn-north-1.amazonaws.com.cn/123456789012/tasks.fifo', roleArn: 'arn:aws-cn:iam::123456789012:role/agents/research' }),
      ).not.toThrow();
    });
  });

  describe('redis', () => {
    test.each([
      ['redis://user:secret@queue:6379', /'url' \('redis:\/\/user:secret@queue:6379'\) must be redis:\/\/HOST:PORT\[\/DB\] or rediss:\/\/HOST:PORT\[\/DB\], without credentials/],
      ['http://queue:6379', /must be redis:\/\/HOST:PORT/],
      ['redis://queue:70000', /the Redis port \(70000\) must be a port number from 1 to 65535/],
    ])('url %s', (url, message) => {
      expect(() => WorkerQueue.redisList({ url, listName: 'tasks' })).toThrow(message);
    });

    test('list, stream and group names', () => {
      expect(() => WorkerQueue.redisList({ url: 'redis://queue:6379', listName: '' })).toThrow("WorkerQueue.redisList: 'listName' ('') must be a Redis key (no spaces).");
      expect(() => WorkerQueue.redisStream({ url: 'redis://queue:6379', stream: 'a b', consumerGroup: 'g' })).toThrow(
        "WorkerQueue.redisStream: 'stream' ('a b') must be a Redis key (no spaces).",
      );
      expect(() => WorkerQueue.redisStream({ url: 'redis://queue:6379', stream: 's', consumerGroup: '' })).toThrow(
        "WorkerQueue.redisStream: 'consumerGroup' ('') must be a consumer group name (no spaces).",
      );
    });
  });
});
