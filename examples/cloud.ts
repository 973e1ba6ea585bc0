/**
 * The example platform, cloud side: `npm run synth` writes Terraform JSON to dist/tf.
 * `cdktf deploy` (with the cdktf CLI installed) applies it.
 */
import { App, TerraformStack } from 'cdktf';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';

const app = new App({ outdir: 'dist/tf' });
const stack = new TerraformStack(app, 'platform');
new AwsProvider(stack, 'aws', { region: 'eu-central-1' });
app.synth();
