/**
 * The example platform, Kubernetes side: `npm run synth` writes it to dist/k8s, one folder per
 * chart and one file per resource, with stable names for small GitOps diffs.
 */
import { App, Chart, YamlOutputType } from 'cdk8s';
import { KubeConfigMap } from 'cdk8s-plus-28/lib/imports/k8s';
import { parseSidecarConfig } from '../lib/spec';

const app = new App({ yamlOutputType: YamlOutputType.FOLDER_PER_CHART_FILE_PER_RESOURCE });
const chart = new Chart(app, 'platform', { namespace: 'agents', disableResourceNameHashes: true });

// The runtime config of the support agent's sidecar, validated by the code the runtime runs.
const config = parseSidecarConfig({
  version: 1,
  agent: { name: 'support-chat', team: 'customer-care' },
  providers: [
    { name: 'openai', type: 'openai', apiKey: { file: '/var/run/secrets/llm/openai' } },
    { name: 'anthropic', type: 'anthropic', apiKey: { file: '/var/run/secrets/llm/anthropic' } },
  ],
});
new KubeConfigMap(chart, 'sidecar-config', {
  metadata: { name: 'support-chat-sidecar' },
  data: { 'sidecar.json': JSON.stringify(config, null, 2) },
});

app.synth();
