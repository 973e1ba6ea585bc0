/**
 * LlmGateway output and gateway.connect(agent): high availability by default, provider keys in
 * the gateway only, each sidecar signing with its own key, and NetworkPolicies opened in both
 * directions for connected agents only.
 */
import { Duration } from 'cdk8s';
import { Pods } from 'cdk8s-plus-28';
import {
  AgentService,
  BudgetStore,
  CHECKSUM_ANNOTATION,
  GatewayCache,
  GatewaySigningKeys,
  LlmGateway,
  LlmProvider,
  SecretKey,
  SecretStoreRef,
  SIDECAR_NODE_FLAGS,
  parseSidecarConfig,
  type LlmGatewayProps,
} from '../../lib';
import { checkReadOnlyRoot, checkRestricted, validateManifests } from '../support/k8s-validate';
import { chart, container, find, findAll, minimalProps, sidecarJson, synth, volume, type Json } from './helpers';
import type { Chart } from 'cdk8s';

const providers = () => [
  LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') }),
  LlmProvider.anthropic({ apiKey: SecretKey.fromSecret('llm-keys', 'anthropic'), fallbackModel: 'claude-sonnet-4-6', modelMap: { 'gpt-4o-mini': 'claude-sonnet-4-6' } }),
];

function gateway(c: Chart, props: Partial<LlmGatewayProps> = {}): LlmGateway {
  return new LlmGateway(c, 'LlmGateway', { providers: providers(), ...props });
}

function connectedAgent(c: Chart, gw: LlmGateway, id = 'SupportChat', team?: string): AgentService {
  return new AgentService(c, id, minimalProps({ providers: undefined, gateway: gw, team }));
}

function platform() {
  const c = chart();
  const gw = gateway(c, { adminAccessFrom: [Pods.select(c, 'Prometheus', { labels: { 'app.kubernetes.io/name': 'prometheus' } })] });
  const support = connectedAgent(c, gw, 'SupportChat', 'customer-care');
  const billing = new AgentService(c, 'Billing', minimalProps({ providers: undefined }));
  gw.connect(billing);
  return { c, gw, support, billing, objects: synth(c) };
}

