/**
 * The example platform, cloud side: `npm run synth` writes Terraform JSON to dist/tf/stacks/platform.
 * `cdktf deploy platform` (cdktf CLI, AWS credentials, the state bucket below) applies it.
 */
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import { App, S3Backend, TerraformStack } from 'cdktf';
import { AgentCloud, ProviderKeyRotation } from '../lib/cloud';
import { platform } from './platform';

/** The platform's stack in `app` (tests synthesize the same stack). */
export function platformStack(app: App): TerraformStack {
  const stack = new TerraformStack(app, 'platform');
  // State holds the Redis AUTH token (the provider has no write-only argument for it): keep it in an encrypted, access-controlled bucket.
  new S3Backend(stack, { bucket: 'acme-terraform-state', key: 'cdk-agents/acme-agents.tfstate', region: platform.aws.region, encrypt: true });
  new AwsProvider(stack, 'aws', {
    region: platform.aws.region,
    // Role ARNs are derived from the spec's account: applying anywhere else fails before any change.
    allowedAccountIds: [platform.aws.accountId],
    defaultTags: [{ tags: { 'managed-by': 'cdktf', project: 'cdk-agents' } }],
  });
  new AgentCloud(stack, 'AgentCloud', {
    spec: platform,
    // The cluster's network, by id (bring-your-own).
    vpcId: 'vpc-0a1b2c3d4e5f67890',
    privateSubnetIds: ['subnet-0a1b2c3d4e5f60001', 'subnet-0a1b2c3d4e5f60002', 'subnet-0a1b2c3d4e5f60003'],
    clusterSecurityGroupId: 'sg-0a1b2c3d4e5f67890',
    providerKeyRotation: ProviderKeyRotation.waived(
      'OpenAI and Anthropic keys are minted in the provider consoles; they are rotated by hand every 90 days and the runtime re-reads them within a minute.',
    ),
    alarmEmails: ['oncall@acme.example'],
  });
  return stack;
}

if (require.main === module) {
  const app = new App({ outdir: 'dist/tf' });
  platformStack(app);
  app.synth();
}
