/**
 * QueueWorker: a background agent that consumes a queue (SQS, a Redis list or a Redis stream)
 * and scales with KEDA on its backlog. It is an AgentService (same pod, sidecar, config, budgets,
 * gateway connection and NetworkPolicy); KEDA owns its replica count, so it has no HPA of its own.
 *
 * Two modes: a Deployment scaled by a ScaledObject (pods take task after task; scale-in waits
 * for the current task), or a ScaledJob (one Job per message or batch: nothing ever scales a
 * running task in).
 */
import { Duration, Lazy, Size } from 'cdk8s';
import type * as kplus from 'cdk8s-plus-28';
import * as k8s from 'cdk8s-plus-28/lib/imports/k8s';
import type { Construct } from 'constructs';
import {
  ScaledJob,
  ScaledJobSpecRolloutStrategy,
  ScaledJobSpecScalingStrategyStrategy,
  type ScaledJobSpec,
  type ScaledJobSpecJobTargetRefTemplate,
} from '../imports/keda.sh_scaledjobs';
import { ScaledObject, ScaledObjectSpecAdvancedScalingModifiersMetricType, type ScaledObjectSpec } from '../imports/keda.sh_scaledobjects';
import { TriggerAuthentication, TriggerAuthenticationSpecPodIdentityProvider, type TriggerAuthenticationSpec } from '../imports/keda.sh_triggerauthentications';
import { SIDECAR_NODE_FLAGS } from '../spec';
import { AWS_REGION } from '../spec/platform';
import { AGENT_CONTAINER_NAME, AgentService, SIDECAR_CONTAINER_NAME, type AgentServiceProps, type AgentWorkload } from './agent-service';
import { AwsRole, bindAwsRole, isRoleArn } from './aws-role';
import { commonLabels, nameFromId } from './names';
import { checkPort } from './network';
import { tmpVolume } from './pod';
import { RUNTIME_BUNDLE_DIR, RUNTIME_BUNDLE_KEY } from './runtime-container';
import type { SecretKey } from './secrets';
import { superviseUntilAgentExit, waitForAgentExit, WORKER_DONE_FILE, WORKER_LIFECYCLE_DIR, WORKER_LIFECYCLE_VOLUME } from './worker-lifecycle';

/** Env names the worker sets on the agent container start with one of these. */
export const WORKER_ENV_PREFIXES: readonly string[] = ['AGENT_QUEUE_', 'AGENT_WORKER_'];
/** Seconds a Job may take to be scheduled (a new node included), pull its images and start, on top of its task. */
export const JOB_START_ALLOWANCE_SECONDS = 300;
/** The trigger's name: the scalingModifiers formula of a WarmPool's ready buffer refers to it. */
const TRIGGER_NAME = 'queue';

/** How the worker's pods run. */
export enum WorkerMode {
  /**
   * A Deployment that KEDA scales (ScaledObject): warm pods take task after task. Scale-in sends
   * SIGTERM to a pod that may be mid-task; the agent finishes the task first (the grace period is
   * sized to `maxTaskDuration`) while its sidecar keeps serving.
   */
  DEPLOYMENT = 'deployment',
  /**
   * A Job per message, or per `messagesPerPod` messages (ScaledJob): the pod exits when its work
   * is done and nothing scales it in. Pays a pod start per task; for long or uneven tasks.
   */
  JOB = 'job',
}

/** How the sidecar learns that the agent is done, so it stays up exactly as long as the agent needs it. */
export enum SidecarLifecycle {
  /**
   * Kubernetes 1.28: the sidecar is an ordinary container. The agent creates or touches the file
   * in `AGENT_WORKER_DONE_FILE` when it exits; until then the sidecar keeps serving (a preStop hook
   * waits for it, at most `maxTaskDuration`), and in a Job a small supervisor then stops the
   * runtime so the pod completes.
   */
  DONE_FILE = 'done-file',
  /**
   * A native sidecar (an init container with `restartPolicy: Always`): the kubelet starts it
   * first and stops it after the agent exits. Needs Kubernetes 1.29 or later (the SidecarContainers
   * feature, on by default from 1.29); the agent does nothing.
   */
  NATIVE = 'native',
}

/** The kind of queue. */
export enum WorkerQueueType {
  SQS = 'aws-sqs',
  REDIS_LIST = 'redis-list',
  REDIS_STREAM = 'redis-stream',
}