describe('LlmGateway', () => {
  test('snapshot', () => {
    expect(platform().objects).toMatchSnapshot();
  });

  test('emits stable names; the output passes schema, restricted Pod Security and read-only roots', () => {
    const { objects } = platform();
    expect(objects.filter((o) => o.metadata.labels?.['app.kubernetes.io/component'] === 'llm-gateway').map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'ConfigMap/llm-gateway-bundle',
      'ConfigMap/llm-gateway-config',
      'Deployment/llm-gateway',
      'HorizontalPodAutoscaler/llm-gateway',
      'NetworkPolicy/llm-gateway',
      'PodDisruptionBudget/llm-gateway',
      'Service/llm-gateway',
      'ServiceAccount/llm-gateway',
    ]);
    expect(validateManifests(objects)).toEqual([]);
    expect(checkRestricted(objects)).toEqual([]);
    expect(checkReadOnlyRoot(objects)).toEqual([]);
  });

  test('highly available by default: HPA 2-10 at 70% CPU, PDB, no fixed replicas, spread', () => {
    const { objects, gw } = platform();
    expect(gw.node.defaultChild).toBe(gw.deployment);
    const deployment = find(objects, 'Deployment', 'llm-gateway');
    expect(deployment.spec.replicas).toBeUndefined();
    expect(find(objects, 'HorizontalPodAutoscaler', 'llm-gateway').spec).toMatchObject({
      minReplicas: 2,
      maxReplicas: 10,
      metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } }],
    });
    expect(find(objects, 'PodDisruptionBudget', 'llm-gateway').spec.maxUnavailable).toBe(1);
    expect(deployment.spec.template.spec.topologySpreadConstraints.map((s: Json) => s.topologyKey)).toEqual(['topology.kubernetes.io/zone', 'kubernetes.io/hostname']);
  });

  test('fixed replicas: no HPA', () => {
    const c = chart();
    connectedAgent(c, gateway(c, { replicas: 3 }));
    const objects = synth(c);
    expect(find(objects, 'Deployment', 'llm-gateway').spec.replicas).toBe(3);
    expect(findAll(objects, 'HorizontalPodAutoscaler').filter((h) => h.metadata.name === 'llm-gateway')).toEqual([]);
  });

  test('agents reach it at its Service: port 80 to 8787, plus the metrics port', () => {
    const { objects, gw } = platform();
    expect(gw.url).toBe('http://llm-gateway.agents.svc.cluster.local');
    expect(find(objects, 'Service', 'llm-gateway').spec).toMatchObject({
      ports: [
        { name: 'http', port: 80, targetPort: 8787 },
        { name: 'metrics', port: 8788, targetPort: 8788 },
      ],
      selector: { 'app.kubernetes.io/name': 'llm-gateway', 'app.kubernetes.io/component': 'llm-gateway' },
    });
  });

  test('the gateway runs the runtime in gateway mode, holding the provider keys', () => {
    const { objects } = platform();
    const deployment = find(objects, 'Deployment', 'llm-gateway');
    const g = container(deployment, 'llm-gateway');
    expect(g.command).toEqual(['node', ...SIDECAR_NODE_FLAGS, '/opt/cdk-agents/sidecar.js']);
    expect(g.ports).toEqual([
      { name: 'http', containerPort: 8787, protocol: 'TCP' },
      { name: 'metrics', containerPort: 8788, protocol: 'TCP' },
    ]);
    expect(g.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(volume(deployment, 'provider-openai')?.secret).toEqual({ secretName: 'llm-keys', defaultMode: 0o440, items: [{ key: 'openai', path: 'api-key' }] });
    // preStop lets endpoints forget the pod before the runtime stops accepting; the grace covers it and the drain.
    expect(g.lifecycle.preStop.exec.command).toEqual(['node', '-e', 'setTimeout(()=>{},5000)']);
    expect(deployment.spec.template.spec.terminationGracePeriodSeconds).toBe(40);
    const config = sidecarJson(objects, 'llm-gateway-config');
    expect(() => parseSidecarConfig(config)).not.toThrow();
    expect(config).toMatchObject({ mode: 'gateway', listen: { host: '0.0.0.0', port: 8787 }, admin: { host: '0.0.0.0', port: 8788 } });
    expect(config.providers.map((p: Json) => [p.name, p.apiKey.file])).toEqual([
      ['openai', '/var/run/cdk-agents/providers/openai/api-key'],
      ['anthropic', '/var/run/cdk-agents/providers/anthropic/api-key'],
    ]);
    expect(config.providers[1]).toMatchObject({ fallbackModel: 'claude-sonnet-4-6', modelMap: { 'gpt-4o-mini': 'claude-sonnet-4-6' } });
  });

  describe('connect(agent)', () => {
    test("the agent's sidecar calls the gateway, signing with its own key; it holds no provider key", () => {
      const { objects } = platform();
      const config = sidecarJson(objects, 'support-chat-sidecar-config');
      expect(config.providers).toEqual([
        {
          name: 'llm-gateway',
          type: 'cdk-agents-gateway',
          baseUrl: 'http://llm-gateway.agents.svc.cluster.local',
          signingKey: { file: '/var/run/cdk-agents/signing-key/key' },
        },
      ]);
      const deployment = find(objects, 'Deployment', 'support-chat');
      const secrets = deployment.spec.template.spec.volumes.filter((v: Json) => v.secret);
      // Only its own item of the signing keys Secret, nothing else secret.
      expect(secrets).toEqual([
        { name: 'signing-key', secret: { secretName: 'llm-gateway-signing-keys', defaultMode: 0o440, items: [{ key: 'support-chat', path: 'key' }] } },
      ]);
      expect(container(deployment, 'cdk-agents-sidecar').volumeMounts).toContainEqual({ name: 'signing-key', mountPath: '/var/run/cdk-agents/signing-key', readOnly: true });
      expect(container(deployment, 'agent').volumeMounts.map((m: Json) => m.name)).toEqual(['agent-config', 'agent-tmp']);
      expect(JSON.stringify(deployment)).not.toContain('llm-keys');
    });

    test("the gateway accepts each connected agent's signature and mounts every key", () => {
      const { objects } = platform();
      expect(sidecarJson(objects, 'llm-gateway-config').gateway.agents).toEqual([
        { name: 'support-chat', team: 'customer-care', signingKey: { file: '/var/run/cdk-agents/signing-keys/support-chat' } },
        { name: 'billing', signingKey: { file: '/var/run/cdk-agents/signing-keys/billing' } },
      ]);
      expect(volume(find(objects, 'Deployment', 'llm-gateway'), 'signing-keys')?.secret.items).toEqual([
        { key: 'support-chat', path: 'support-chat' },
        { key: 'billing', path: 'billing' },
      ]);
    });

    test('NetworkPolicies open agent -> gateway:8787 for connected agents only', () => {
      const { objects } = platform();
      const agentPeer = (name: string) => ({
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'agents' } },
        podSelector: { matchLabels: { 'app.kubernetes.io/name': name, 'app.kubernetes.io/component': 'agent' } },
      });
      const gatewayPolicy = find(objects, 'NetworkPolicy', 'llm-gateway').spec;
      expect(gatewayPolicy.ingress).toEqual([
        { from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } }], ports: [{ port: 8788, protocol: 'TCP' }] },
        { from: [agentPeer('support-chat')], ports: [{ port: 8787, protocol: 'TCP' }] },
        { from: [agentPeer('billing')], ports: [{ port: 8787, protocol: 'TCP' }] },
      ]);
      const agentEgress = find(objects, 'NetworkPolicy', 'support-chat').spec.egress;
      expect(agentEgress).toContainEqual({
        to: [
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'agents' } },
            podSelector: { matchLabels: { 'app.kubernetes.io/name': 'llm-gateway', 'app.kubernetes.io/component': 'llm-gateway' } },
          },
        ],
        ports: [{ port: 8787, protocol: 'TCP' }],
      });
      // Through the gateway, an agent without external tools has no internet egress at all.
      expect(agentEgress.some((r: Json) => r.to.some((p: Json) => p.ipBlock))).toBe(false);
    });

    test('the gateway egress: DNS and HTTPS to the internet only, never private ranges or the metadata endpoint', () => {
      const egress = find(platform().objects, 'NetworkPolicy', 'llm-gateway').spec.egress;
      expect(egress).toHaveLength(2);
      expect(egress[1]).toEqual({
        to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8', '100.64.0.0/10', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16'] } }],
        ports: [{ port: 443, protocol: 'TCP' }],
      });
    });

    test('connecting after construction reaches both configs and rolls the gateway pods', () => {
      const c = chart();
      const gw = gateway(c);
      connectedAgent(c, gw, 'First');
      const checksum = () => find(synth(c), 'Deployment', 'llm-gateway').spec.template.metadata.annotations[CHECKSUM_ANNOTATION];
      const before = checksum();
      const late = new AgentService(c, 'Late', minimalProps({ providers: undefined }));
      gw.connect(late);
      gw.connect(late); // idempotent
      expect(gw.agents.map((a) => a.name)).toEqual(['first', 'late']);
      expect(checksum()).not.toBe(before);
      expect(sidecarJson(synth(c), 'late-sidecar-config').providers[0].type).toBe('cdk-agents-gateway');
    });
  });

  test('an in-cluster OpenAI-compatible provider gets egress to its pods', () => {
    const c = chart();
    const vllm = Pods.select(c, 'Vllm', { labels: { app: 'vllm' } });
    const gw = gateway(c, { providers: [LlmProvider.openAiCompatible({ name: 'vllm', baseUrl: 'http://vllm.models.svc.cluster.local/v1', peer: vllm, targetPort: 8000 })] });
    connectedAgent(c, gw);
    const egress = find(synth(c), 'NetworkPolicy', 'llm-gateway').spec.egress;
    expect(egress).toEqual([expect.anything(), { to: [{ podSelector: { matchLabels: { app: 'vllm' } } }], ports: [{ port: 8000, protocol: 'TCP' }] }]);
  });

  test('AWS Secrets Manager: provider keys and signing keys through ExternalSecrets', () => {
    const c = chart();
    const gw = gateway(c, {
      providers: [LlmProvider.openai({ apiKey: SecretKey.fromAwsSecretsManager('prod/llm/openai', 'api_key') })],
      signingKeys: GatewaySigningKeys.fromAwsSecretsManager('prod/llm/signing-keys'),
      secretStore: SecretStoreRef.secretStore('aws'),
    });
    connectedAgent(c, gw);
    const objects = synth(c);
    expect(find(objects, 'ExternalSecret', 'llm-gateway-provider-keys').spec.data).toEqual([
      { secretKey: 'openai-api-key', remoteRef: { key: 'prod/llm/openai', property: 'api_key' } },
    ]);
    expect(find(objects, 'ExternalSecret', 'llm-gateway-signing-keys').spec).toEqual({
      refreshInterval: '1h',
      secretStoreRef: { name: 'aws', kind: 'SecretStore' },
      target: { name: 'llm-gateway-signing-keys', creationPolicy: 'Owner' },
      dataFrom: [{ extract: { key: 'prod/llm/signing-keys' } }],
    });
    // Same namespace: the agent mounts its item of the synced Secret.
    expect(volume(find(objects, 'Deployment', 'support-chat'), 'signing-key')?.secret.secretName).toBe('llm-gateway-signing-keys');
    expect(validateManifests(objects)).toEqual([]);
  });

  test('an agent in another namespace with AWS signing keys syncs only its own key', () => {
    const c = chart();
    const gw = gateway(c, {
      signingKeys: GatewaySigningKeys.fromAwsSecretsManager('prod/llm/signing-keys'),
      secretStore: SecretStoreRef.clusterSecretStore('aws'),
    });
    new AgentService(c, 'Billing', minimalProps({ providers: undefined, gateway: gw, namespace: 'billing', secretStore: SecretStoreRef.clusterSecretStore('aws') }));
    const objects = synth(c);
    const own = find(objects, 'ExternalSecret', 'billing-sidecar-secrets');
    expect(own.metadata.namespace).toBe('billing');
    expect(own.spec.data).toEqual([{ secretKey: 'gateway-signing-key', remoteRef: { key: 'prod/llm/signing-keys', property: 'billing' } }]);
    expect(volume(find(objects, 'Deployment', 'billing'), 'signing-key')?.secret).toMatchObject({
      secretName: 'billing-sidecar-secrets',
      items: [{ key: 'gateway-signing-key', path: 'key' }],
    });
    expect(find(objects, 'NetworkPolicy', 'llm-gateway').spec.ingress).toContainEqual({
      from: [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'billing' } },
          podSelector: { matchLabels: { 'app.kubernetes.io/name': 'billing', 'app.kubernetes.io/component': 'agent' } },
        },
      ],
      ports: [{ port: 8787, protocol: 'TCP' }],
    });
  });

  test('a Redis store and cache: shared across replicas, password mounted, cache in the config', () => {
    const c = chart();
    const gw = gateway(c, {
      store: BudgetStore.redis({ url: 'rediss://redis.data.svc.cluster.local:6380', passwordSecret: SecretKey.fromSecret('redis', 'password'), tlsCaSecret: SecretKey.fromSecret('redis-tls', 'ca.crt') }),
      cache: GatewayCache.redis({ ttl: Duration.minutes(10) }),
    });
    connectedAgent(c, gw);
    const objects = synth(c);
    const config = sidecarJson(objects, 'llm-gateway-config');
    expect(config.store).toMatchObject({
      type: 'redis',
      url: 'rediss://redis.data.svc.cluster.local:6380',
      password: { file: '/var/run/cdk-agents/redis/password' },
      tls: { caFile: '/var/run/cdk-agents/redis-ca/ca.pem' },
    });
    expect(config.cache).toMatchObject({ ttlMs: 600000 });
    expect(volume(find(objects, 'Deployment', 'llm-gateway'), 'redis-ca')?.secret.items).toEqual([{ key: 'ca.crt', path: 'ca.pem' }]);
  });

  test('a Redis URL from a Secret (an endpoint the cloud side learns at apply time)', () => {
    const c = chart();
    const gw = gateway(c, { store: BudgetStore.redis({ urlSecret: SecretKey.fromSecret('agents-redis-endpoint', 'url'), port: 6380 }) });
    connectedAgent(c, gw);
    const objects = synth(c);
    expect(sidecarJson(objects, 'llm-gateway-config').store.url).toEqual({ file: '/var/run/cdk-agents/redis-url/url' });
    expect(volume(find(objects, 'Deployment', 'llm-gateway'), 'redis-url')?.secret).toMatchObject({ secretName: 'agents-redis-endpoint', items: [{ key: 'url', path: 'url' }] });
    expect(find(objects, 'NetworkPolicy', 'llm-gateway').spec.egress).toContainEqual({ to: [{ ipBlock: { cidr: '0.0.0.0/0' } }], ports: [{ port: 6380, protocol: 'TCP' }] });
  });
});
