/**
 * AgentRedis: the shared store of budgets, rate limits, run state, approvals and the gateway
 * cache. An ElastiCache replication group across zones with automatic failover, TLS, AUTH and
 * encryption at rest with the platform key, reachable only from the cluster's security group.
 *
 * Its endpoint and token are learned at apply time, so Terraform writes them into a Secrets
 * Manager secret `{ url, auth_token }` that the Kubernetes side syncs with an ExternalSecret: no
 * copying between `cdktf apply` and `cdk8s synth`.
 */
import { CloudwatchLogGroup } from '@cdktf/provider-aws/lib/cloudwatch-log-group';
import { DataAwsSubnet } from '@cdktf/provider-aws/lib/data-aws-subnet';
import { DataAwsVpc } from '@cdktf/provider-aws/lib/data-aws-vpc';
import { DataAwsSecretsmanagerRandomPassword } from '@cdktf/provider-aws/lib/data-aws-secretsmanager-random-password';
import { ElasticacheReplicationGroup } from '@cdktf/provider-aws/lib/elasticache-replication-group';
import { ElasticacheSubnetGroup } from '@cdktf/provider-aws/lib/elasticache-subnet-group';
import { SecretsmanagerSecret } from '@cdktf/provider-aws/lib/secretsmanager-secret';
import { SecretsmanagerSecretVersion } from '@cdktf/provider-aws/lib/secretsmanager-secret-version';
import { SecurityGroup } from '@cdktf/provider-aws/lib/security-group';
import { VpcSecurityGroupIngressRule } from '@cdktf/provider-aws/lib/vpc-security-group-ingress-rule';
import { Fn, Token } from 'cdktf';
import { Construct } from 'constructs';
import type { PlatformNames, RedisNames } from '../spec/platform';
import type { PlatformKey } from './platform-key';
import { CloudRules } from './rules/cloud-rules';
import { checkLogRetention, checkResourceId, checkResourceIds } from './validate';

/** Sizing and schedules of the Redis replication group. */
export interface AgentRedisOptions {
  /**
   * The node type. Budgets, rate limits and run state are small; size up for a large response cache.
   * @default 'cache.t4g.small'
   */
  readonly nodeType?: string;
  /**
   * The Redis engine version (the runtime needs Redis 6 or later).
   * @default '7.1'
   */
  readonly engineVersion?: string;
  /**
   * Nodes: one primary and replicas, spread over the subnets' zones (2 to 6; failover needs 2).
   * @default 2
   */
  readonly numCacheClusters?: number;
  /**
   * Days of automatic daily snapshots kept (1 to 35).
   * @default 7
   */
  readonly snapshotRetentionDays?: number;
  /**
   * Daily snapshot window, UTC.
   * @default '02:00-03:00'
   */
  readonly snapshotWindow?: string;
  /**
   * Weekly maintenance window, UTC (must not overlap the snapshot window).
   * @default 'sun:03:30-sun:04:30'
   */
  readonly maintenanceWindow?: string;
}

export interface AgentRedisProps extends AgentRedisOptions {
  /** The platform's names. */
  readonly names: PlatformNames;
  /** Encrypts the data at rest, the secrets and the log groups. */
  readonly key: PlatformKey;
  /** The VPC the cluster runs in. */
  readonly vpcId: string;
  /** Private subnets in at least two zones. */
  readonly subnetIds: string[];
  /** Security groups allowed to connect on the Redis port (the cluster's nodes or pods). */
  readonly allowedSecurityGroupIds: string[];
  /**
   * Days the slow log and engine log are kept.
   * @default 365
   */
  readonly logRetentionDays?: number;
  /**
   * Tags on every resource.
   * @default - none
   */
  readonly tags?: Record<string, string>;
}

export class AgentRedis extends Construct {
  /** The replication group (the construct's default child). */
  public readonly replicationGroup: ElasticacheReplicationGroup;
  /** Open only to `allowedSecurityGroupIds` on the Redis port; no egress. */
  public readonly securityGroup: SecurityGroup;
  public readonly subnetGroup: ElasticacheSubnetGroup;
  /** The AUTH token Terraform generated (read by Terraform only). */
  public readonly authTokenSecret: SecretsmanagerSecret;
  /** `{ url, auth_token }`: what the Kubernetes side syncs. */
  public readonly connectionSecret: SecretsmanagerSecret;
  public readonly slowLog: CloudwatchLogGroup;
  public readonly engineLog: CloudwatchLogGroup;
  public readonly redisNames: RedisNames;
  /** How many nodes the group has (the dashboard and alarms watch each). */
  public readonly nodeCount: number;