/** Options for `WorkerQueue.sqs`. */
export interface SqsQueueOptions {
  /** The queue's URL: `https://sqs.eu-central-1.amazonaws.com/123456789012/research-tasks`. */
  readonly queueUrl: string;
  /**
   * The queue's region.
   * @default - from the queue URL's host
   */
  readonly region?: string;
  /**
   * The IAM role the worker's pods assume (IRSA: the ServiceAccount gets `eks.amazonaws.com/role-arn`)
   * to receive and delete messages. KEDA assumes it too, to read the queue's length, unless
   * `scalerRoleArn` is set: its trust policy must then also trust KEDA's operator.
   * @default - no annotation: the pods get AWS credentials some other way, and KEDA reads the queue with its operator's own role
   */
  readonly roleArn?: string;
  /**
   * A narrower role for KEDA alone (sqs:GetQueueAttributes on the queue).
   * @default - `roleArn`
   */
  readonly scalerRoleArn?: string;
  /**
   * Count messages received but not yet deleted (in flight) as backlog, so busy pods are never
   * taken for spare ones. Turn off only if the agent deletes a message before working on it.
   * @default true
   */
  readonly countInFlight?: boolean;
  /**
   * The SQS endpoint for the egress NetworkPolicy, for an interface VPC endpoint at private
   * addresses (e.g. a NetworkPolicyIpBlock of its subnets).
   * @default - HTTPS to public addresses (the regional endpoint)
   */
  readonly peer?: kplus.INetworkPolicyPeer;
}

/** Options for a Redis queue. */
export interface RedisQueueOptions {
  /** redis://HOST:PORT[/DB], or rediss:// for TLS; no credentials in the URL. */
  readonly url: string;
  /**
   * AUTH password or token: the agent container gets it in `AGENT_QUEUE_REDIS_PASSWORD`, KEDA through a TriggerAuthentication.
   * @default - no AUTH
   */
  readonly passwordSecret?: SecretKey;
  /**
   * ACL user (Redis 6+).
   * @default - the default user
   */
  readonly username?: string;
  /**
   * The Redis pods (or a NetworkPolicyIpBlock for a managed Redis), for the egress NetworkPolicy.
   * @default - the URL's port to any pod and any address
   */
  readonly peer?: kplus.INetworkPolicyPeer;
}

/** Options for `WorkerQueue.redisList`. */
export interface RedisListOptions extends RedisQueueOptions {
  /** The list the producers push tasks to. */
  readonly listName: string;
}

/** Options for `WorkerQueue.redisStream`. */
export interface RedisStreamOptions extends RedisQueueOptions {
  /** The stream. */
  readonly stream: string;
  /** The consumer group the workers read with (KEDA scales on its lag: Redis 7 or later). */
  readonly consumerGroup: string;
}

interface SqsSpec {
  readonly url: string;
  readonly account: string;
  readonly region: string;
  readonly roleArn?: string;
  readonly scalerRoleArn?: string;
  readonly countInFlight: boolean;
}

interface RedisSpec {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly database?: number;
  readonly tls: boolean;
  readonly username?: string;
  readonly passwordSecret?: SecretKey;
  /** The list, or the stream. */
  readonly key: string;
  readonly consumerGroup?: string;
}

const SQS_HOST = /^sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/;
const SQS_PATH = /^\/(\d{12})\/([A-Za-z0-9_-]{1,80}(\.fifo)?)$/;
const REDIS_URL = /^(rediss?):\/\/([^/\s:@[\]]+|\[[0-9a-fA-F:.]+\])(?::(\d+))?(?:\/(\d{1,2}))?$/;
const REDIS_KEY = /^\S{1,512}$/;

/** The queue a QueueWorker consumes: `WorkerQueue.sqs({...})`, `.redisList({...})`, `.redisStream({...})`. */
export class WorkerQueue {
  /**
   * An SQS queue. The worker's egress opens HTTPS to AWS (and STS for IRSA); KEDA reads its
   * length (visible plus in-flight messages) through a TriggerAuthentication with pod identity
   * `aws` and the role.
   */
  public static sqs(options: SqsQueueOptions): WorkerQueue {
    const what = 'WorkerQueue.sqs';
    let url: URL;
    try {
      url = new URL(options.queueUrl);
    } catch {
      throw new Error(`${what}: 'queueUrl' ('${options.queueUrl}') must be the queue's URL, https://sqs.REGION.amazonaws.com/ACCOUNT/NAME.`);
    }
    const path = SQS_PATH.exec(url.pathname);
    if (url.protocol !== 'https:' || !path || url.search || url.hash || url.username) {
      throw new Error(`${what}: 'queueUrl' ('${options.queueUrl}') must be the queue's URL, https://sqs.REGION.amazonaws.com/ACCOUNT/NAME (a 12-digit account id and the queue name).`);
    }
    const fromHost = SQS_HOST.exec(url.hostname)?.[1];
    const region = options.region ?? fromHost;
    if (!region) throw new Error(`${what}: set 'region': it cannot be read from the queue URL's host (${url.hostname}).`);
    if (!AWS_REGION.test(region)) throw new Error(`${what}: 'region' ('${region}') is not an AWS region like eu-central-1.`);
    if (fromHost && options.region && fromHost !== options.region) {
      throw new Error(`${what}: 'region' (${options.region}) is not the queue URL's region (${fromHost}); remove 'region' or fix the URL.`);
    }
    for (const prop of ['roleArn', 'scalerRoleArn'] as const) {
      const arn = options[prop];
      if (arn !== undefined && !isRoleArn(arn)) throw new Error(`${what}: '${prop}' ('${arn}') must be an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME.`);
    }
    const spec: SqsSpec = {
      url: options.queueUrl,
      account: path[1],
      region,
      roleArn: options.roleArn,
      scalerRoleArn: options.scalerRoleArn,
      countInFlight: options.countInFlight ?? true,
    };
    return new WorkerQueue(WorkerQueueType.SQS, path[2], options.peer, spec, undefined);
  }

