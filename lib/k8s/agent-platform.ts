/**
 * AgentPlatform: the Kubernetes side of the platform spec. Every name the cloud side (AgentCloud)
 * creates under (IAM role ARNs, queue URLs, secret names, the SecretStore and its role) comes from
 * here, derived from the same spec, so nothing is copied by hand from `cdktf apply`. At synth it
 * checks the chart against the spec: every agent, gateway and worker declared, roles, queues and
 * secrets as the spec names them, one region, one namespace.
 */
import { Chart } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { ExternalSecret } from '../imports/external-secrets.io_externalsecrets';
import { IRSA_ROLE_ANNOTATION, platformNamesFor, type PlatformNames, type PlatformSpec } from '../spec/platform';
import { AgentService } from './agent-service';
import { AwsRole } from './aws-role';
import { AwsSecretStore } from './aws-secret-store';
import { BudgetStore, type RedisStoreOptions } from './budget-store';
import { LlmGateway } from './llm-gateway';
import { QueueWorker, WorkerQueue, WorkerQueueType, type SqsQueueOptions } from './queue-worker';
import { ApproverToken, SecretKey, SecretStoreKind, type SecretStoreRef } from './secrets';
import { GatewaySigningKeys } from './signing-keys';

const OWNER = 'AgentPlatform';

/** A name from the spec, its error prefixed with the construct that asked. */
function owned<T>(names: () => T): T {
  try {
    return names();
  } catch (error) {
    throw new Error(`${OWNER}: ${(error as Error).message}`);
  }
}

/** Props of an AgentPlatform. */
export interface AgentPlatformProps {
  /** The platform spec (see examples/platform.ts): the one the cloud side (AgentCloud) is built from. */
  readonly spec: PlatformSpec;
  /**
   * The SecretStore the platform's ExternalSecrets read through (bring-your-own); it must read the
   * spec's `aws.region`.
   * @default - AwsSecretStore.fromPlatform: named by `kubernetes.secretStore`, with the role AgentCloud creates for it
   */
  readonly secretStore?: AwsSecretStore;
}

/** Options of `AgentPlatform.workerQueue`: the URL, region and roles come from the spec. */
export type PlatformQueueOptions = Pick<SqsQueueOptions, 'countInFlight' | 'peer'>;

/** Options of `AgentPlatform.redisStore`: the URL, password and port come from the connection secret Terraform writes. */
export type PlatformRedisOptions = Pick<RedisStoreOptions, 'onUnavailable' | 'commandTimeout' | 'keyPrefix' | 'peer'>;

/** The platform spec on the Kubernetes side: its SecretStore, and every shared name by agent, worker and provider. */
export class AgentPlatform extends Construct {
  /** Every shared name, from the spec: what AgentCloud uses too. */
  public readonly names: PlatformNames;
  /** The SecretStore reading AWS Secrets Manager (IRSA). */
  public readonly secretStore: AwsSecretStore;
  /** The VPC addresses Redis is at (the spec's `aws.vpcCidr`), for the egress NetworkPolicy. */
  public readonly redisPeer?: kplus.NetworkPolicyIpBlock;

  constructor(scope: Construct, id: string, props: AgentPlatformProps) {
    super(scope, id);
    this.names = platformNamesFor(OWNER, props.spec);
    const names = this.names;
    const chartNamespace = Chart.of(this).namespace;
    if (chartNamespace !== names.namespace) {
      throw new Error(
        `${OWNER}: the chart's namespace is ${chartNamespace === undefined ? 'unset' : `'${chartNamespace}'`} but the platform spec's 'kubernetes.namespace' is '${names.namespace}': ` +
          `the IAM roles trust ServiceAccounts in '${names.namespace}' only. Create the chart with { namespace: '${names.namespace}' } (spec.kubernetes.namespace), or fix the spec.`,
      );
    }
    if (props.secretStore) {
      const store = props.secretStore;
      if (!(store instanceof AwsSecretStore)) throw new Error(`${OWNER}: 'secretStore' must be an AwsSecretStore.`);
      const problem = this.storeProblem(store);
      if (problem) throw new Error(`${OWNER}: 'secretStore': ${problem}`);
      this.secretStore = store;
    } else {
      this.secretStore = AwsSecretStore._fromNames(this, 'SecretStore', names);
    }
    const cidr = names.spec.aws.vpcCidr;
    if (cidr) this.redisPeer = kplus.NetworkPolicyIpBlock.ipv4(this, 'RedisAddresses', cidr);
    this.node.addValidation({ validate: () => this.validateChart() });
  }

