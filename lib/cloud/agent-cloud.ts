/**
 * AgentCloud: the AWS side of the platform from the platform spec. A KMS key, Redis, a queue per
 * queue-driven worker, provider key secrets, an IRSA role per ServiceAccount, alarms, a dashboard
 * and outputs, all named by PlatformNames so the Kubernetes side refers to them without anything
 * being copied from `cdktf apply`. The cloud rule pack checks it all at synth.
 */
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import { TerraformOutput, TerraformStack, Token } from 'cdktf';
import { Construct } from 'constructs';
import { platformNamesFor, type PlatformNames, type PlatformSpec } from '../spec/platform';
import { AgentRedis, checkRedisOptions, type AgentRedisOptions } from './agent-redis';
import { GeneratedSecret } from './generated-secret';
import { pascalCase } from './construct-ids';
import type { PolicyStatement } from './iam-policy';
import { PlatformKey } from './platform-key';
import { checkAlarmOptions, PlatformMonitoring, type AlarmThresholds } from './platform-monitoring';
import { ProviderKeyRotation, ProviderKeySecret } from './provider-key-secret';
import { CloudRules } from './rules/cloud-rules';
import { ServiceAccountRole } from './service-account-role';
import { checkLogRetention, checkResourceId, checkResourceIds } from './validate';
import { SqsWorkerQueue } from './sqs-worker-queue';

export interface AgentCloudProps {
  /** The platform spec both sides derive their names from. */
  readonly spec: PlatformSpec;
  /** The VPC the cluster runs in (bring-your-own), e.g. 'vpc-0a1b2c3d4e5f67890' or a token. */
  readonly vpcId: string;
  /** Private subnets of that VPC in at least two availability zones: Redis nodes go there. */
  readonly privateSubnetIds: string[];
  /** The security group of the cluster's nodes (or pods): the only one Redis accepts connections from. */
  readonly clusterSecurityGroupId: string;
  /**
   * How provider keys rotate: `ProviderKeyRotation.withLambda(...)`, or `ProviderKeyRotation.waived('why')`.
   * Required when the spec declares provider keys.
   * @default - none (an error when the spec has provider keys)
   */
  readonly providerKeyRotation?: ProviderKeyRotation;
  /**
   * Redis sizing and schedules.
   * @default - 2 cache.t4g.small nodes, Redis 7.1, 7 days of snapshots
   */
  readonly redis?: AgentRedisOptions;
  /**
   * Days the platform's log groups keep events.
   * @default 365
   */
  readonly logRetentionDays?: number;
  /**
   * Email addresses subscribed to the alarm topic.
   * @default - none: subscribe your paging tool to the `alarm_topic_arn` output
   */
  readonly alarmEmails?: string[];
  /**
   * When the alarms fire.
   * @default - see AlarmThresholds
   */
  readonly alarmThresholds?: AlarmThresholds;
  /**
   * A permissions boundary put on every IAM role (when your organization requires one).
   * @default - none
   */
  readonly permissionsBoundaryArn?: string;
  /**
   * Tags on every resource, besides `cdk-agents:platform = <spec name>`.
   * @default - none
   */
  readonly tags?: Record<string, string>;
}

/**
 * The platform's cloud resources. It has no single main resource, so no 'Resource' child: each
 * part is a public field (`key`, `redis`, `monitoring`) or reached by name (`roleOf`, `queueOf`).
 */
export class AgentCloud extends Construct {
  /** Every shared name, from the spec: what the Kubernetes side uses too. */
  public readonly names: PlatformNames;
  public readonly key: PlatformKey;
  public readonly redis: AgentRedis;
  /** The role of the SecretStore's ServiceAccount: reads the provider keys and the Redis connection. */
  public readonly secretStoreRole: ServiceAccountRole;
  /** The role of KEDA's operator: reads queue depths to scale workers (only with worker queues). */
  public readonly kedaRole?: ServiceAccountRole;
  public readonly monitoring: PlatformMonitoring;
  private readonly roles = new Map<string, ServiceAccountRole>();
  private readonly queues = new Map<string, SqsWorkerQueue>();
  private readonly providerKeys = new Map<string, ProviderKeySecret>();
  private readonly signingKeys = new Map<string, GeneratedSecret>();
  private readonly approverTokens = new Map<string, GeneratedSecret>();

