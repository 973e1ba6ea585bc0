/**
 * The platform spec: the one typed description both sides derive every shared name from. The
 * cloud side (cdktf) creates IAM roles, queues and secrets under these names; the Kubernetes side
 * (cdk8s) annotates ServiceAccounts, fills ExternalSecrets and points workers at queues with the
 * same names, so nothing is copied by hand between `cdktf apply` and `cdk8s synth`.
 *
 * Plain TypeScript and zod: imports nothing of cdk8s, cdktf or the runtime.
 */
import * as z from 'zod';
import { formatPath, type ConfigIssue } from './config';

/** What a platform spec says; optional fields get the defaults their docs give. */
export interface PlatformSpec {
  /**
   * Prefix of every cloud resource name (IAM roles, queues, secrets, the Redis replication group,
   * alarms): lowercase letters, digits and single '-', starting with a letter, at most 32
   * characters. Changing it renames (replaces) every cloud resource.
   */
  readonly name: string;
  /** The AWS account and region the cloud side is applied to. */
  readonly aws: AwsTarget;
  /** Where the agents run. */
  readonly kubernetes: KubernetesTarget;
  /** Every agent, gateway and worker of the platform: each gets an IAM role for its ServiceAccount. */
  readonly agents: readonly AgentDeclaration[];
  /**
   * SQS queues, one per queue-driven worker.
   * @default - no queues
   */
  readonly workerQueues?: readonly WorkerQueueDeclaration[];
  /**
   * LLM provider API keys kept in AWS Secrets Manager (values set out of band).
   * @default - none
   */
  readonly providerKeys?: readonly ProviderKeyDeclaration[];
}

export interface AwsTarget {
  /** The AWS region, e.g. 'eu-central-1'. Queue URLs and the cluster's OIDC issuer must be in it. */
  readonly region: string;
  /** The 12-digit AWS account id: role, queue and OIDC provider ARNs are derived from it. */
  readonly accountId: string;
  /**
   * The IPv4 CIDR of the cluster's VPC (e.g. '10.0.0.0/16'), where Redis (ElastiCache) has its private
   * address: the Kubernetes side opens egress on the Redis port to it, and nowhere else private.
   * @default - no CIDR: the Kubernetes side needs a peer for Redis (`AgentPlatform.redisStore({ peer })`)
   */
  readonly vpcCidr?: string;
}

export interface KubernetesTarget {
  /** The namespace the agents, their ServiceAccounts and the SecretStore live in. */
  readonly namespace: string;
  /** The EKS cluster (or any cluster with an IAM OIDC identity provider). */
  readonly cluster: ClusterIdentity;
  /**
   * The External Secrets SecretStore reading AWS Secrets Manager through IRSA.
   * @default - SecretStore and ServiceAccount both named 'aws-secrets-manager'
   */
  readonly secretStore?: SecretStoreDeclaration;
  /**
   * The KEDA operator, which reads queue depths to scale workers (only used with worker queues).
   * @default - ServiceAccount 'keda-operator' in namespace 'keda'
   */
  readonly keda?: KedaDeclaration;
}

export interface ClusterIdentity {
  /**
   * The cluster's OIDC issuer URL (`aws eks describe-cluster --query cluster.identity.oidc.issuer`),
   * e.g. 'https://oidc.eks.eu-central-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE'. Its IAM
   * OIDC identity provider must exist in the account (eksctl and the EKS Terraform modules create it).
   */
  readonly oidcIssuerUrl: string;
}

export interface SecretStoreDeclaration {
  /**
   * The SecretStore's name (namespaced, in `kubernetes.namespace`).
   * @default 'aws-secrets-manager'
   */
  readonly name?: string;
  /**
   * The ServiceAccount the SecretStore authenticates as (its IAM role reads the platform's secrets).
   * @default 'aws-secrets-manager'
   */
  readonly serviceAccount?: string;
}

export interface KedaDeclaration {
  /**
   * The KEDA operator's namespace.
   * @default 'keda'
   */
  readonly namespace?: string;
  /**
   * The KEDA operator's ServiceAccount.
   * @default 'keda-operator'
   */
  readonly serviceAccount?: string;
}