  /** What the constructs' `secretStore` prop takes: the platform's SecretStore. */
  public get secretStoreRef(): SecretStoreRef {
    return this.secretStore.ref;
  }

  /** The IAM role of an agent's, gateway's or worker's ServiceAccount, for its `awsRole` prop. */
  public roleOf(agent: string): AwsRole {
    return AwsRole.fromArn(this.agentNames(agent).roleArn);
  }

  /** The role of KEDA's operator (reads queue depths). */
  public get kedaRole(): AwsRole {
    return AwsRole.fromArn(this.names.keda.roleArn);
  }

  /**
   * The SQS queue of a worker declared in `workerQueues`: its URL and region, the worker's role
   * for its pods, and KEDA's role to read the queue's length.
   */
  public workerQueue(worker: string, options: PlatformQueueOptions = {}): WorkerQueue {
    this.agentNames(worker);
    const queue = this.queueNames(worker);
    return WorkerQueue.sqs({
      ...options,
      queueUrl: queue.queueUrl,
      region: this.names.region,
      roleArn: this.names.agent(worker).roleArn,
      scalerRoleArn: this.names.keda.roleArn,
    });
  }

  /** A provider's API key in Secrets Manager (declared in `providerKeys`), for `LlmProvider.*({ apiKey })`. */
  public providerKey(provider: string): SecretKey {
    const key = this.providerKeyNames(provider);
    return SecretKey.fromAwsSecretsManager(key.secretName, key.property);
  }

  /**
   * A gateway's signing keys, for LlmGateway's `signingKeys`: generated by the cloud side into
   * Secrets Manager, one per agent declaring `gateway: '<gateway>'` in the spec, synced by an
   * ExternalSecret. At synth the gateway's connected agents must be exactly those agents.
   */
  public signingKeys(gateway: string): GatewaySigningKeys {
    this.agentNames(gateway);
    return GatewaySigningKeys.fromAwsSecretsManager(this.gatewayKeyNames(gateway).secretName);
  }

  /** An agent's approver token, for AgentService's `approvals`: generated by the cloud side for an agent declaring `approvals: true`. */
  public approverToken(agent: string): ApproverToken {
    this.agentNames(agent);
    const token = owned(() => this.names.approverToken(agent));
    return ApproverToken.fromSecretKey(SecretKey.fromAwsSecretsManager(token.secretName, token.property));
  }

  /**
   * The platform's Redis (ElastiCache): URL and AUTH token from the connection secret Terraform
   * writes at apply, egress on its port to the spec's `aws.vpcCidr`.
   */
  public redisStore(options: PlatformRedisOptions = {}): BudgetStore {
    const redis = this.names.redis;
    return BudgetStore.redis({
      ...options,
      urlSecret: SecretKey.fromAwsSecretsManager(redis.connectionSecretName, redis.urlProperty),
      passwordSecret: SecretKey.fromAwsSecretsManager(redis.connectionSecretName, redis.authTokenProperty),
      port: redis.port,
      peer: options.peer ?? this.redisPeer,
    });
  }

  private agentNames(agent: string) {
    if (!this.names.spec.agents.some((a) => a.name === agent)) throw new Error(`${OWNER}: ${this.undeclared(agent)}`);
    return this.names.agent(agent);
  }

  private undeclared(agent: string): string {
    const declared = this.names.spec.agents.map((a) => `'${a.name}'`).join(', ');
    return `'${agent}' is not declared in the platform spec '${this.names.prefix}': add { name: '${agent}' } to platform.agents (its IAM role comes from there), or fix the name (declared: ${declared}).`;
  }

  private queueNames(worker: string) {
    if (!this.names.spec.workerQueues.some((q) => q.worker === worker)) {
      const workers = this.names.spec.workerQueues.map((q) => `'${q.worker}'`).join(', ') || 'none';
      throw new Error(
        `${OWNER}: the queue worker '${worker}' has no declared queue: add { worker: '${worker}' } to platform.workerQueues (the cloud side creates the queue from it), or fix the name (workers with queues: ${workers}).`,
      );
    }
    return this.names.workerQueue(worker);
  }

