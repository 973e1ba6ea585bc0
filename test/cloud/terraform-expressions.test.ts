/**
 * Every Terraform expression the cloud side writes parses with HCL's parser, calls only Terraform
 * functions and refers only to resources and data sources of the same stack: the syntax and
 * reference half of `terraform validate`, which cannot run here (it needs the providers).
 */
import { Testing } from 'cdktf';
import { platformStack } from '../../examples/cloud';
import { platform } from '../../examples/platform';
import { ProviderKeyRotation } from '../../lib/cloud';
import { expressionProblems, interpolations } from '../support/terraform-expressions';
import { agentCloud, awsStack, synthJson } from './helpers';

type Json = Record<string, any>;

const example = (): Json => JSON.parse(Testing.synth(platformStack(Testing.app()), true));

test('the example stack: every expression parses, calls Terraform functions, refers to what the stack has', async () => {
  const tf = example();
  expect(await expressionProblems(tf)).toEqual([]);
  // What it walked: the hand-written expressions among them.
  const all = JSON.stringify(tf);
  expect(all).toContain('${contains(self.cidr_block_associations[*].cidr_block, \\"10.0.0.0/16\\")}');
  expect(all).toContain('terraform_data.AgentCloud_LlmGatewaySigningKeys_SupportChatValue_');
});

test('a stack with every option: rotation by Lambda, no vpcCidr, no queues', async () => {
  const stack = awsStack();
  const { vpcCidr: _, ...aws } = platform.aws;
  agentCloud(stack, {
    spec: { ...platform, aws, workerQueues: [] },
    providerKeyRotation: ProviderKeyRotation.withLambda({ functionArn: 'arn:aws:lambda:eu-central-1:111122223333:function:rotate-provider-keys' }),
  });
  expect(await expressionProblems(synthJson(stack, true))).toEqual([]);
});

describe('the check catches', () => {
  const broken = (change: (tf: Json) => void): Json => {
    const tf = example();
    change(tf);
    return tf;
  };
  const vpc = (tf: Json) => Object.values(tf.data.aws_vpc)[0] as Json;

  test('an expression that does not parse', async () => {
    const tf = broken((t) => (vpc(t).lifecycle.postcondition[0].condition = '${contains(self.cidr_block_associations[*].cidr_block, "10.0.0.0/16"}'));
    expect(await expressionProblems(tf)).toEqual([
      expect.objectContaining({ at: expect.stringMatching(/^data\.aws_vpc\..*\.lifecycle\.postcondition\[0\]\.condition$/), problem: expect.stringContaining('does not parse') }),
    ]);
  });

  test('a function Terraform does not have', async () => {
    const tf = broken((t) => (vpc(t).lifecycle.postcondition[0].condition = '${cidrcontains(self.cidr_block, "10.0.0.0/16")}'));
    expect((await expressionProblems(tf)).map((p) => p.problem)).toEqual(['calls cidrcontains(), which is not a Terraform function']);
  });

  test('an attribute the provider does not have, on a resource and on self', async () => {
    const tf = broken((t) => {
      vpc(t).lifecycle.postcondition[0].condition = '${contains(self.cidr_block_association[*].cidr_block, "10.0.0.0/16")}';
      const connection = Object.values(t.resource.aws_secretsmanager_secret_version).find((v: any) => String(v.secret_string).includes('rediss://'))! as Json;
      connection.secret_string = String(connection.secret_string).replace('.primary_endpoint_address}', '.primary_endpoint}');
    });
    const found = (await expressionProblems(tf)).map((p) => p.problem);
    expect(found).toHaveLength(2);
    expect(found).toEqual(
      expect.arrayContaining([
        'refers to self.cidr_block_association: aws_vpc has no attribute cidr_block_association',
        expect.stringMatching(/^refers to aws_elasticache_replication_group\.AgentCloud_Redis_[0-9A-F]+\.primary_endpoint: aws_elasticache_replication_group has no attribute primary_endpoint$/),
      ]),
    );
  });

  test('a reference to a resource or data source that is not there, and self outside a condition', async () => {
    const tf = broken((t) => {
      const version = Object.values(t.resource.aws_secretsmanager_secret_version).find((v: any) => String(v.secret_string).includes('terraform_data.'))! as Json;
      version.secret_string = String(version.secret_string).replace(/terraform_data\.([A-Za-z_]+)_[0-9A-F]+\.output/, 'terraform_data.$1_00000000.output');
      const key = Object.values(t.resource.aws_kms_key)[0] as Json;
      key.description = 'key of ${self.id}';
      const token = Object.values(t.resource.aws_secretsmanager_secret_version).find((v: any) => String(v.secret_string).startsWith('${data.aws_secretsmanager_random_password.'))! as Json;
      token.secret_string = '${data.aws_secretsmanager_random_password.Gone.random_password}';
    });
    const found = (await expressionProblems(tf)).map((p) => p.problem);
    expect(found).toHaveLength(3);
    expect(found).toEqual(
      expect.arrayContaining([
        'refers to terraform_data.AgentCloud_LlmGatewaySigningKeys_SupportChatValue_00000000, which is not in the Terraform',
        'refers to self outside a lifecycle condition (self.id)',
        'refers to data.aws_secretsmanager_random_password.Gone, which is not in the Terraform',
      ]),
    );
  });
});

describe('interpolations', () => {
  test.each<[string, string[]]>([
    ['plain', []],
    ['${a.b.c}', ['${a.b.c}']],
    ['rediss://${x.y.z}:6379 and ${f("}")}', ['${x.y.z}', '${f("}")}']],
    ['${jsonencode({"u" = "rediss://${x.y.z}:1", "m" = {a = 1}})}', ['${jsonencode({"u" = "rediss://${x.y.z}:1", "m" = {a = 1}})}']],
    ['$${literal} ${x.y}', ['${x.y}']],
    ['${f("a\\"}")}', ['${f("a\\"}")}']],
  ])('%s', (text, expected) => {
    expect(interpolations(text)).toEqual(expected);
  });
});