  /**
   * A Redis list the producers push to (LPUSH/RPUSH). KEDA scales on its length, which does not
   * include tasks already popped: consume with LMOVE into a processing list if a crash must not lose one.
   */
  public static redisList(options: RedisListOptions): WorkerQueue {
    const spec = redisSpec('WorkerQueue.redisList', options, 'listName', options.listName);
    return new WorkerQueue(WorkerQueueType.REDIS_LIST, options.listName, options.peer, undefined, spec);
  }

  /**
   * A Redis stream read by a consumer group (XREADGROUP; XACK when done). KEDA scales on the
   * group's lag, entries not yet delivered (Redis 7 or later).
   */
  public static redisStream(options: RedisStreamOptions): WorkerQueue {
    const spec = redisSpec('WorkerQueue.redisStream', options, 'stream', options.stream);
    if (!options.consumerGroup || !REDIS_KEY.test(options.consumerGroup)) {
      throw new Error(`WorkerQueue.redisStream: 'consumerGroup' ('${options.consumerGroup}') must be a consumer group name (no spaces).`);
    }
    return new WorkerQueue(WorkerQueueType.REDIS_STREAM, options.stream, options.peer, undefined, { ...spec, consumerGroup: options.consumerGroup });
  }

  private constructor(
    /** The kind of queue. */
    public readonly type: WorkerQueueType,
    /** The queue's name: the SQS queue, the Redis list or stream. */
    public readonly name: string,
    /** The peer for the egress NetworkPolicy, if given. */
    public readonly peer: kplus.INetworkPolicyPeer | undefined,
    private readonly sqsSpec: SqsSpec | undefined,
    private readonly redisSpec: RedisSpec | undefined,
  ) {}

  /** The IAM role of the worker's pods (SQS with `roleArn`). */
  public get roleArn(): string | undefined {
    return this.sqsSpec?.roleArn;
  }

  /** The role KEDA assumes to read the queue's length (SQS): `scalerRoleArn`, else `roleArn`. */
  public get scalerRoleArn(): string | undefined {
    return this.sqsSpec?.scalerRoleArn ?? this.sqsSpec?.roleArn;
  }

  /** The SQS queue's URL. */
  public get queueUrl(): string | undefined {
    return this.sqsSpec?.url;
  }

  /** The SQS queue's region. */
  public get region(): string | undefined {
    return this.sqsSpec?.region;
  }

  /** Whether KEDA's count includes tasks being worked on (then a ScaledJob deducts running Jobs from it). */
  public get countsInFlight(): boolean {
    return this.sqsSpec?.countInFlight ?? false;
  }

  /** @internal The egress the worker needs: `port` to `peer`, else to what the queue is. */
  public _egress(): { readonly port: number; readonly internet: boolean } {
    return this.sqsSpec ? { port: 443, internet: true } : { port: this.redisSpec!.port, internet: false };
  }

  /** @internal The redis AUTH secret, for the agent's env and KEDA. */
  public get _passwordSecret(): SecretKey | undefined {
    return this.redisSpec?.passwordSecret;
  }

  /** @internal The agent container's env describing the queue (never a secret). */
  public _agentEnv(): Array<[string, string]> {
    if (this.sqsSpec) {
      return [
        ['AGENT_QUEUE_TYPE', this.type],
        ['AGENT_QUEUE_URL', this.sqsSpec.url],
        ['AGENT_QUEUE_REGION', this.sqsSpec.region],
      ];
    }
    const r = this.redisSpec!;
    const env: Array<[string, string]> = [
      ['AGENT_QUEUE_TYPE', this.type],
      ['AGENT_QUEUE_REDIS_URL', r.url],
    ];
    if (r.username) env.push(['AGENT_QUEUE_REDIS_USERNAME', r.username]);
    if (this.type === WorkerQueueType.REDIS_LIST) env.push(['AGENT_QUEUE_LIST', r.key]);
    else env.push(['AGENT_QUEUE_STREAM', r.key], ['AGENT_QUEUE_CONSUMER_GROUP', r.consumerGroup!]);
    return env;
  }