  constructor(scope: Construct, id: string, props: AgentRedisProps) {
    super(scope, id);
    const { names, key } = props;
    const owner = 'AgentRedis';
    checkRedisOptions(owner, '', props);
    checkResourceId(owner, 'vpcId', props.vpcId, 'vpc');
    checkResourceIds(owner, 'subnetIds', props.subnetIds, 'subnet', 2, 'two private subnets in different availability zones (Multi-AZ failover)');
    checkResourceIds(owner, 'allowedSecurityGroupIds', props.allowedSecurityGroupIds, 'sg', 1, "the cluster's security group");
    const logRetentionDays = props.logRetentionDays ?? 365;
    checkLogRetention(owner, 'logRetentionDays', logRetentionDays);
    this.redisNames = names.redis;
    this.nodeCount = props.numCacheClusters ?? 2;
    const rg = this.redisNames;
    const tags = props.tags;

    const vpcCidr = names.spec.aws.vpcCidr;
    if (vpcCidr) {
      // The Kubernetes side opens Redis egress to aws.vpcCidr only: a spec naming another range
      // would leave every agent unable to reach its budget store. Checked when Terraform plans.
      new DataAwsVpc(this, 'Vpc', {
        id: props.vpcId,
        lifecycle: {
          postcondition: [
            {
              condition: `\${contains(self.cidr_block_associations[*].cidr_block, "${vpcCidr}")}`,
              errorMessage:
                `The platform spec's aws.vpcCidr (${vpcCidr}) is not a CIDR block of the VPC ${props.vpcId}: the agents' NetworkPolicies open Redis egress to that range only, ` +
                `so they could not reach Redis. Set aws.vpcCidr in the platform spec to the VPC's CIDR block (aws ec2 describe-vpcs --vpc-ids ${props.vpcId}) and synthesize both sides again.`,
            },
          ],
        },
      });
      // And Redis's own subnets inside it (a VPC may have secondary blocks): the subnet's
      // network, taken at the spec's prefix length, is the spec's block.
      const prefix = Number(vpcCidr.split('/')[1]);
      props.subnetIds.forEach((subnetId, i) => {
        new DataAwsSubnet(this, `Subnet${i}`, {
          id: subnetId,
          lifecycle: {
            postcondition: [
              {
                condition:
                  `\${tonumber(split("/", self.cidr_block)[1]) >= ${prefix} && ` +
                  `cidrsubnet(format("%s/%d", split("/", self.cidr_block)[0], ${prefix}), 0, 0) == "${vpcCidr}"}`,
                errorMessage:
                  `The Redis subnet ${subnetId} is not inside the platform spec's aws.vpcCidr (${vpcCidr}): the agents' NetworkPolicies open Redis egress to that range only. ` +
                  `Give AgentCloud private subnets inside ${vpcCidr} ('privateSubnetIds'), or set aws.vpcCidr to the block they are in.`,
              },
            ],
          },
        });
      });
    }

    this.securityGroup = new SecurityGroup(this, 'SecurityGroup', {
      name: rg.replicationGroupId,
      description: `Redis of the cdk-agents platform ${names.prefix}: port ${rg.port} from the cluster only`,
      vpcId: props.vpcId,
      // No egress rules: Terraform removes AWS's allow-all default, and Redis answers on the same connection.
      tags,
    });
    props.allowedSecurityGroupIds.forEach((groupId, i) => {
      new VpcSecurityGroupIngressRule(this, `IngressFromCluster${i}`, {
        securityGroupId: this.securityGroup.id,
        referencedSecurityGroupId: groupId,
        ipProtocol: 'tcp',
        fromPort: rg.port,
        toPort: rg.port,
        description: 'Redis (TLS) from the Kubernetes cluster',
        tags,
      });
    });
    this.subnetGroup = new ElasticacheSubnetGroup(this, 'SubnetGroup', {
      name: rg.replicationGroupId,
      description: `Private subnets of the cdk-agents platform ${names.prefix}`,
      subnetIds: props.subnetIds,
      tags,
    });

    // Generated by Secrets Manager (letters and digits: AUTH refuses some punctuation) and pinned by a secret
    // version that ignores the data source's fresh value on every plan; `terraform apply -replace` on it rotates.
    const tokenSource = new DataAwsSecretsmanagerRandomPassword(this, 'AuthTokenSource', { passwordLength: 64, excludePunctuation: true });
    this.authTokenSecret = new SecretsmanagerSecret(this, 'AuthTokenSecret', {
      name: rg.authTokenSecretName,
      description: `AUTH token of ${rg.replicationGroupId}, generated by Terraform. Rotate with terraform apply -replace on its secret version.`,
      kmsKeyId: key.arn,
      recoveryWindowInDays: 7,
      tags,
    });
    const tokenVersion = new SecretsmanagerSecretVersion(this, 'AuthTokenVersion', {
      secretId: this.authTokenSecret.id,
      secretString: tokenSource.randomPassword,
      lifecycle: { ignoreChanges: ['secret_string'] },
    });

    this.slowLog = logGroup(this, 'SlowLog', `${names.logGroupPrefix}redis/slow-log`, key, logRetentionDays, tags);
    this.engineLog = logGroup(this, 'EngineLog', `${names.logGroupPrefix}redis/engine-log`, key, logRetentionDays, tags);

    this.replicationGroup = new ElasticacheReplicationGroup(this, 'Resource', {
      replicationGroupId: rg.replicationGroupId,
      description: `Budgets, rate limits, run state and approvals of the cdk-agents platform ${names.prefix}`,
      engine: 'redis',
      engineVersion: props.engineVersion ?? '7.1',
      nodeType: props.nodeType ?? 'cache.t4g.small',
      port: rg.port,
      numCacheClusters: this.nodeCount,
      automaticFailoverEnabled: true,
      multiAzEnabled: true,
      subnetGroupName: this.subnetGroup.name,
      securityGroupIds: [this.securityGroup.id],
      atRestEncryptionEnabled: 'true',
      kmsKeyId: key.arn,
      transitEncryptionEnabled: true,
      transitEncryptionMode: 'required',
      authToken: tokenVersion.secretString,
      // A new token is accepted alongside the old one, so clients reconnecting with either keep working.
      authTokenUpdateStrategy: 'ROTATE',
      snapshotRetentionLimit: props.snapshotRetentionDays ?? 7,
      snapshotWindow: props.snapshotWindow ?? '02:00-03:00',
      maintenanceWindow: props.maintenanceWindow ?? 'sun:03:30-sun:04:30',
      autoMinorVersionUpgrade: 'true',
      // A rotated token must be live when the connection secret hands it out, not at the next maintenance window.
      applyImmediately: true,
      logDeliveryConfiguration: [
        { destination: this.slowLog.name, destinationType: 'cloudwatch-logs', logFormat: 'json', logType: 'slow-log' },
        { destination: this.engineLog.name, destinationType: 'cloudwatch-logs', logFormat: 'json', logType: 'engine-log' },
      ],
      tags,
    });

    this.connectionSecret = new SecretsmanagerSecret(this, 'ConnectionSecret', {
      name: rg.connectionSecretName,
      description: `Connection to ${rg.replicationGroupId}, written by Terraform at apply: JSON {"${rg.urlProperty}": "rediss://host:port", "${rg.authTokenProperty}": "..."}.`,
      kmsKeyId: key.arn,
      recoveryWindowInDays: 7,
      tags,
    });
    new SecretsmanagerSecretVersion(this, 'ConnectionSecretVersion', {
      secretId: this.connectionSecret.id,
      secretString: Fn.jsonencode({
        [rg.urlProperty]: `rediss://${this.replicationGroup.primaryEndpointAddress}:${rg.port}`,
        [rg.authTokenProperty]: tokenVersion.secretString,
      }),
    });

    const terraformOwned = 'Terraform writes this value from the replication group; it changes when the AUTH token is rotated with terraform apply -replace on the token version, not by a rotation function.';
    CloudRules.suppress(this.authTokenSecret, 'AGT-AWS-10', terraformOwned);
    CloudRules.suppress(this.connectionSecret, 'AGT-AWS-10', terraformOwned);
  }
}