export interface AgentDeclaration {
  /** The agent's name: its Deployment, its ServiceAccount (the Kubernetes side names it after the agent) and its IAM role. */
  readonly name: string;
  /**
   * Provider keys this agent's pods read (a gateway, or an agent calling providers directly); each must be declared in `providerKeys`.
   * @default - none
   */
  readonly providerKeys?: readonly string[];
  /**
   * The agent of this spec that is the LlmGateway this agent calls providers through. The cloud
   * side generates the signing key the agent's sidecar proves its identity to the gateway with,
   * one JSON property per agent in the gateway's secret `<name>/gateways/<gateway>/signing-keys`.
   * @default - no gateway (the agent calls providers directly)
   */
  readonly gateway?: string;
  /**
   * Whether the agent has an approvals API (tools that require approval): the cloud side
   * generates its approver token into `<name>/agents/<agent>/approver-token` (property `token`).
   * @default false
   */
  readonly approvals?: boolean;
}

export interface WorkerQueueDeclaration {
  /** The agent that consumes the queue: it gets receive and delete rights on it. */
  readonly worker: string;
  /**
   * Agents that send to the queue: they get send rights on it.
   * @default - none
   */
  readonly producers?: readonly string[];
  /**
   * How long a received message stays hidden from other consumers: longer than the worker takes for one job.
   * @default 300
   */
  readonly visibilityTimeoutSeconds?: number;
  /**
   * Receives before a message moves to the dead-letter queue.
   * @default 5
   */
  readonly maxReceiveCount?: number;
  /**
   * How long an unprocessed message is kept (60 s to 14 days). The dead-letter queue keeps messages 14 days.
   * @default 345600 (4 days)
   */
  readonly messageRetentionSeconds?: number;
}

export interface ProviderKeyDeclaration {
  /** The provider, e.g. 'openai': names the secret `<name>/providers/<provider>`. */
  readonly name: string;
  /**
   * Shown on the secret.
   * @default - 'API key for <name>'
   */
  readonly description?: string;
}

/** The JSON property of a provider key secret holding the key. */
export const PROVIDER_KEY_PROPERTY = 'api_key';
/** The JSON properties of the Redis connection secret Terraform writes: `rediss://host:port` (no credentials) and the AUTH token. */
/** An AWS region name: eu-central-1, us-gov-west-1, cn-north-1. */
export const AWS_REGION = /^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$/;
/** An IAM role ARN: partition, account id, role name with its path. */
export const IAM_ROLE_ARN = /^arn:aws(-cn|-us-gov)?:iam::(\d{12}):role\/([\w+=,.@/-]{1,512})$/;

export const APPROVER_TOKEN_PROPERTY = 'token';
export const REDIS_URL_PROPERTY = 'url';
export const REDIS_AUTH_TOKEN_PROPERTY = 'auth_token';
export const REDIS_PORT = 6379;
/** The annotation that binds a ServiceAccount to its IAM role (IRSA). */
export const IRSA_ROLE_ANNOTATION = 'eks.amazonaws.com/role-arn';
/** The audience IRSA tokens are issued for. */
export const IRSA_AUDIENCE = 'sts.amazonaws.com';

const NAME_MAX = 32;
const IAM_ROLE_NAME_MAX = 64;
const SQS_NAME_MAX = 80;
/** Role names the platform uses for its own ServiceAccounts: an agent of that name would collide. */
const RESERVED_AGENT_NAMES = ['secret-store', 'keda'];

const DNS_LABEL = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;
const dnsLabel = (what: string) =>
  z.string().regex(DNS_LABEL, {
    error: `must be ${what}: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters`,
  });

const ProviderKeySchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/, {
    error: "must be lowercase letters, digits and '-', at most 32 characters (e.g. 'openai')",
  }),
  description: z.string().min(1).max(2048).optional(),
});

const AgentSchema = z.strictObject({
  name: dnsLabel('a DNS label'),
  providerKeys: z.array(z.string()).default([]),
  gateway: z.string().optional(),
  approvals: z.boolean().default(false),
});