  /** @internal The KEDA trigger: type and metadata, for `messagesPerPod` and the activation backlog. */
  public _trigger(messagesPerPod: number, activationBacklog: number): { readonly type: string; readonly metadata: Record<string, string> } {
    if (this.sqsSpec) {
      const s = this.sqsSpec;
      return {
        type: 'aws-sqs-queue',
        metadata: {
          queueURL: s.url,
          awsRegion: s.region,
          queueLength: String(messagesPerPod),
          activationQueueLength: String(activationBacklog),
          scaleOnInFlight: String(s.countInFlight),
        },
      };
    }
    const r = this.redisSpec!;
    const common: Record<string, string> = { address: `${r.host}:${r.port}` };
    if (r.database !== undefined) common.databaseIndex = String(r.database);
    if (r.tls) common.enableTLS = 'true';
    if (this.type === WorkerQueueType.REDIS_LIST) {
      return { type: 'redis', metadata: { ...common, listName: r.key, listLength: String(messagesPerPod), activationListLength: String(activationBacklog) } };
    }
    return {
      type: 'redis-streams',
      metadata: { ...common, stream: r.key, consumerGroup: r.consumerGroup!, lagCount: String(messagesPerPod), activationLagCount: String(activationBacklog) },
    };
  }

  /** @internal The TriggerAuthentication spec, given where the password is; undefined when KEDA needs none. */
  public _authentication(password: { secretName: string; key: string } | undefined): TriggerAuthenticationSpec | undefined {
    if (this.sqsSpec) {
      return { podIdentity: { provider: TriggerAuthenticationSpecPodIdentityProvider.AWS, roleArn: this.scalerRoleArn } };
    }
    const r = this.redisSpec!;
    if (!password && !r.username) return undefined;
    return {
      // KEDA reads the username from the agent container's env (it is not a secret), the password from its Secret.
      env: r.username ? [{ parameter: 'username', name: 'AGENT_QUEUE_REDIS_USERNAME', containerName: AGENT_CONTAINER_NAME }] : undefined,
      secretTargetRef: password ? [{ parameter: 'password', name: password.secretName, key: password.key }] : undefined,
    };
  }
}

function redisSpec(what: string, options: RedisQueueOptions, keyProp: string, key: string): RedisSpec {
  const match = REDIS_URL.exec(options.url ?? '');
  if (!match) {
    throw new Error(
      `${what}: 'url' ('${options.url}') must be redis://HOST:PORT[/DB] or rediss://HOST:PORT[/DB], without credentials (use username and passwordSecret).`,
    );
  }
  const port = match[3] ? Number(match[3]) : 6379;
  checkPort(`${what}: the Redis port`, port);
  if (!key || !REDIS_KEY.test(key)) throw new Error(`${what}: '${keyProp}' ('${key}') must be a Redis key (no spaces).`);
  return {
    url: options.url,
    host: match[2],
    port,
    database: match[4] !== undefined ? Number(match[4]) : undefined,
    tls: match[1] === 'rediss',
    username: options.username,
    passwordSecret: options.passwordSecret,
    key,
  };
}

/** Props of a QueueWorker: an AgentService's, without `replicas` and `autoscaling` (KEDA owns the count). */
export interface QueueWorkerProps extends Omit<AgentServiceProps, 'replicas' | 'autoscaling'> {
  /** The queue: `WorkerQueue.sqs({ queueUrl, roleArn })`, `WorkerQueue.redisList(...)`, `WorkerQueue.redisStream(...)`. */
  readonly queue: WorkerQueue;
  /**
   * The longest a task may take. Sizes the grace period (a pod scaled in finishes its task) and a
   * Job's deadline; the agent gets it in `AGENT_WORKER_MAX_TASK_SECONDS`.
   */
  readonly maxTaskDuration: Duration;
  /**
   * A Deployment scaled by KEDA, or a Job per task.
   * @default WorkerMode.DEPLOYMENT
   */
  readonly mode?: WorkerMode;
  /**
   * Fewest pods (Deployment mode); 0 scales to zero when the queue is empty (the first task then
   * waits for a pod to start).
   * @default 1
   */
  readonly minReplicas?: number;
  /**
   * Most pods: replicas in Deployment mode, Jobs running at once in Job mode.
   * @default 10
   */
  readonly maxReplicas?: number;
  /**
   * Tasks one pod is expected to work through at a time: KEDA runs ceil(backlog / messagesPerPod)
   * pods. In Job mode, the messages each Job takes before it exits.
   * @default 1
   */
  readonly messagesPerPod?: number;
  /**
   * The backlog above which a worker at zero pods (or a ScaledJob) starts work.
   * @default 0
   */
  readonly activationBacklog?: number;
  /**
   * How often KEDA reads the queue.
   * @default Duration.seconds(30)
   */
  readonly pollingInterval?: Duration;
  /**
   * Deployment mode: how long the backlog must stay lower before pods are removed (the HPA's
   * scale-down stabilization window, and KEDA's cooldown before scaling to zero); 0 to 1 hour.
   * @default Duration.minutes(5)
   */
  readonly scaleDownStabilization?: Duration;
  /**
   * How the sidecar learns that the agent is done.
   * @default SidecarLifecycle.DONE_FILE (Kubernetes 1.28)
   */
  readonly sidecarLifecycle?: SidecarLifecycle;
  /**
   * Job mode: retries of a failed Job's pod. A failed task's message goes back to the queue anyway
   * (SQS visibility timeout, or unacknowledged stream entry), so a retry here runs it twice.
   * @default 0
   */
  readonly jobRetries?: number;
}

