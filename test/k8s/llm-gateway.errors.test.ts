/**
 * LlmGateway validation: a single replica, a gateway nobody uses, conflicting cache and store,
 * shared budgets without Redis, agents connected twice or under one name, missing or oversized
 * bundles, AWS keys without a store: each fails with the prop and the fix.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Chart } from 'cdk8s';
import {
  AgentService,
  Budget,
  BudgetStore,
  GatewayCache,
  GatewaySigningKeys,
  LlmGateway,
  LlmProvider,
  SecretKey,
  SidecarDelivery,
  type LlmGatewayProps,
} from '../../lib';
import { bareChart, chart, minimalProps, synth } from './helpers';

const openai = () => LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') });

function gateway(c: Chart, props: Partial<LlmGatewayProps> = {}, id = 'LlmGateway'): LlmGateway {
  return new LlmGateway(c, id, { providers: [openai()], ...props });
}

function viaGateway(c: Chart, gw: LlmGateway, id = 'SupportChat', props = {}): AgentService {
  return new AgentService(c, id, minimalProps({ providers: undefined, gateway: gw, ...props }));
}

describe('LlmGateway errors', () => {
  describe('a single replica', () => {
    test('replicas: 1', () => {
      expect(() => gateway(chart(), { replicas: 1 })).toThrow(
        "LlmGateway 'llm-gateway': 'replicas' is 1: one gateway pod is a single point of failure for every connected agent. Use 2 or more, or set 'acceptSingleReplica: true' (dev clusters).",
      );
    });

    test('autoscaling from 1', () => {
      expect(() => gateway(chart(), { autoscaling: { minReplicas: 1, maxReplicas: 4 } })).toThrow(/'autoscaling.minReplicas' is 1: one gateway pod/);
    });

    test('accepted explicitly', () => {
      const c = chart();
      viaGateway(c, gateway(c, { replicas: 1, acceptSingleReplica: true }));
      const objects = synth(c);
      expect(objects.some((o) => o.kind === 'PodDisruptionBudget' && o.metadata.name === 'llm-gateway')).toBe(false);
    });
  });

  test('maxReplicas below minReplicas', () => {
    expect(() => gateway(chart(), { autoscaling: { minReplicas: 4, maxReplicas: 3 } })).toThrow(/'autoscaling.maxReplicas' \(3\) must be >= 'autoscaling.minReplicas' \(4\)/);
  });

  test('no agent connected: at synth', () => {
    const c = chart();
    gateway(c);
    expect(() => synth(c)).toThrow(/LlmGateway 'llm-gateway': no agent is connected\. Call gateway\.connect\(agent\)/);
  });

  test('two providers under one name', () => {
    expect(() => gateway(chart(), { providers: [openai(), openai()] })).toThrow(/two providers are named 'openai'; give one a distinct 'name'/);
  });

  test('a Redis cache without a Redis store, and the reverse', () => {
    expect(() => gateway(chart(), { cache: GatewayCache.redis() })).toThrow(/'cache' is GatewayCache\.redis\(\), which lives in the store: set 'store: BudgetStore\.redis/);
    expect(() => gateway(chart(), { cache: GatewayCache.memory(), store: BudgetStore.redis({ url: 'redis://redis:6379' }) })).toThrow(/use GatewayCache\.redis\(\)/);
  });

  test('a shared budget on several gateway pods without Redis', () => {
    expect(() => gateway(chart(), { budgets: [Budget.usdPerDay(100)] })).toThrow(/up to 10 pods and the memory store each keeps its own count, so the real cap is 10x/);
    expect(() => gateway(chart(), { budgets: [Budget.usdPerDay(100)], store: BudgetStore.redis({ url: 'redis://redis:6379' }) })).not.toThrow();
  });

  test('an agent connected to two gateways', () => {
    const c = chart();
    const first = gateway(c, {}, 'First');
    const second = gateway(c, {}, 'Second');
    const a = viaGateway(c, first);
    expect(() => second.connect(a)).toThrow(/already connected to gateway 'first'; an agent uses one gateway/);
  });

  test('two connected agents under one name', () => {
    const c = chart();
    const gw = gateway(c);
    viaGateway(c, gw, 'One', { name: 'support', namespace: 'a' });
    expect(() => viaGateway(c, gw, 'Two', { name: 'support', namespace: 'b' })).toThrow(/two connected agents are named 'support' \(test\/One and test\/Two\)/);
  });

  test('an agent and a gateway of which only one has a known namespace', () => {
    const c = bareChart();
    const gw = gateway(c);
    expect(() => viaGateway(c, gw, 'SupportChat', { namespace: 'billing' })).toThrow(/only one of them has a namespace \(gateway: none, agent: billing\)/);
  });

  test('the bundle is missing, or too large for a ConfigMap', () => {
    expect(() => gateway(chart(), { runtime: SidecarDelivery.configMap({ bundlePath: '/nonexistent/sidecar.js' }) })).toThrow(
      /LlmGateway 'llm-gateway': the sidecar bundle is missing .* run 'npm run build'/,
    );
    const big = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cdk-agents-')), 'sidecar.js');
    fs.writeFileSync(big, `// ${'x'.repeat(1024 * 1024)}\n`);
    expect(() => gateway(chart(), { runtime: SidecarDelivery.configMap({ bundlePath: big }) })).toThrow(/over the 900 KiB budget .* SidecarDelivery\.image/);
  });

  test('AWS keys without a secret store', () => {
    expect(() => gateway(chart(), { signingKeys: GatewaySigningKeys.fromAwsSecretsManager('prod/signing') })).toThrow(/'signingKeys' come from AWS Secrets Manager: set 'secretStore'/);
    expect(() => gateway(chart(), { providers: [LlmProvider.anthropic({ apiKey: SecretKey.fromAwsSecretsManager('prod/anthropic') })] })).toThrow(
      /'providers \(anthropic\)\.apiKey' comes from AWS Secrets Manager/,
    );
  });

  test('a provider the runtime would refuse', () => {
    expect(() => gateway(chart(), { providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('k', 'o'), baseUrl: 'ftp://api.example.com' })] })).toThrow(
      /LlmProvider 'openai': the base URL \('ftp:\/\/api\.example\.com'\) must be an http\(s\) URL/,
    );
    expect(() => gateway(chart(), { providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('k', 'o'), headers: { 'bad header': 'x' } })] })).toThrow(
      /'providers' \(openai\): headers\.bad header .*\(config path providers\[0\]\.headers\.bad header\)/,
    );
  });
});