  constructor(scope: Construct, id: string, props: AgentCloudProps) {
    super(scope, id);
    const owner = 'AgentCloud';
    this.names = platformNamesFor(owner, props.spec);
    const names = this.names;
    checkResourceId(owner, 'vpcId', props.vpcId, 'vpc');
    checkResourceIds(owner, 'privateSubnetIds', props.privateSubnetIds, 'subnet', 2, 'private subnets in at least two availability zones (Multi-AZ Redis)');
    checkResourceId(owner, 'clusterSecurityGroupId', props.clusterSecurityGroupId, 'sg');
    checkRedisOptions(owner, 'redis.', props.redis ?? {});
    const logRetentionDays = props.logRetentionDays ?? 365;
    checkLogRetention(owner, 'logRetentionDays', logRetentionDays);
    checkAlarmOptions(owner, 'alarmThresholds', props.alarmEmails, props.alarmThresholds);
    if (names.spec.providerKeys.length && !props.providerKeyRotation) {
      throw new Error(
        `${owner}: 'providerKeyRotation' is required because the spec declares provider keys (${names.spec.providerKeys.map((k) => k.name).join(', ')}): ` +
          "ProviderKeyRotation.withLambda({ functionArn }) or ProviderKeyRotation.waived('why keys are rotated by hand').",
      );
    }
    const tags = { 'cdk-agents:platform': names.prefix, ...props.tags };

    this.key = new PlatformKey(this, 'Key', { names, tags });
    this.redis = new AgentRedis(this, 'Redis', {
      ...props.redis,
      names,
      key: this.key,
      vpcId: props.vpcId,
      subnetIds: props.privateSubnetIds,
      allowedSecurityGroupIds: [props.clusterSecurityGroupId],
      logRetentionDays,
      tags,
    });
    for (const queue of names.workerQueues()) {
      this.queues.set(queue.worker, new SqsWorkerQueue(this, `${pascalCase(queue.worker)}Queue`, { names, worker: queue.worker, key: this.key, tags }));
    }
    for (const key of names.providerKeys()) {
      this.providerKeys.set(
        key.provider,
        new ProviderKeySecret(this, `${pascalCase(key.provider)}Key`, { names, provider: key.provider, key: this.key, rotation: props.providerKeyRotation!, tags }),
      );
    }

    // The platform's own shared secrets, generated: no kubectl step between apply and the first sync.
    const generated = (id: string, secretName: string, description: string, properties: readonly string[]) =>
      new GeneratedSecret(this, id, { secretName, description, properties, key: this.key, tags });
    for (const g of names.gateways()) {
      const description = `Signing keys the sidecars of ${g.agents.join(', ')} prove their identity to the gateway ${g.gateway} with, one per agent`;
      this.signingKeys.set(g.gateway, generated(`${pascalCase(g.gateway)}SigningKeys`, g.secretName, description, g.agents));
    }
    for (const t of names.approverTokens()) {
      this.approverTokens.set(t.agent, generated(`${pascalCase(t.agent)}ApproverToken`, t.secretName, `Bearer token of the approvals API of ${t.agent}`, [t.property]));
    }

    const role = (id: string, roleName: string, namespace: string, serviceAccount: string, statements: PolicyStatement[]) =>
      new ServiceAccountRole(this, id, {
        roleName,
        oidcProviderArn: names.oidcProviderArn,
        oidcIssuer: names.oidcIssuer,
        namespace,
        serviceAccount,
        statements,
        permissionsBoundaryArn: props.permissionsBoundaryArn,
        tags,
      });
    for (const agent of names.agents()) {
      this.roles.set(agent.agent, role(`${pascalCase(agent.agent)}Role`, agent.roleName, agent.namespace, agent.serviceAccount, this.queueStatements(agent.agent)));
    }
    const secrets = [
      ...[...this.providerKeys.values()].map((k) => k.secret.arn),
      this.redis.connectionSecret.arn,
      ...[...this.signingKeys.values(), ...this.approverTokens.values()].map((g) => g.secret.arn),
    ];
    this.secretStoreRole = role('SecretStoreRole', names.secretStore.roleName, names.secretStore.namespace, names.secretStore.serviceAccount, [
      { sid: 'ReadPlatformSecrets', actions: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'], resources: secrets },
      this.keyStatement('DecryptSecrets', ['kms:Decrypt'], 'secretsmanager'),
    ]);
    if (this.queues.size) {
      this.kedaRole = role('KedaRole', names.keda.roleName, names.keda.namespace, names.keda.serviceAccount, [
        { sid: 'ReadQueueDepths', actions: ['sqs:GetQueueAttributes'], resources: [...this.queues.values()].map((q) => q.queue.arn) },
      ]);
    }

    this.monitoring = new PlatformMonitoring(this, 'Monitoring', {
      names,
      key: this.key,
      redisNodeCount: this.redis.nodeCount,
      alarmEmails: props.alarmEmails,
      thresholds: props.alarmThresholds,
      tags,
    });
    this.addOutputs();
    CloudRules.applyTo(this);
    this.node.addValidation({ validate: () => this.checkStack() });
  }

  /** The IRSA role of an agent's ServiceAccount; add permissions with `addToPolicy`. */
  public roleOf(agent: string): ServiceAccountRole {
    this.names.agent(agent);
    return this.roles.get(agent)!;
  }

  /** The queue a worker consumes. */
  public queueOf(worker: string): SqsWorkerQueue {
    this.names.workerQueue(worker);
    return this.queues.get(worker)!;
  }

  /** The generated signing keys of a gateway some agent of the spec declares. */
  public signingKeysOf(gateway: string): GeneratedSecret {
    this.names.gatewaySigningKeys(gateway);
    return this.signingKeys.get(gateway)!;
  }

  /** The generated approver token of an agent declaring `approvals`. */
  public approverTokenOf(agent: string): GeneratedSecret {
    this.names.approverToken(agent);
    return this.approverTokens.get(agent)!;
  }

  /** The secret of a provider key declared in the spec. */
  public providerKeySecretOf(provider: string): ProviderKeySecret {
    this.names.providerKey(provider);
    return this.providerKeys.get(provider)!;
  }

  /** Receive and delete for the worker of a queue, send for its producers, and the key use SQS needs for each. */
  private queueStatements(agent: string): PolicyStatement[] {
    const statements: PolicyStatement[] = [];
    const keyActions = new Set<string>();
    for (const [worker, queue] of this.queues) {
      if (worker === agent) {
        statements.push({
          sid: `Consume${pascalCase(worker)}Queue`,
          actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'],
          resources: [queue.queue.arn],
        });
        keyActions.add('kms:Decrypt');
      }
      if (queue.queueNames.producers.includes(agent)) {
        statements.push({ sid: `SendTo${pascalCase(worker)}Queue`, actions: ['sqs:SendMessage', 'sqs:GetQueueUrl'], resources: [queue.queue.arn] });
        keyActions.add('kms:GenerateDataKey').add('kms:Decrypt');
      }
    }
    if (keyActions.size) statements.push(this.keyStatement('QueueKeyViaSqs', [...keyActions].sort(), 'sqs'));
    return statements;
  }

  /** Use of the platform key, only through the given service. */
  private keyStatement(sid: string, actions: string[], service: string): PolicyStatement {
    return {
      sid,
      actions,
      resources: [this.key.arn],
      conditions: { StringEquals: { 'kms:ViaService': [`${service}.${this.names.region}.amazonaws.com`] } },
    };
  }

  private addOutputs(): void {
    const names = this.names;
    const output = (logicalId: string, description: string, value: unknown) => {
      new TerraformOutput(this, logicalId, { description, value }).overrideLogicalId(logicalId);
    };
    output('kms_key_arn', 'The platform KMS key', this.key.arn);
    output('redis_primary_endpoint', 'Redis primary endpoint (TLS, AUTH); the full URL and token are in redis_connection_secret', this.redis.replicationGroup.primaryEndpointAddress);
    output('redis_connection_secret', 'Secrets Manager secret Terraform writes the Redis URL and AUTH token into', {
      name: names.redis.connectionSecretName,
      arn: this.redis.connectionSecret.arn,
      url_property: names.redis.urlProperty,
      auth_token_property: names.redis.authTokenProperty,
    });
    output('redis_security_group_id', "Redis's security group (allow egress to it on 6379 if your cluster restricts egress)", this.redis.securityGroup.id);
    const roles: Record<string, string> = {};
    for (const agent of names.agents()) roles[`${agent.namespace}/${agent.serviceAccount}`] = this.roles.get(agent.agent)!.arn;
    roles[`${names.secretStore.namespace}/${names.secretStore.serviceAccount}`] = this.secretStoreRole.arn;
    if (this.kedaRole) roles[`${names.keda.namespace}/${names.keda.serviceAccount}`] = this.kedaRole.arn;
    output('service_account_roles', 'IAM role ARN per ServiceAccount (namespace/name): the eks.amazonaws.com/role-arn annotation', roles);
    const queues: Record<string, unknown> = {};
    for (const [worker, q] of this.queues) {
      queues[worker] = { url: q.queue.url, arn: q.queue.arn, dead_letter_url: q.deadLetterQueue.url, dead_letter_arn: q.deadLetterQueue.arn };
    }
    output('worker_queues', 'SQS queue per worker, with its dead-letter queue', queues);
    const keys: Record<string, unknown> = {};
    for (const [provider, k] of this.providerKeys) keys[provider] = { name: k.keyNames.secretName, arn: k.secret.arn, property: k.keyNames.property };
    output('provider_key_secrets', 'Provider key secrets: put the keys in with aws secretsmanager put-secret-value (never through Terraform)', keys);
    const generated: Record<string, unknown> = {};
    for (const [gateway, g] of this.signingKeys) {
      const keys = names.gatewaySigningKeys(gateway);
      generated[`${gateway}/signing-keys`] = { name: keys.secretName, arn: g.secret.arn, properties: keys.agents };
    }
    for (const [agent, g] of this.approverTokens) {
      const token = names.approverToken(agent);
      generated[`${agent}/approver-token`] = { name: token.secretName, arn: g.secret.arn, properties: [token.property] };
    }
    output('generated_secrets', 'Secrets Terraform generates (gateway signing keys, approver tokens): the Kubernetes side syncs them; rotate one value with terraform apply -replace on its terraform_data', generated);
    output('secret_store', 'The SecretStore the Kubernetes side creates (External Secrets, IRSA)', {
      name: names.secretStore.name,
      namespace: names.secretStore.namespace,
      service_account: names.secretStore.serviceAccount,
      role_arn: this.secretStoreRole.arn,
      region: names.region,
    });
    output('alarm_topic_arn', 'SNS topic of every alarm: subscribe your paging tool', this.monitoring.alarmTopic.arn);
    output('dashboard_url', 'The CloudWatch dashboard', `https://${names.region}.console.aws.amazon.com/cloudwatch/home?region=${names.region}#dashboards:name=${names.dashboardName}`);
  }

  /** At synth: the stack's AWS provider targets the spec's region and account, and holds one platform. */
  private checkStack(): string[] {
    const errors: string[] = [];
    const { region, accountId } = this.names;
    const stack = TerraformStack.of(this);
    const providers = stack.node.findAll().filter((c): c is AwsProvider => c instanceof AwsProvider && c.alias === undefined);
    if (!providers.length) {
      errors.push(`AgentCloud: the stack has no AwsProvider; add new AwsProvider(stack, 'aws', { region: '${region}', allowedAccountIds: ['${accountId}'] }).`);
    }
    for (const provider of providers) {
      const where = `the AwsProvider '${provider.node.path}'`;
      if (provider.region === undefined) {
        errors.push(`AgentCloud: ${where} sets no 'region', so the region would come from the environment; set region: '${region}' (the spec's 'aws.region').`);
      } else if (!Token.isUnresolved(provider.region) && provider.region !== region) {
        errors.push(
          `AgentCloud: ${where} has region '${provider.region}' but the spec's 'aws.region' is '${region}': the Kubernetes side would read queues and secrets in ${region}. Set the provider's region to '${region}' or fix 'aws.region'.`,
        );
      }
      const allowed = provider.allowedAccountIds;
      if (allowed && !Token.isUnresolved(allowed) && !allowed.includes(accountId)) {
        errors.push(`AgentCloud: ${where} allows accounts ${allowed.join(', ')} but the spec's 'aws.accountId' is '${accountId}' (role ARNs are derived from it); fix one of them.`);
      }
    }
    const platforms = stack.node.findAll().filter((c) => c instanceof AgentCloud);
    if (platforms.length > 1) {
      errors.push(`AgentCloud: the stack holds ${platforms.length} AgentClouds (${platforms.map((p) => p.node.path).join(', ')}); their outputs would collide: put each platform in its own TerraformStack.`);
    }
    return errors;
  }
}