interface WorkerSettings {
  readonly owner: string;
  readonly mode: WorkerMode;
  readonly lifecycle: SidecarLifecycle;
  readonly taskSeconds: number;
  readonly minReplicas: number;
  readonly maxReplicas: number;
  readonly messagesPerPod: number;
  readonly activationBacklog: number;
  readonly pollingSeconds: number;
  readonly stabilizationSeconds: number;
  readonly jobRetries: number;
}

function wholeNumber(owner: string, prop: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new Error(`${owner}: '${prop}' (${value}) must be a whole number >= ${min}.`);
}

/** Checks the worker's own props; AgentService checks the rest. */
function workerSettings(id: string, props: QueueWorkerProps): WorkerSettings {
  const owner = `QueueWorker '${props.name ?? nameFromId(id)}'`;
  const loose = props as QueueWorkerProps & Pick<AgentServiceProps, 'replicas' | 'autoscaling'>;
  if (!(props.queue instanceof WorkerQueue)) {
    throw new Error(
      `${owner}: 'queue' is required: WorkerQueue.sqs({ queueUrl, roleArn }), WorkerQueue.redisList({ url, listName }) or WorkerQueue.redisStream({ url, stream, consumerGroup }). ` +
        `An agent without a queue is an AgentService.`,
    );
  }
  if (loose.autoscaling !== undefined) {
    throw new Error(
      `${owner}: 'autoscaling' and 'queue' are both set, but KEDA scales a queue worker on its backlog and owns its HorizontalPodAutoscaler; a second one would fight it. ` +
        `Remove 'autoscaling' and use 'minReplicas', 'maxReplicas' and 'messagesPerPod'.`,
    );
  }
  if (loose.replicas !== undefined) {
    throw new Error(`${owner}: 'replicas' does not apply: KEDA sets a queue worker's replica count from its backlog. Use 'minReplicas' and 'maxReplicas'.`);
  }
  if (!(props.maxTaskDuration instanceof Duration)) {
    throw new Error(`${owner}: 'maxTaskDuration' is required: the longest a task may take (e.g. Duration.minutes(15)); it sizes the grace period and a Job's deadline.`);
  }
  const taskSeconds = Math.ceil(props.maxTaskDuration.toSeconds({ integral: false }));
  if (taskSeconds < 1) throw new Error(`${owner}: 'maxTaskDuration' must be at least 1 second.`);
  const mode = props.mode ?? WorkerMode.DEPLOYMENT;
  if (mode === WorkerMode.JOB) {
    if (props.minReplicas !== undefined) {
      throw new Error(
        `${owner}: 'minReplicas' does not apply in WorkerMode.JOB: a Job starts per task and exits when done. ` +
          `For faster starts use a WarmPool's placeholders and prePull, or WorkerMode.DEPLOYMENT.`,
      );
    }
    if (props.scaleDownStabilization !== undefined) throw new Error(`${owner}: 'scaleDownStabilization' does not apply in WorkerMode.JOB: nothing scales a Job in.`);
  } else if (props.jobRetries !== undefined) {
    throw new Error(`${owner}: 'jobRetries' applies to WorkerMode.JOB only.`);
  }
  const minReplicas = mode === WorkerMode.JOB ? 0 : (props.minReplicas ?? 1);
  const maxReplicas = props.maxReplicas ?? 10;
  wholeNumber(owner, 'minReplicas', minReplicas, 0);
  wholeNumber(owner, 'maxReplicas', maxReplicas, 1);
  if (maxReplicas < minReplicas) {
    throw new Error(`${owner}: 'maxReplicas' (${maxReplicas}) must be >= 'minReplicas' (${minReplicas}). Raise maxReplicas or lower minReplicas.`);
  }
  const messagesPerPod = props.messagesPerPod ?? 1;
  wholeNumber(owner, 'messagesPerPod', messagesPerPod, 1);
  const activationBacklog = props.activationBacklog ?? 0;
  wholeNumber(owner, 'activationBacklog', activationBacklog, 0);
  const pollingSeconds = (props.pollingInterval ?? Duration.seconds(30)).toSeconds({ integral: false });
  if (!Number.isInteger(pollingSeconds) || pollingSeconds < 1) throw new Error(`${owner}: 'pollingInterval' (${pollingSeconds}s) must be a whole number of seconds >= 1.`);
  const stabilizationSeconds = (props.scaleDownStabilization ?? Duration.minutes(5)).toSeconds({ integral: false });
  if (!Number.isInteger(stabilizationSeconds) || stabilizationSeconds < 0 || stabilizationSeconds > 3600) {
    throw new Error(`${owner}: 'scaleDownStabilization' (${stabilizationSeconds}s) must be a whole number of seconds from 0 to 3600 (the HPA's limit).`);
  }
  const jobRetries = props.jobRetries ?? 0;
  wholeNumber(owner, 'jobRetries', jobRetries, 0);
  const queueRole = props.queue.roleArn;
  if (queueRole !== undefined && props.awsRole instanceof AwsRole && props.awsRole.arn !== queueRole) {
    throw new Error(
      `${owner}: 'awsRole' (${props.awsRole.arn}) and the queue's 'roleArn' (${queueRole}) differ, but the pods have one ServiceAccount and so one role. ` +
        `Remove one of them, or make them the same role.`,
    );
  }
  checkWorkerEnv(owner, Object.keys(props.env ?? {}).concat(Object.keys(props.secretEnv ?? {})));
  return {
    owner,
    mode,
    lifecycle: props.sidecarLifecycle ?? SidecarLifecycle.DONE_FILE,
    taskSeconds,
    minReplicas,
    maxReplicas,
    messagesPerPod,
    activationBacklog,
    pollingSeconds,
    stabilizationSeconds,
    jobRetries,
  };
}

