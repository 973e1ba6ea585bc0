/** AgentRedis used on its own: network ids, sizing and retention, each error naming its prop. */
import { platform } from '../../examples/platform';
import { AgentRedis, PlatformKey, platformNames, type AgentRedisProps } from '../../lib/cloud';
import { awsStack } from './helpers';

const names = platformNames(platform);
const build = (overrides: Partial<AgentRedisProps>) => () => {
  const stack = awsStack();
  new AgentRedis(stack, 'Redis', {
    names,
    key: new PlatformKey(stack, 'Key', { names }),
    vpcId: 'vpc-0a1b2c3d4e5f67890',
    subnetIds: ['subnet-0a1b2c3d4e5f60001', 'subnet-0a1b2c3d4e5f60002'],
    allowedSecurityGroupIds: ['sg-0a1b2c3d4e5f67890'],
    ...overrides,
  });
};

describe('AgentRedis errors', () => {
  test.each<[string, () => unknown, string]>([
    ['missing VPC', build({ vpcId: '' }), "AgentRedis: 'vpcId' is required"],
    ['one subnet', build({ subnetIds: ['subnet-0a1b2c3d4e5f60001'] }), "AgentRedis: 'subnetIds' has 1 id(s) but needs at least 2: two private subnets in different availability zones"],
    ['nobody may connect', build({ allowedSecurityGroupIds: [] }), "AgentRedis: 'allowedSecurityGroupIds' is required: the cluster's security group"],
    ['a security group id that is not one', build({ allowedSecurityGroupIds: ['sg-1'] }), "AgentRedis: 'allowedSecurityGroupIds[0]' ('sg-1') is not a security group id"],
    ['seven nodes', build({ numCacheClusters: 7 }), "AgentRedis: 'numCacheClusters' (7) must be 2 to 6"],
    ['a retention CloudWatch refuses', build({ logRetentionDays: 10 }), "AgentRedis: 'logRetentionDays' (10) must be a value CloudWatch Logs accepts"],
  ])('%s', (_, construct, message) => {
    expect(construct).toThrow(message);
  });
});