const WorkerQueueSchema = z.strictObject({
  worker: z.string(),
  producers: z.array(z.string()).default([]),
  visibilityTimeoutSeconds: z
    .number()
    .int()
    .min(0)
    .max(43_200, { error: 'must be at most 43200 (12 hours, the SQS maximum)' })
    .default(300),
  maxReceiveCount: z.number().int().min(1).max(1_000).default(5),
  messageRetentionSeconds: z
    .number()
    .int()
    .min(60, { error: 'must be at least 60 seconds' })
    .max(1_209_600, { error: 'must be at most 1209600 (14 days, the SQS maximum)' })
    .default(345_600),
});

export const PlatformSpecSchema = z
  .strictObject({
    name: z
      .string()
      .max(NAME_MAX, { error: `must be at most ${NAME_MAX} characters: it prefixes names AWS limits (Redis ids: 40, IAM roles: 64)` })
      .regex(/^[a-z](?:[a-z0-9]|-(?!-))*[a-z0-9]$/, {
        error: "must be lowercase letters, digits and single '-', starting with a letter and ending with a letter or digit",
      }),
    aws: z.strictObject({
      region: z.string().regex(AWS_REGION, { error: "must be an AWS region such as 'eu-central-1'" }),
      accountId: z.string().regex(/^\d{12}$/, { error: 'must be the 12-digit AWS account id, as a string' }),
      vpcCidr: z
        .string()
        .regex(/^((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)\/(3[0-2]|[12]?\d)$/, { error: "must be an IPv4 CIDR such as '10.0.0.0/16'" })
        .refine(isNetworkAddress, { error: 'must be the network address of its block (host bits zero, as AWS writes a VPC CIDR: 10.0.0.0/16, not 10.0.0.1/16)' })
        .optional(),
    }),
    kubernetes: z.strictObject({
      namespace: dnsLabel('a Kubernetes namespace'),
      cluster: z.strictObject({
        oidcIssuerUrl: z.string().regex(/^https:\/\/[a-z0-9.-]+(:\d+)?(\/[A-Za-z0-9._~-]+)*$/, {
          error: "must be the cluster's OIDC issuer URL, https:// without a trailing '/' (aws eks describe-cluster --query cluster.identity.oidc.issuer)",
        }),
      }),
      secretStore: z
        .strictObject({
          name: dnsLabel('a Kubernetes name').default('aws-secrets-manager'),
          serviceAccount: dnsLabel('a Kubernetes name').default('aws-secrets-manager'),
        })
        .prefault({}),
      keda: z
        .strictObject({
          namespace: dnsLabel('a Kubernetes namespace').default('keda'),
          serviceAccount: dnsLabel('a Kubernetes name').default('keda-operator'),
        })
        .prefault({}),
    }),
    agents: z.array(AgentSchema).min(1, { error: 'must declare at least one agent' }),
    workerQueues: z.array(WorkerQueueSchema).default([]),
    providerKeys: z.array(ProviderKeySchema).default([]),
  })
  .superRefine((spec, ctx) => {
    const issue = (path: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    const agentNames = new Set<string>();
    spec.agents.forEach((agent, i) => {
      if (agentNames.has(agent.name)) issue(['agents', i, 'name'], `'${agent.name}' is declared twice; agent names must be unique`);
      agentNames.add(agent.name);
      if (RESERVED_AGENT_NAMES.includes(agent.name)) {
        issue(['agents', i, 'name'], `'${agent.name}' is reserved (the platform's own IAM role ${spec.name}-${agent.name}); rename the agent`);
      }
      if (agent.name === spec.kubernetes.secretStore.serviceAccount) {
        issue(
          ['agents', i, 'name'],
          `'${agent.name}' is also the SecretStore's ServiceAccount (kubernetes.secretStore.serviceAccount) in the same namespace; rename one of them`,
        );
      }
      const roleName = `${spec.name}-${agent.name}`;
      if (roleName.length > IAM_ROLE_NAME_MAX) {
        issue(
          ['agents', i, 'name'],
          `the IAM role name '${roleName}' would be ${roleName.length} characters (at most ${IAM_ROLE_NAME_MAX}); shorten 'name' or the agent's name`,
        );
      }
    });
    const providerKeys = new Set<string>();
    spec.providerKeys.forEach((key, i) => {
      if (providerKeys.has(key.name)) issue(['providerKeys', i, 'name'], `'${key.name}' is declared twice`);
      providerKeys.add(key.name);
    });
    spec.agents.forEach((agent, i) =>
      agent.providerKeys.forEach((key, k) => {
        if (!providerKeys.has(key)) {
          issue(
            ['agents', i, 'providerKeys', k],
            `the secret '${key}' is referenced but never declared; add { name: '${key}' } to 'providerKeys' or fix the name (declared: ${list(providerKeys)})`,
          );
        }
      }),
    );
    spec.agents.forEach((agent, i) => {
      if (agent.gateway === undefined) return;
      if (agent.gateway === agent.name) {
        issue(['agents', i, 'gateway'], `'${agent.name}' cannot be its own gateway; name the LlmGateway agent it calls providers through, or remove 'gateway'`);
      } else if (!agentNames.has(agent.gateway)) {
        issue(['agents', i, 'gateway'], `'${agent.gateway}' names no agent; declare the gateway as an agent (it has an IAM role too) or fix the name (agents: ${list(agentNames)})`);
      } else if (spec.agents.find((a) => a.name === agent.gateway)!.gateway !== undefined) {
        issue(['agents', i, 'gateway'], `'${agent.gateway}' calls providers through a gateway itself; a gateway calls providers directly, so name one that does`);
      }
    });
    const workers = new Set<string>();
    spec.workerQueues.forEach((queue, i) => {
      if (!agentNames.has(queue.worker)) {
        issue(
          ['workerQueues', i, 'worker'],
          `'${queue.worker}' names no agent: a worker queue needs its worker; add an agent named '${queue.worker}' to 'agents' or fix the name (agents: ${list(agentNames)})`,
        );
      }
      if (workers.has(queue.worker)) {
        issue(['workerQueues', i, 'worker'], `'${queue.worker}' already has a queue; a worker consumes one queue`);
      }
      workers.add(queue.worker);
      queue.producers.forEach((producer, p) => {
        if (!agentNames.has(producer)) {
          issue(['workerQueues', i, 'producers', p], `'${producer}' names no agent; add it to 'agents' or fix the name (agents: ${list(agentNames)})`);
        }
      });
      const dlqName = `${spec.name}-${queue.worker}-dlq`;
      if (dlqName.length > SQS_NAME_MAX) {
        issue(['workerQueues', i, 'worker'], `the queue name '${dlqName}' would be ${dlqName.length} characters (at most ${SQS_NAME_MAX}); shorten 'name' or the worker's name`);
      }
    });
    const issuerRegion = eksIssuerRegion(spec.kubernetes.cluster.oidcIssuerUrl);
    if (issuerRegion !== undefined && issuerRegion !== spec.aws.region) {
      issue(
        ['kubernetes', 'cluster', 'oidcIssuerUrl'],
        `the cluster is in ${issuerRegion} but 'aws.region' is ${spec.aws.region}: the cloud and Kubernetes sides must be in one region; fix 'aws.region' or the issuer URL`,
      );
    }
  });

/** The spec with every default filled in. */
export type ResolvedPlatformSpec = z.output<typeof PlatformSpecSchema>;

/** Whether an IPv4 CIDR (already well formed) has its host bits zero. */
function isNetworkAddress(cidr: string): boolean {
  if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(cidr)) return true; // the shape check reports it
  const [address, bits] = cidr.split('/');
  const value = address.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
  const size = 2 ** (32 - Number(bits));
  return value % size === 0;
}

function list(names: Set<string>): string {
  return names.size ? [...names].map((n) => `'${n}'`).join(', ') : 'none';
}

/** The region of an EKS OIDC issuer URL, or undefined for other issuers. */
function eksIssuerRegion(url: string): string | undefined {
  return /^https:\/\/oidc\.eks\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?\//.exec(url)?.[1];
}

/** A platform spec that failed validation; every problem is listed with its path. */
export class PlatformSpecError extends Error {
  constructor(public readonly issues: readonly ConfigIssue[]) {
    super(`invalid platform spec:\n${issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`);
    this.name = 'PlatformSpecError';
  }
}

/** Validates a spec and fills its defaults; throws a PlatformSpecError naming every bad field. */
export function parsePlatformSpec(input: PlatformSpec | ResolvedPlatformSpec): ResolvedPlatformSpec {
  const result = PlatformSpecSchema.safeParse(input);
  if (result.success) return result.data;
  const issues: ConfigIssue[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) issues.push({ path: formatPath([...issue.path, key]), message: 'unknown field; check its spelling' });
    } else {
      issues.push({ path: formatPath(issue.path), message: issue.message });
    }
  }
  throw new PlatformSpecError(issues);
}

