/**
 * AgentCloud's bad input: each error is thrown at construction (props) or at synth (the stack's
 * provider, cross-construct checks), names the field and says the fix.
 */
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import { TerraformStack, TerraformVariable, Testing } from 'cdktf';
import { platform } from '../../examples/platform';
import { AgentCloud, type AgentCloudProps } from '../../lib/cloud';
import { agentCloud, awsStack, validProps } from './helpers';

const construct = (overrides: Partial<AgentCloudProps>) => () => agentCloud(awsStack(), overrides);
const withSpec = (change: (spec: any) => void) => {
  const spec = structuredClone(platform) as any;
  change(spec);
  return construct({ spec });
};

describe('AgentCloud errors at construction', () => {
  test.each<[string, () => unknown, string]>([
    ['missing spec', construct({ spec: undefined as any }), "AgentCloud: 'spec' is required"],
    [
      'a worker queue without a matching worker',
      withSpec((s) => (s.workerQueues[0].worker = 'researcher')),
      "AgentCloud: 'spec' is invalid:\n  spec.workerQueues[0].worker: 'researcher' names no agent: a worker queue needs its worker; add an agent named 'researcher' to 'agents' or fix the name",
    ],
    [
      'a secret referenced but never declared',
      withSpec((s) => (s.agents[1].providerKeys = ['openai', 'mistral'])),
      "spec.agents[1].providerKeys[1]: the secret 'mistral' is referenced but never declared; add { name: 'mistral' } to 'providerKeys'",
    ],
    [
      'a region mismatch between the spec and the cluster',
      withSpec((s) => (s.aws.region = 'eu-west-1')),
      "spec.kubernetes.cluster.oidcIssuerUrl: the cluster is in eu-central-1 but 'aws.region' is eu-west-1",
    ],
    ['missing VPC', construct({ vpcId: undefined as any }), "AgentCloud: 'vpcId' is required: the id of an existing VPC (e.g. 'vpc-0a1b2c3d4e5f67890')"],
    ['an empty VPC id', construct({ vpcId: '' }), "AgentCloud: 'vpcId' is required"],
    ['a subnet id where the VPC id goes', construct({ vpcId: 'subnet-0a1b2c3d4e5f60001' }), "AgentCloud: 'vpcId' ('subnet-0a1b2c3d4e5f60001') is not a VPC id; expected 'vpc-'"],
    ['missing subnets', construct({ privateSubnetIds: undefined as any }), "AgentCloud: 'privateSubnetIds' is required: private subnets in at least two availability zones"],
    ['no subnets', construct({ privateSubnetIds: [] }), "AgentCloud: 'privateSubnetIds' is required"],
    ['one subnet', construct({ privateSubnetIds: ['subnet-0a1b2c3d4e5f60001'] }), "AgentCloud: 'privateSubnetIds' has 1 id(s) but needs at least 2"],
    ['a malformed subnet id', construct({ privateSubnetIds: ['subnet-0a1b2c3d4e5f60001', 'subnet-xyz'] }), "AgentCloud: 'privateSubnetIds[1]' ('subnet-xyz') is not a subnet id"],
    ['a subnet listed twice', construct({ privateSubnetIds: ['subnet-0a1b2c3d4e5f60001', 'subnet-0a1b2c3d4e5f60001'] }), "'privateSubnetIds' lists subnet-0a1b2c3d4e5f60001 twice"],
    ['missing cluster security group', construct({ clusterSecurityGroupId: '' }), "AgentCloud: 'clusterSecurityGroupId' is required: the id of an existing security group"],
    [
      'provider keys without a rotation decision',
      construct({ providerKeyRotation: undefined }),
      "AgentCloud: 'providerKeyRotation' is required because the spec declares provider keys (openai, anthropic): ProviderKeyRotation.withLambda({ functionArn }) or ProviderKeyRotation.waived(",
    ],
    ['a single Redis node', construct({ redis: { numCacheClusters: 1 } }), "AgentCloud: 'redis.numCacheClusters' (1) must be 2 to 6: Multi-AZ automatic failover needs a replica in another zone"],
    ['no snapshots', construct({ redis: { snapshotRetentionDays: 0 } }), "AgentCloud: 'redis.snapshotRetentionDays' (0) must be 1 to 35 days"],
    ['Redis 5', construct({ redis: { engineVersion: '5.0.6' } }), "AgentCloud: 'redis.engineVersion' ('5.0.6') must be Redis 6 or later"],
    ['a node type that is not one', construct({ redis: { nodeType: 't4g.small' } }), "AgentCloud: 'redis.nodeType' ('t4g.small') must be an ElastiCache node type such as 'cache.t4g.small'"],
    ['a retention CloudWatch does not accept', construct({ logRetentionDays: 100 }), "AgentCloud: 'logRetentionDays' (100) must be a value CloudWatch Logs accepts: 1, 3, 5, 7, 14, 30, 60, 90, 120"],
    ['a bad alarm email', construct({ alarmEmails: ['oncall'] }), "AgentCloud: 'alarmEmails[0]' ('oncall') is not an email address."],
    ['a percent threshold over 100', construct({ alarmThresholds: { redisCpuPercent: 120 } }), "AgentCloud: 'alarmThresholds.redisCpuPercent' (120) must be a number above 0 and at most 100."],
  ])('%s', (_, build, message) => {
    expect(build).toThrow(message);
  });

  test('ids from a variable, a data source or remote state are taken as they are (they resolve at apply)', () => {
    const stack = awsStack();
    const vpc = new TerraformVariable(stack, 'vpc_id', { type: 'string' });
    const subnets = new TerraformVariable(stack, 'subnet_ids', { type: 'list(string)' });
    expect(() => agentCloud(stack, { vpcId: vpc.stringValue, privateSubnetIds: subnets.listValue, clusterSecurityGroupId: 'sg-0a1b2c3d4e5f67890' })).not.toThrow();
  });

  test('names the spec does not declare are errors naming the fix', () => {
    const cloud = agentCloud(awsStack());
    expect(() => cloud.roleOf('billing')).toThrow("'billing' is not an agent of the platform spec 'acme-agents'; add it to 'agents'");
    expect(() => cloud.queueOf('support-chat')).toThrow("'support-chat' has no queue in the platform spec 'acme-agents'; add { worker: 'support-chat' } to 'workerQueues'");
    expect(() => cloud.providerKeySecretOf('mistral')).toThrow("the secret 'mistral' is referenced but never declared in the platform spec 'acme-agents'; add { name: 'mistral' } to 'providerKeys'");
  });

  test('a wildcard action added to a role is refused where it is written', () => {
    const cloud = agentCloud(awsStack());
    expect(() => cloud.roleOf('research-worker').addToPolicy({ sid: 'ReadDocs', actions: ['s3:Get*'], resources: ['arn:aws:s3:::docs/*'] })).toThrow(
      "ServiceAccountRole 'acme-agents-research-worker': statement 'ReadDocs' allows 's3:Get*': wildcard actions are not allowed (least privilege); list the actions the workload calls.",
    );
  });
});