function checkWorkerEnv(owner: string, names: string[]): void {
  for (const name of names) {
    if (WORKER_ENV_PREFIXES.some((prefix) => name.startsWith(prefix))) {
      throw new Error(`${owner}: env '${name}' is set by the worker (names starting with ${WORKER_ENV_PREFIXES.join(' or ')} describe its queue and lifecycle); rename it.`);
    }
  }
}

/** A background agent consuming a queue, scaled by KEDA. */
export class QueueWorker extends AgentService {
  /** The queue it consumes. */
  public readonly queue: WorkerQueue;
  /** Deployment or Jobs. */
  public readonly mode: WorkerMode;
  /** How the sidecar learns that the agent is done. */
  public readonly sidecarLifecycle: SidecarLifecycle;
  /** Fewest pods (0 in Job mode). */
  public readonly minReplicas: number;
  /** Most pods, or Jobs at once. */
  public readonly maxReplicas: number;
  /** The ScaledObject scaling the Deployment (Deployment mode). */
  public readonly scaledObject?: ScaledObject;
  /** The ScaledJob (Job mode): the construct's default child, id 'Resource'. */
  public readonly scaledJob?: ScaledJob;
  /** How KEDA authenticates to the queue (AWS pod identity, or the Redis password), when it needs to. */
  public readonly triggerAuthentication?: TriggerAuthentication;

  private readonly settings: WorkerSettings;
  private readyBufferReplicas = 0;