/** The names of one agent: its ServiceAccount and the IAM role bound to it. */
export interface AgentNames {
  readonly agent: string;
  readonly namespace: string;
  /** The agent's ServiceAccount: the Kubernetes side names it after the agent. */
  readonly serviceAccount: string;
  readonly roleName: string;
  /** Goes in the ServiceAccount's `eks.amazonaws.com/role-arn` annotation. */
  readonly roleArn: string;
}

/** The names of a worker's queue and its dead-letter queue. */
export interface WorkerQueueNames {
  readonly worker: string;
  readonly producers: readonly string[];
  readonly queueName: string;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly deadLetterQueueName: string;
  readonly deadLetterQueueUrl: string;
  readonly deadLetterQueueArn: string;
}

/** Where a provider key lives in Secrets Manager. */
export interface ProviderKeyNames {
  readonly provider: string;
  /** The secret's name (its ARN ends in a random suffix: refer to it by name). */
  readonly secretName: string;
  /** The JSON property holding the key. */
  readonly property: string;
}

/** The secret Terraform generates a gateway's signing keys into: one JSON property per connected agent, named by the agent. */
export interface GatewaySigningKeyNames {
  readonly gateway: string;
  readonly secretName: string;
  /** The agents declaring this gateway, in spec order: the secret's properties. */
  readonly agents: readonly string[];
}