describe('AgentCloud errors at synth', () => {
  const synthErrors = (stack: TerraformStack) => () => Testing.synth(stack, true);

  test('a region mismatch between the cloud side (the AWS provider) and the spec', () => {
    const stack = awsStack('us-east-1');
    agentCloud(stack);
    expect(synthErrors(stack)).toThrow(
      "AgentCloud: the AwsProvider 'stack/aws' has region 'us-east-1' but the spec's 'aws.region' is 'eu-central-1': the Kubernetes side would read queues and secrets in eu-central-1. Set the provider's region to 'eu-central-1' or fix 'aws.region'.",
    );
  });

  test('a provider without a region (it would come from the environment)', () => {
    const stack = new TerraformStack(Testing.app(), 'stack');
    new AwsProvider(stack, 'aws', {});
    agentCloud(stack);
    expect(synthErrors(stack)).toThrow("AgentCloud: the AwsProvider 'stack/aws' sets no 'region', so the region would come from the environment; set region: 'eu-central-1'");
  });

  test('no AWS provider at all', () => {
    const stack = new TerraformStack(Testing.app(), 'stack');
    agentCloud(stack);
    expect(synthErrors(stack)).toThrow("AgentCloud: the stack has no AwsProvider; add new AwsProvider(stack, 'aws', { region: 'eu-central-1', allowedAccountIds: ['111122223333'] }).");
  });

  test('a provider pinned to another account', () => {
    const stack = new TerraformStack(Testing.app(), 'stack');
    new AwsProvider(stack, 'aws', { region: 'eu-central-1', allowedAccountIds: ['999999999999'] });
    agentCloud(stack);
    expect(synthErrors(stack)).toThrow("allows accounts 999999999999 but the spec's 'aws.accountId' is '111122223333' (role ARNs are derived from it)");
  });

  test('two platforms in one stack', () => {
    const stack = awsStack();
    agentCloud(stack);
    new AgentCloud(stack, 'Second', validProps());
    expect(synthErrors(stack)).toThrow('the stack holds 2 AgentClouds (stack/AgentCloud, stack/Second); their outputs would collide');
  });
});