  constructor(scope: Construct, id: string, props: QueueWorkerProps) {
    const s = workerSettings(id, props);
    const workload: AgentWorkload = {
      kind: 'QueueWorker',
      minPods: s.minReplicas,
      maxPods: s.maxReplicas,
      describePods: s.mode === WorkerMode.JOB ? `up to ${s.maxReplicas} Jobs at once` : `up to ${s.maxReplicas} replicas`,
      deployment: s.mode === WorkerMode.DEPLOYMENT,
      podPerTask: s.mode === WorkerMode.JOB,
      taskSeconds: s.taskSeconds,
    };
    super(scope, id, props, workload);
    this.settings = s;
    this.queue = props.queue;
    this.mode = s.mode;
    this.sidecarLifecycle = s.lifecycle;
    this.minReplicas = s.minReplicas;
    this.maxReplicas = s.maxReplicas;

    const roleArn = this.queue.roleArn;
    // The same role given as 'awsRole' was bound by AgentService already.
    if (roleArn && !props.awsRole) bindAwsRole(s.owner, 'queue', this.serviceAccount, AwsRole.fromArn(roleArn));
    const egress = this.queue._egress();
    if (this.queue.peer) this.rules.allowEgress(this.queue.peer, egress.port, 'the Redis the work queue is on');
    else if (egress.internet) this.rules.allowInternet(egress.port);
    else {
      this.rules.allowAnyPod(egress.port);
      this.rules.allowAnyAddress(egress.port);
    }

    for (const [name, value] of this.queue._agentEnv()) super.addEnv(name, value);
    super.addEnv('AGENT_WORKER_MODE', this.mode);
    super.addEnv('AGENT_WORKER_MAX_TASK_SECONDS', String(s.taskSeconds));
    super.addEnv('AGENT_WORKER_MESSAGES_PER_POD', String(s.messagesPerPod));
    if (this.sidecarLifecycle === SidecarLifecycle.DONE_FILE) super.addEnv('AGENT_WORKER_DONE_FILE', WORKER_DONE_FILE);
    const password = this.queue._passwordSecret;
    if (password) super.addSecretEnv('AGENT_QUEUE_REDIS_PASSWORD', password);

    const metadata = { name: this.name, namespace: this.namespace, labels: commonLabels(this.name, 'agent') };
    const auth = this.queue._authentication(password ? this.secretEnvRef('AGENT_QUEUE_REDIS_PASSWORD') : undefined);
    if (auth) this.triggerAuthentication = new TriggerAuthentication(this, 'TriggerAuthentication', { metadata, spec: auth });

    if (this.mode === WorkerMode.JOB) {
      this.scaledJob = new ScaledJob(this, 'Resource', { metadata, spec: Lazy.any({ produce: () => this.scaledJobSpec() }) });
    } else {
      this.scaledObject = new ScaledObject(this, 'ScaledObject', { metadata, spec: Lazy.any({ produce: () => this.scaledObjectSpec() }) });
    }
  }

  /** Sets a plain environment variable of the agent container (not one of the worker's own). */
  public override addEnv(name: string, value: string): void {
    checkWorkerEnv(`QueueWorker '${this.name}'`, [name]);
    super.addEnv(name, value);
  }

  /** Sets an environment variable of the agent container from a secret (not one of the worker's own). */
  public override addSecretEnv(name: string, secret: SecretKey): void {
    checkWorkerEnv(`QueueWorker '${this.name}'`, [name]);
    super.addSecretEnv(name, secret);
  }

  /**
   * @internal A WarmPool's ready buffer: KEDA runs ceil(backlog / messagesPerPod) + `replicas`
   * pods (a scalingModifiers formula on the queue trigger), capped at maxReplicas.
   */
  public override _addReadyBuffer(replicas: number, pool: string): void {
    const owner = this.settings.owner;
    if (this.mode === WorkerMode.JOB) {
      throw new Error(
        `${pool}: 'readyBuffer' does not apply to ${owner} in WorkerMode.JOB: a Job starts per task, so there is no replica to keep ready. ` +
          `Use 'placeholders' (nodes stay provisioned) and 'prePull' (images stay cached), or WorkerMode.DEPLOYMENT.`,
      );
    }
    if (this.readyBufferReplicas) throw new Error(`${pool}: ${owner} already has a ready buffer from another WarmPool; give it one WarmPool.`);
    if (replicas >= this.maxReplicas) {
      throw new Error(
        `${pool}: 'readyBuffer' (${replicas}) must be below ${owner}'s 'maxReplicas' (${this.maxReplicas}): KEDA runs the backlog's pods plus the buffer, capped at maxReplicas, ` +
          `so ${replicas} would leave no pod for the backlog. Lower readyBuffer or raise maxReplicas.`,
      );
    }
    this.readyBufferReplicas = replicas;
    // At rest KEDA keeps the buffer (with minReplicas >= 1; at zero it waits for work as before).
    if (this.minReplicas >= 1 && Math.max(this.minReplicas, replicas) >= 2) this.addDisruptionBudget();
  }

