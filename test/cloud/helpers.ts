/**
 * Shared by the cloud tests: stacks built with cdktf's Testing app, the synthesized Terraform as
 * JSON, and a valid AgentCloud to vary one prop at a time.
 */
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import { TerraformStack, Testing } from 'cdktf';
import { platformStack } from '../../examples/cloud';
import { platform } from '../../examples/platform';
import { AgentCloud, ProviderKeyRotation, type AgentCloudProps } from '../../lib/cloud';

export interface TerraformJson {
  readonly resource: Record<string, Record<string, Record<string, any>>>;
  readonly data?: Record<string, Record<string, Record<string, any>>>;
  readonly output: Record<string, { value: any }>;
}

/** A stack with a default AWS provider in the spec's region and account. */
export function awsStack(region = platform.aws.region): TerraformStack {
  const stack = new TerraformStack(Testing.app(), 'stack');
  new AwsProvider(stack, 'aws', { region, allowedAccountIds: [platform.aws.accountId] });
  return stack;
}

/** The example platform's stack (examples/cloud.ts), in a Testing app. */
export function exampleStack(): TerraformStack {
  return platformStack(Testing.app());
}

/** Props of a valid AgentCloud for the example spec. */
export function validProps(overrides: Partial<AgentCloudProps> = {}): AgentCloudProps {
  return {
    spec: platform,
    vpcId: 'vpc-0a1b2c3d4e5f67890',
    privateSubnetIds: ['subnet-0a1b2c3d4e5f60001', 'subnet-0a1b2c3d4e5f60002'],
    clusterSecurityGroupId: 'sg-0a1b2c3d4e5f67890',
    providerKeyRotation: ProviderKeyRotation.waived('keys are minted by hand in the provider consoles'),
    ...overrides,
  };
}

export function agentCloud(stack: TerraformStack, overrides: Partial<AgentCloudProps> = {}): AgentCloud {
  return new AgentCloud(stack, 'AgentCloud', validProps(overrides));
}

export function synthJson(stack: TerraformStack, runValidations = false): TerraformJson {
  return JSON.parse(Testing.synth(stack, runValidations));
}

/** The only resource of a type whose attribute matches. */
export function resourceWhere(tf: TerraformJson, type: string, attribute: string, value: unknown): Record<string, any> {
  const found = Object.values(tf.resource[type] ?? {}).filter((r) => r[attribute] === value);
  if (found.length !== 1) throw new Error(`expected one ${type} with ${attribute} = ${JSON.stringify(value)}, found ${found.length}`);
  return found[0];
}

/** The logical id of a resource (what `${type.id.attr}` references use). */
export function logicalIdWhere(tf: TerraformJson, type: string, attribute: string, value: unknown): string {
  const entry = Object.entries(tf.resource[type] ?? {}).find(([, r]) => r[attribute] === value);
  if (!entry) throw new Error(`no ${type} with ${attribute} = ${JSON.stringify(value)}`);
  return entry[0];
}