/** Checks the sizing options; `prefix` is how the caller names them ('redis.' in AgentCloud). */
export function checkRedisOptions(owner: string, prefix: string, options: AgentRedisOptions): void {
  const nodes = options.numCacheClusters ?? 2;
  if (!Number.isInteger(nodes) || nodes < 2 || nodes > 6) {
    throw new Error(
      `${owner}: '${prefix}numCacheClusters' (${nodes}) must be 2 to 6: Multi-AZ automatic failover needs a replica in another zone, and a replication group has at most 6 nodes.`,
    );
  }
  const snapshots = options.snapshotRetentionDays ?? 7;
  if (!Number.isInteger(snapshots) || snapshots < 1 || snapshots > 35) {
    throw new Error(`${owner}: '${prefix}snapshotRetentionDays' (${snapshots}) must be 1 to 35 days: budgets and pending approvals must survive a bad upgrade.`);
  }
  const version = options.engineVersion ?? '7.1';
  if (!Token.isUnresolved(version) && !/^([6-9]|\d{2,})(\.\d+)?(\.x)?$/.test(version)) {
    throw new Error(`${owner}: '${prefix}engineVersion' ('${version}') must be Redis 6 or later (e.g. '7.1'): the runtime uses AUTH over TLS and Lua scripts.`);
  }
  if (options.nodeType !== undefined && !Token.isUnresolved(options.nodeType) && !/^cache\.[a-z0-9]+\.[a-z0-9]+$/.test(options.nodeType)) {
    throw new Error(`${owner}: '${prefix}nodeType' ('${options.nodeType}') must be an ElastiCache node type such as 'cache.t4g.small'.`);
  }
}

function logGroup(scope: Construct, id: string, name: string, key: PlatformKey, retentionInDays: number, tags?: Record<string, string>): CloudwatchLogGroup {
  return new CloudwatchLogGroup(scope, id, { name, retentionInDays, kmsKeyId: key.arn, tags });
}