  /** @internal The agent's pod, with the worker's lifecycle wiring (and as a Job's pod in Job mode). */
  public override _podTemplate(): k8s.PodTemplateSpec {
    const template = super._podTemplate();
    const spec = template.spec!;
    const job = this.mode === WorkerMode.JOB;
    let sidecar = spec.containers.find((c) => c.name === SIDECAR_CONTAINER_NAME)!;
    let agent = spec.containers.find((c) => c.name === AGENT_CONTAINER_NAME)!;
    let volumes = spec.volumes ?? [];
    if (this.sidecarLifecycle === SidecarLifecycle.DONE_FILE) {
      const mount: k8s.VolumeMount = { name: WORKER_LIFECYCLE_VOLUME, mountPath: WORKER_LIFECYCLE_DIR };
      volumes = [...volumes, tmpVolume(WORKER_LIFECYCLE_VOLUME, Size.mebibytes(1))];
      agent = { ...agent, volumeMounts: [...(agent.volumeMounts ?? []), mount] };
      sidecar = {
        ...sidecar,
        // A Job's runtime runs under a supervisor that stops it once the agent is done, so the pod completes.
        command: job ? [...superviseUntilAgentExit(WORKER_DONE_FILE), ...SIDECAR_NODE_FLAGS, `${RUNTIME_BUNDLE_DIR}/${RUNTIME_BUNDLE_KEY}`] : sidecar.command,
        // Scale-in or eviction: keep serving the agent's last calls until it is done.
        lifecycle: { ...sidecar.lifecycle, ...waitForAgentExit(WORKER_DONE_FILE, this.settings.taskSeconds) },
        volumeMounts: [...(sidecar.volumeMounts ?? []), mount],
      };
    }
    const native = this.sidecarLifecycle === SidecarLifecycle.NATIVE;
    const annotations = { ...template.metadata?.annotations };
    if (job) {
      // A running task is never the node autoscaler's to interrupt.
      annotations['cluster-autoscaler.kubernetes.io/safe-to-evict'] = 'false';
      annotations['karpenter.sh/do-not-disrupt'] = 'true';
    }
    return {
      metadata: { ...template.metadata, annotations },
      spec: {
        ...spec,
        restartPolicy: job ? 'Never' : spec.restartPolicy,
        // Spreading Jobs over nodes would only delay them; pod-template-hash does not exist for Jobs.
        topologySpreadConstraints: job ? undefined : spec.topologySpreadConstraints,
        initContainers: native ? [...(spec.initContainers ?? []), { ...sidecar, restartPolicy: 'Always' }] : spec.initContainers,
        containers: native ? [agent] : [sidecar, agent],
        volumes,
      },
    };
  }

  private trigger() {
    const { type, metadata } = this.queue._trigger(this.settings.messagesPerPod, this.settings.activationBacklog);
    const authenticationRef = this.triggerAuthentication ? { name: this.triggerAuthentication.name } : undefined;
    return { type, name: TRIGGER_NAME, metadata, authenticationRef };
  }

  private scaledObjectSpec(): ScaledObjectSpec {
    const s = this.settings;
    const buffer = this.readyBufferReplicas * s.messagesPerPod;
    return {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: this.name },
      minReplicaCount: s.minReplicas,
      maxReplicaCount: s.maxReplicas,
      pollingInterval: s.pollingSeconds,
      cooldownPeriod: s.stabilizationSeconds,
      advanced: {
        horizontalPodAutoscalerConfig: { name: this.name, behavior: { scaleDown: { stabilizationWindowSeconds: s.stabilizationSeconds } } },
        // backlog + buffer * messagesPerPod over a target of messagesPerPod: the backlog's pods plus the buffer.
        scalingModifiers: buffer
          ? {
              formula: `${TRIGGER_NAME} + ${buffer}`,
              target: String(s.messagesPerPod),
              activationTarget: String(s.activationBacklog + buffer),
              metricType: ScaledObjectSpecAdvancedScalingModifiersMetricType.AVERAGE_VALUE,
            }
          : undefined,
      },
      triggers: [this.trigger()],
    };
  }

  private scaledJobSpec(): ScaledJobSpec {
    const s = this.settings;
    const template = this._podTemplate();
    const grace = template.spec!.terminationGracePeriodSeconds!;
    return {
      jobTargetRef: {
        parallelism: 1,
        completions: 1,
        backoffLimit: s.jobRetries,
        // Bounds a pod whose agent hangs or never signals done: start-up, the task, and the drain.
        activeDeadlineSeconds: JOB_START_ALLOWANCE_SECONDS + grace,
        // The bindings render quantities and int-or-strings from `.value`, which cdk8s-plus's classes carry too.
        template: template as unknown as ScaledJobSpecJobTargetRefTemplate,
      },
      pollingInterval: s.pollingSeconds,
      maxReplicaCount: s.maxReplicas,
      successfulJobsHistoryLimit: 5,
      failedJobsHistoryLimit: 10,
      // Never delete running Jobs when the ScaledJob changes (a config change would kill every task in flight).
      rollout: { strategy: ScaledJobSpecRolloutStrategy.GRADUAL },
      // SQS counts in-flight messages, so running Jobs are deducted (default); a popped list item or delivered stream entry is not counted (accurate).
      scalingStrategy: {
        strategy: this.queue.countsInFlight ? ScaledJobSpecScalingStrategyStrategy.DEFAULT : ScaledJobSpecScalingStrategyStrategy.ACCURATE,
      },
      triggers: [this.trigger()],
    };
  }
}