/** The secret Terraform generates an agent's approver token into. */
export interface ApproverTokenNames {
  readonly agent: string;
  readonly secretName: string;
  /** The JSON property holding the token. */
  readonly property: string;
}

/** The Redis replication group and the secret Terraform writes its endpoint and token into. */
export interface RedisNames {
  readonly replicationGroupId: string;
  readonly port: number;
  /** The JSON secret `{ url, auth_token }` the Kubernetes side syncs through ExternalSecret. */
  readonly connectionSecretName: string;
  /** `rediss://<primary endpoint>:6379`: maps to the runtime's `store.url` ({ file }). */
  readonly urlProperty: string;
  /** The AUTH token: maps to the runtime's `store.password` ({ file }). */
  readonly authTokenProperty: string;
  /** Where Terraform keeps the generated token (read by Terraform only). */
  readonly authTokenSecretName: string;
}

/** A ServiceAccount outside the agents with an IAM role of the platform (the SecretStore's, KEDA's). */
export interface ServiceAccountNames {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly roleName: string;
  readonly roleArn: string;
}

/** The SecretStore reading AWS Secrets Manager. */
export interface SecretStoreNames extends ServiceAccountNames {
  /** The SecretStore's name (namespaced). */
  readonly name: string;
  /** The region its provider block reads from. */
  readonly region: string;
}

/**
 * Every name both sides must agree on, derived from one spec. Pure: the same spec gives the same
 * names on every machine, before anything is applied.
 */
export class PlatformNames {
  /** Validates the spec (throws PlatformSpecError) and derives its names. */
  public static of(spec: PlatformSpec | ResolvedPlatformSpec): PlatformNames {
    return new PlatformNames(parsePlatformSpec(spec));
  }

  public readonly prefix: string;
  public readonly region: string;
  public readonly accountId: string;
  /** 'aws', 'aws-cn' or 'aws-us-gov', from the region. */
  public readonly partition: string;
  /** The namespace the agents run in. */
  public readonly namespace: string;
  /** The OIDC issuer without https://: the prefix of the IRSA condition keys. */
  public readonly oidcIssuer: string;
  public readonly oidcProviderArn: string;
  public readonly kmsKeyAlias: string;
  public readonly alarmTopicName: string;
  public readonly dashboardName: string;
  /** Every log group of the platform starts with it. */
  public readonly logGroupPrefix: string;
  public readonly redis: RedisNames;
  public readonly secretStore: SecretStoreNames;
  public readonly keda: ServiceAccountNames;