  private gatewayKeyNames(gateway: string) {
    return owned(() => this.names.gatewaySigningKeys(gateway));
  }

  private providerKeyNames(provider: string) {
    if (!this.names.spec.providerKeys.some((k) => k.name === provider)) {
      const declared = this.names.spec.providerKeys.map((k) => `'${k.name}'`).join(', ') || 'none';
      throw new Error(
        `${OWNER}: the secret '${provider}' is referenced but never declared: add { name: '${provider}' } to platform.providerKeys (the cloud side creates the secret from it), or fix the name (declared: ${declared}).`,
      );
    }
    return this.names.providerKey(provider);
  }

  /** Why a SecretStore does not fit the spec, if it does not. */
  private storeProblem(store: AwsSecretStore): string | undefined {
    const names = this.names;
    if (store.region !== names.region) {
      return (
        `AwsSecretStore '${store.name}' reads region '${store.region}' but the platform spec's 'aws.region' is '${names.region}' (region mismatch): ` +
        `the cloud side keeps the secrets in ${names.region}. Set its 'region' to '${names.region}', or build it with AwsSecretStore.fromPlatform(scope, id, spec).`
      );
    }
    if (store.namespace !== names.namespace) {
      return `AwsSecretStore '${store.name}' is in namespace '${store.namespace}' but the platform spec's 'kubernetes.namespace' is '${names.namespace}'; put it in '${names.namespace}'.`;
    }
    return undefined;
  }

  /** At synth: the chart's agents, stores, queues and ExternalSecrets against the spec. */
  private validateChart(): string[] {
    const problems: string[] = [];
    const names = this.names;
    const all = Chart.of(this).node.findAll();
    for (const store of all.filter((c): c is AwsSecretStore => c instanceof AwsSecretStore)) {
      const problem = this.storeProblem(store);
      if (problem) problems.push(`${OWNER}: ${problem}`);
    }
    for (const target of all.filter((c): c is AgentService | LlmGateway => c instanceof AgentService || c instanceof LlmGateway)) {
      const what = `${target instanceof QueueWorker ? 'QueueWorker' : target.constructor.name} '${target.name}'`;
      if (!names.spec.agents.some((a) => a.name === target.name)) {
        problems.push(`${OWNER}: ${what}: ${this.undeclared(target.name)}`);
        continue;
      }
      const agent = names.agent(target.name);
      if (target.namespace !== agent.namespace) {
        problems.push(`${OWNER}: ${what} is in namespace '${target.namespace}' but its role trusts ServiceAccount ${agent.namespace}/${agent.serviceAccount}; remove its 'namespace'.`);
      }
      const annotated = target.serviceAccount.metadata.toJson().annotations?.[IRSA_ROLE_ANNOTATION] as string | undefined;
      if (annotated !== undefined && annotated !== agent.roleArn) {
        problems.push(
          `${OWNER}: ${what}'s ServiceAccount is annotated with the role ${annotated}, but the platform spec's role of '${target.name}' is ${agent.roleArn}, the one trusting its ServiceAccount. ` +
            `Use awsRole: platform.roleOf('${target.name}') (and platform.workerQueue('${target.name}') for a worker).`,
        );
      }
      if (target instanceof QueueWorker && target.queue.type === WorkerQueueType.SQS) problems.push(...this.queueProblems(target, what));
      if (target instanceof LlmGateway) problems.push(...this.gatewayProblems(target, what));
    }
    for (const secret of all.filter((c): c is ExternalSecret => c instanceof ExternalSecret)) problems.push(...this.externalSecretProblems(secret));
    return problems;
  }

  /** A gateway on the platform's generated signing keys serves exactly the agents the spec gives it: each needs its key. */
  private gatewayProblems(gateway: LlmGateway, what: string): string[] {
    const declared = this.names.spec.agents.filter((a) => a.gateway === gateway.name).map((a) => a.name);
    if (declared.length === 0 || gateway.signingKeysAwsSecretId !== this.names.gatewaySigningKeys(gateway.name).secretName) return [];
    const connected = gateway.agents.map((a) => a.name);
    const problems: string[] = [];
    for (const agent of connected.filter((a) => !declared.includes(a))) {
      problems.push(
        `${OWNER}: ${what} serves '${agent}', but the platform spec does not give '${agent}' this gateway, so the cloud side generates no signing key for it: ` +
          `set { name: '${agent}', gateway: '${gateway.name}' } in platform.agents.`,
      );
    }
    for (const agent of declared.filter((a) => !connected.includes(a))) {
      problems.push(
        `${OWNER}: the platform spec gives '${agent}' the gateway '${gateway.name}', but ${what} does not serve it: connect it (gateway.connect(agent) or the agent's 'gateway' prop), or remove 'gateway' from '${agent}' in platform.agents.`,
      );
    }
    return problems;
  }