  private constructor(public readonly spec: ResolvedPlatformSpec) {
    this.prefix = spec.name;
    this.region = spec.aws.region;
    this.accountId = spec.aws.accountId;
    this.partition = spec.aws.region.startsWith('cn-') ? 'aws-cn' : spec.aws.region.startsWith('us-gov-') ? 'aws-us-gov' : 'aws';
    this.namespace = spec.kubernetes.namespace;
    this.oidcIssuer = spec.kubernetes.cluster.oidcIssuerUrl.replace(/^https:\/\//, '');
    this.oidcProviderArn = `arn:${this.partition}:iam::${this.accountId}:oidc-provider/${this.oidcIssuer}`;
    this.kmsKeyAlias = `alias/${this.prefix}`;
    this.alarmTopicName = `${this.prefix}-alarms`;
    this.dashboardName = this.prefix;
    this.logGroupPrefix = `/cdk-agents/${this.prefix}/`;
    this.redis = {
      replicationGroupId: `${this.prefix}-redis`,
      port: REDIS_PORT,
      connectionSecretName: `${this.prefix}/redis/connection`,
      urlProperty: REDIS_URL_PROPERTY,
      authTokenProperty: REDIS_AUTH_TOKEN_PROPERTY,
      authTokenSecretName: `${this.prefix}/redis/auth-token`,
    };
    const store = spec.kubernetes.secretStore;
    this.secretStore = {
      name: store.name,
      region: this.region,
      namespace: this.namespace,
      serviceAccount: store.serviceAccount,
      roleName: `${this.prefix}-secret-store`,
      roleArn: this.roleArn(`${this.prefix}-secret-store`),
    };
    this.keda = {
      namespace: spec.kubernetes.keda.namespace,
      serviceAccount: spec.kubernetes.keda.serviceAccount,
      roleName: `${this.prefix}-keda`,
      roleArn: this.roleArn(`${this.prefix}-keda`),
    };
  }

  /** The names of an agent; throws if the spec does not declare it. */
  public agent(name: string): AgentNames {
    if (!this.spec.agents.some((a) => a.name === name)) {
      throw new Error(`'${name}' is not an agent of the platform spec '${this.prefix}'; add it to 'agents' or use one of: ${this.agentNames().join(', ')}.`);
    }
    const roleName = `${this.prefix}-${name}`;
    return { agent: name, namespace: this.namespace, serviceAccount: name, roleName, roleArn: this.roleArn(roleName) };
  }

  /** Every agent's names, in spec order. */
  public agents(): AgentNames[] {
    return this.spec.agents.map((a) => this.agent(a.name));
  }

  /** The queue a worker consumes; throws if the spec gives the worker no queue. */
  public workerQueue(worker: string): WorkerQueueNames {
    const declared = this.spec.workerQueues.find((q) => q.worker === worker);
    if (!declared) {
      const workers = this.spec.workerQueues.map((q) => q.worker);
      throw new Error(
        `'${worker}' has no queue in the platform spec '${this.prefix}'; add { worker: '${worker}' } to 'workerQueues' (workers with queues: ${workers.join(', ') || 'none'}).`,
      );
    }
    const queueName = `${this.prefix}-${worker}`;
    const deadLetterQueueName = `${queueName}-dlq`;
    return {
      worker,
      producers: declared.producers,
      queueName,
      queueUrl: this.queueUrl(queueName),
      queueArn: this.queueArn(queueName),
      deadLetterQueueName,
      deadLetterQueueUrl: this.queueUrl(deadLetterQueueName),
      deadLetterQueueArn: this.queueArn(deadLetterQueueName),
    };
  }

  /** Every worker queue's names, in spec order. */
  public workerQueues(): WorkerQueueNames[] {
    return this.spec.workerQueues.map((q) => this.workerQueue(q.worker));
  }

  /** Where a provider key lives; throws if the spec never declares it. */
  public providerKey(provider: string): ProviderKeyNames {
    if (!this.spec.providerKeys.some((k) => k.name === provider)) {
      const declared = this.spec.providerKeys.map((k) => k.name);
      throw new Error(
        `the secret '${provider}' is referenced but never declared in the platform spec '${this.prefix}'; add { name: '${provider}' } to 'providerKeys' (declared: ${declared.join(', ') || 'none'}).`,
      );
    }
    return { provider, secretName: `${this.prefix}/providers/${provider}`, property: PROVIDER_KEY_PROPERTY };
  }

  /** Every provider key's names, in spec order. */
  public providerKeys(): ProviderKeyNames[] {
    return this.spec.providerKeys.map((k) => this.providerKey(k.name));
  }

  /** The provider keys an agent's pods read. */
  public providerKeysOf(agent: string): ProviderKeyNames[] {
    this.agent(agent);
    return this.spec.agents.find((a) => a.name === agent)!.providerKeys.map((k) => this.providerKey(k));
  }

  /** A gateway's signing keys; throws unless some agent declares the gateway. */
  public gatewaySigningKeys(gateway: string): GatewaySigningKeyNames {
    const agents = this.spec.agents.filter((a) => a.gateway === gateway).map((a) => a.name);
    if (agents.length === 0) {
      const gateways = [...new Set(this.spec.agents.flatMap((a) => (a.gateway ? [a.gateway] : [])))];
      throw new Error(
        `no agent of the platform spec '${this.prefix}' calls providers through '${gateway}', so it has no signing keys; set { gateway: '${gateway}' } on the agents it serves (gateways: ${gateways.join(', ') || 'none'}).`,
      );
    }
    return { gateway, secretName: `${this.prefix}/gateways/${gateway}/signing-keys`, agents };
  }

  /** Every gateway's signing keys, in the order the spec first names each gateway. */
  public gateways(): GatewaySigningKeyNames[] {
    return [...new Set(this.spec.agents.flatMap((a) => (a.gateway ? [a.gateway] : [])))].map((g) => this.gatewaySigningKeys(g));
  }

  /** An agent's approver token; throws unless the agent declares `approvals: true`. */
  public approverToken(agent: string): ApproverTokenNames {
    const declared = this.spec.agents.find((a) => a.name === agent);
    if (!declared?.approvals) {
      const withApprovals = this.spec.agents.filter((a) => a.approvals).map((a) => a.name);
      throw new Error(
        `the approver token of '${agent}' is referenced but never declared in the platform spec '${this.prefix}'; set { name: '${agent}', approvals: true } in 'agents' (agents with approvals: ${withApprovals.join(', ') || 'none'}).`,
      );
    }
    return { agent, secretName: `${this.prefix}/agents/${agent}/approver-token`, property: APPROVER_TOKEN_PROPERTY };
  }

  /** Every approver token, in spec order. */
  public approverTokens(): ApproverTokenNames[] {
    return this.spec.agents.filter((a) => a.approvals).map((a) => this.approverToken(a.name));
  }

  /** The subject an IRSA token of a ServiceAccount carries. */
  public serviceAccountSubject(namespace: string, serviceAccount: string): string {
    return `system:serviceaccount:${namespace}:${serviceAccount}`;
  }

  private agentNames(): string[] {
    return this.spec.agents.map((a) => a.name);
  }

  private roleArn(roleName: string): string {
    return `arn:${this.partition}:iam::${this.accountId}:role/${roleName}`;
  }

  private queueUrl(queueName: string): string {
    const domain = this.partition === 'aws-cn' ? 'amazonaws.com.cn' : 'amazonaws.com';
    return `https://sqs.${this.region}.${domain}/${this.accountId}/${queueName}`;
  }

  private queueArn(queueName: string): string {
    return `arn:${this.partition}:sqs:${this.region}:${this.accountId}:${queueName}`;
  }
}

/**
 * The names of the spec a construct takes as its 'spec' prop: an invalid spec is an Error naming
 * the construct (`owner`) and each bad field as `spec.<path>`.
 */
export function platformNamesFor(owner: string, spec: PlatformSpec | ResolvedPlatformSpec): PlatformNames {
  if (!spec) throw new Error(`${owner}: 'spec' is required: the platform spec (see examples/platform.ts).`);
  try {
    return PlatformNames.of(spec);
  } catch (error) {
    if (error instanceof PlatformSpecError) {
      throw new Error(`${owner}: 'spec' is invalid:\n${error.issues.map((i) => `  spec.${i.path}: ${i.message}`).join('\n')}`);
    }
    throw error;
  }
}

/** The names both sides agree on, derived from one spec (validated: throws PlatformSpecError). */
export function platformNames(spec: PlatformSpec | ResolvedPlatformSpec): PlatformNames {
  return PlatformNames.of(spec);
}