  private queueProblems(worker: QueueWorker, what: string): string[] {
    const names = this.names;
    const queue = worker.queue;
    if (!names.spec.workerQueues.some((q) => q.worker === worker.name)) {
      return [`${OWNER}: ${what} consumes an SQS queue but has no declared queue: add { worker: '${worker.name}' } to platform.workerQueues and use queue: platform.workerQueue('${worker.name}').`];
    }
    const problems: string[] = [];
    const declared = names.workerQueue(worker.name);
    if (queue.queueUrl !== declared.queueUrl) {
      problems.push(`${OWNER}: ${what} consumes ${queue.queueUrl}, but the platform spec's queue of '${worker.name}' is ${declared.queueUrl}; use queue: platform.workerQueue('${worker.name}').`);
    }
    if (queue.region !== names.region) {
      problems.push(`${OWNER}: ${what}'s queue is in region '${queue.region}' but the platform spec's 'aws.region' is '${names.region}' (region mismatch); use queue: platform.workerQueue('${worker.name}').`);
    }
    const scaler = queue.scalerRoleArn;
    if (scaler !== undefined && scaler !== names.keda.roleArn) {
      problems.push(
        `${OWNER}: ${what}: KEDA would assume ${scaler} to read the queue, but only the platform spec's KEDA role ${names.keda.roleArn} trusts ` +
          `KEDA's ServiceAccount ${names.keda.namespace}/${names.keda.serviceAccount}; set 'scalerRoleArn' to it, or use queue: platform.workerQueue('${worker.name}').`,
      );
    }
    return problems;
  }

  /** An ExternalSecret reading through the platform's store reads only secrets the spec declares, by their properties. */
  private externalSecretProblems(secret: ExternalSecret): string[] {
    const spec = secret.toJson().spec ?? {};
    const ref = spec.secretStoreRef ?? {};
    if (ref.name !== this.secretStore.name || (ref.kind ?? SecretStoreKind.SECRET_STORE) !== SecretStoreKind.SECRET_STORE) return [];
    const declared = new Map<string, string[]>(this.names.providerKeys().map((k) => [k.secretName, [k.property]]));
    const redis = this.names.redis;
    declared.set(redis.connectionSecretName, [redis.urlProperty, redis.authTokenProperty]);
    for (const keys of this.names.gateways()) declared.set(keys.secretName, [...keys.agents]);
    for (const token of this.names.approverTokens()) declared.set(token.secretName, [token.property]);
    const what = `ExternalSecret '${secret.name}'`;
    const reads: Array<{ key: string; property?: string }> = [
      ...(spec.data ?? []).map((d: { remoteRef: { key: string; property?: string } }) => d.remoteRef),
      ...(spec.dataFrom ?? []).filter((d: { extract?: unknown }) => d.extract).map((d: { extract: { key: string } }) => ({ key: d.extract.key })),
    ];
    const problems: string[] = [];
    for (const { key, property } of reads) {
      const properties = declared.get(key);
      if (!properties) {
        problems.push(
          `${OWNER}: ${what} reads the secret '${key}', which is referenced but never declared in the platform spec '${this.names.prefix}' (the store's role cannot read it): ` +
            `declare it (platform.providerKeys, or 'gateway' and 'approvals' on platform.agents) and use platform.providerKey(name), platform.signingKeys(gateway) or platform.approverToken(agent), or fix the name (declared: ${[...declared.keys()].join(', ')}).`,
        );
      } else if (property !== undefined && !properties.includes(property)) {
        problems.push(`${OWNER}: ${what} reads the property '${property}' of '${key}', which holds ${properties.map((p) => `'${p}'`).join(' and ')}; fix the property.`);
      }
    }
    return problems;
  }
}
