/**
 * BudgetGuard output: what it declares lands in each target's runtime config (budgets, rate
 * limits, loop guard, store) and is accepted by the runtime's validator; its Redis store is wired
 * into the target's pod (password mounted, egress open); limits added later reach every target;
 * the PrometheusRule watches exactly the targets.
 */
import { Duration } from 'cdk8s';
import { NetworkPolicyIpBlock } from 'cdk8s-plus-28';
import {
  AgentService,
  Budget,
  BudgetGuard,
  BudgetStore,
  GatewayCache,
  LlmGateway,
  LlmProvider,
  LoopGuard,
  RateLimit,
  SecretKey,
  StoreUnavailableBehavior,
  parseSidecarConfig,
  type SidecarConfigInput,
} from '../../lib';
import { FakeLlm } from '../support/fake-llm';
import { checkReadOnlyRoot, checkRestricted, validateManifests } from '../support/k8s-validate';
import { rawPost, Sidecar } from '../support/sidecar';
import { agent, chart, container, find, findAll, minimalProps, sidecarJson, synth, volume, type Json } from './helpers';
import type { Chart } from 'cdk8s';

/** The Redis every guard here uses (a managed one at a private address). */
function redis(c: Chart): BudgetStore {
  const peer = (c.node.tryFindChild('RedisAddress') as NetworkPolicyIpBlock | undefined) ?? NetworkPolicyIpBlock.ipv4(c, 'RedisAddress', '10.20.0.5/32');
  return BudgetStore.redis({
    url: 'redis://redis-master.redis.svc.cluster.local:6379',
    passwordSecret: SecretKey.fromSecret('agents-redis', 'password'),
    onUnavailable: StoreUnavailableBehavior.FAIL_CLOSED,
    peer,
  });
}

function gatewayOf(c: Chart, props: Partial<ConstructorParameters<typeof LlmGateway>[2]> = {}): LlmGateway {
  return new LlmGateway(c, 'LlmGateway', { providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') })], ...props });
}

/** Support chat (2 replicas, team customer-care) behind a gateway, both guarded. */
function platform() {
  const c = chart();
  const gateway = gatewayOf(c);
  const support = new AgentService(c, 'SupportChat', minimalProps({ providers: undefined, gateway, team: 'customer-care', budgets: [Budget.usdPerHour(1).forRun()] }));
  const supportGuard = new BudgetGuard(c, 'SupportBudgets', {
    budgets: [Budget.usdPerDay(50), Budget.usdPerMonth(5).forUser(), Budget.usdPerDay(2).forRun(), Budget.tokensPerDay(5_000_000).forTeam()],
    rateLimits: [RateLimit.requestsPerMinute(20).forUser(), RateLimit.tokensPerMinute(200_000)],
    loopGuard: LoopGuard.of({ maxIterations: 25, maxCostUsd: 1, maxDuration: Duration.minutes(10), maxRepeats: 4 }),
    store: redis(c),
    agents: [support],
    alerts: { labels: { release: 'kube-prometheus-stack' } },
  });
  const gatewayGuard = new BudgetGuard(c, 'GatewayBudgets', {
    budgets: [Budget.tokensPerDay(20_000_000), Budget.usdPerDay(20).forUser()],
    rateLimits: [RateLimit.requestsPerMinute(600)],
    loopGuard: LoopGuard.of({ maxIterations: 50 }),
    store: redis(c),
    gateways: [gateway],
    alerts: { labels: { release: 'kube-prometheus-stack' }, tokenBurnFactor: 10 },
  });
  return { c, gateway, support, supportGuard, gatewayGuard, objects: synth(c) };
}

const policyOf = (config: Json) => ({ budgets: config.budgets, rateLimits: config.rateLimits, loopGuard: config.loopGuard, store: config.store });

describe('BudgetGuard', () => {
  test('snapshot: the PrometheusRules and the policy sections of the targets\' runtime configs', () => {
    const { objects } = platform();
    expect({
      prometheusRules: findAll(objects, 'PrometheusRule'),
      agent: policyOf(sidecarJson(objects, 'support-chat-sidecar-config')),
      gateway: policyOf(sidecarJson(objects, 'llm-gateway-config')),
    }).toMatchSnapshot();
  });

  test('the output passes the Kubernetes and CRD schemas, restricted Pod Security and read-only roots', () => {
    const { objects } = platform();
    expect(validateManifests(objects)).toEqual([]);
    expect(checkRestricted(objects)).toEqual([]);
    expect(checkReadOnlyRoot(objects)).toEqual([]);
  });

  test('attached to an agent: its limits join the agent\'s own in the sidecar config, in order, and the runtime accepts it', () => {
    const { objects } = platform();
    const config = sidecarJson(objects, 'support-chat-sidecar-config');
    expect(() => parseSidecarConfig(config)).not.toThrow();
    expect(config.budgets).toEqual([
      { scope: 'run', unit: 'usd', period: 'hour', limit: 1 },
      { scope: 'agent', unit: 'usd', period: 'day', limit: 50 },
      { scope: 'user', unit: 'usd', period: 'month', limit: 5 },
      { scope: 'run', unit: 'usd', period: 'day', limit: 2 },
      { scope: 'team', unit: 'tokens', period: 'day', limit: 5_000_000 },
    ]);
    expect(config.rateLimits).toEqual([
      { scope: 'user', unit: 'requests', perMinute: 20 },
      { scope: 'agent', unit: 'tokens', perMinute: 200_000 },
    ]);
    expect(config.loopGuard).toEqual({ maxIterations: 25, maxCostUsd: 1, maxDurationMs: 600_000, maxRepeats: 4, runTtlMs: 86_400_000 });
    expect(config.agent).toEqual({ name: 'support-chat', team: 'customer-care' });
  });

  test('the guard\'s Redis store replaces the agent\'s memory store: URL, failure mode, password mounted in the sidecar only, egress to Redis', () => {
    const { objects } = platform();
    const config = sidecarJson(objects, 'support-chat-sidecar-config');
    expect(config.store).toEqual({
      type: 'redis',
      url: 'redis://redis-master.redis.svc.cluster.local:6379',
      password: { file: '/var/run/cdk-agents/redis/password' },
      keyPrefix: 'cdka:',
      commandTimeoutMs: 250,
      onUnavailable: 'fail-closed',
    });
    const deployment = find(objects, 'Deployment', 'support-chat');
    expect(volume(deployment, 'redis-password')?.secret).toEqual({ secretName: 'agents-redis', defaultMode: 0o440, items: [{ key: 'password', path: 'password' }] });
    expect(container(deployment, 'cdk-agents-sidecar').volumeMounts).toContainEqual({ name: 'redis-password', mountPath: '/var/run/cdk-agents/redis', readOnly: true });
    expect(container(deployment, 'agent').volumeMounts.map((m: Json) => m.name)).not.toContain('redis-password');
    const egress = find(objects, 'NetworkPolicy', 'support-chat').spec.egress as Json[];
    expect(egress).toContainEqual({ to: [{ ipBlock: { cidr: '10.20.0.5/32' } }], ports: [{ port: 6379, protocol: 'TCP' }] });
  });

  test('attached to a gateway: budgets per calling agent, user budgets and the loop guard in the gateway config, on its Redis', () => {
    const { objects } = platform();
    const config = sidecarJson(objects, 'llm-gateway-config');
    expect(() => parseSidecarConfig(config)).not.toThrow();
    expect(config.mode).toBe('gateway');
    expect(config.budgets).toEqual([
      { scope: 'agent', unit: 'tokens', period: 'day', limit: 20_000_000 },
      { scope: 'user', unit: 'usd', period: 'day', limit: 20 },
    ]);
    expect(config.rateLimits).toEqual([{ scope: 'agent', unit: 'requests', perMinute: 600 }]);
    expect(config.loopGuard).toEqual({ maxIterations: 50, runTtlMs: 86_400_000 });
    expect(config.store.type).toBe('redis');
    expect(volume(find(objects, 'Deployment', 'llm-gateway'), 'redis-password')).toBeDefined();
  });

  test('a team budget on a gateway follows each connected agent\'s team', () => {
    const c = chart();
    const gateway = gatewayOf(c, { store: BudgetStore.redis({ url: 'redis://redis:6379' }) });
    new BudgetGuard(c, 'Teams', { budgets: [Budget.usdPerDay(100).forTeam()], gateways: [gateway] });
    // Attached before any agent: the team comes with the connect.
    new AgentService(c, 'SupportChat', minimalProps({ providers: undefined, gateway, team: 'customer-care' }));
    const config = sidecarJson(synth(c), 'llm-gateway-config');
    expect(config.budgets).toEqual([{ scope: 'team', unit: 'usd', period: 'day', limit: 100 }]);
    expect(config.gateway.agents[0].team).toBe('customer-care');
  });

  test('limits added after attach reach every target (specs are lazy)', () => {
    const c = chart();
    const store = BudgetStore.redis({ url: 'redis://redis:6379' });
    const a = agent(c, 'A', { store });
    const b = agent(c, 'B', { store });
    const guard = new BudgetGuard(c, 'Shared', { budgets: [Budget.usdPerDay(10)] });
    guard.attach(a);
    guard.attach(b);
    guard.addBudget(Budget.usdPerMonth(3).forUser());
    guard.addRateLimit(RateLimit.requestsPerMinute(5).forUser());
    const objects = synth(c);
    for (const name of ['a', 'b']) {
      const config = sidecarJson(objects, `${name}-sidecar-config`);
      expect(config.budgets).toEqual([
        { scope: 'agent', unit: 'usd', period: 'day', limit: 10 },
        { scope: 'user', unit: 'usd', period: 'month', limit: 3 },
      ]);
      expect(config.rateLimits).toEqual([{ scope: 'user', unit: 'requests', perMinute: 5 }]);
    }
    expect(guard.agents).toEqual([a, b]);
    expect(guard.budgets).toHaveLength(2);
  });

  test('a target keeps its own Redis store when it is the same Redis; a guard without a store uses the target\'s', () => {
    const c = chart();
    // Two BudgetStore objects, one Redis: not a conflict.
    const a = agent(c, 'A', { store: BudgetStore.redis({ url: 'redis://redis:6379', keyPrefix: 'acme:' }) });
    new BudgetGuard(c, 'Same', { budgets: [Budget.usdPerDay(10)], store: BudgetStore.redis({ url: 'redis://redis:6379', keyPrefix: 'acme:' }), agents: [a] });
    const b = agent(c, 'B', { replicas: 1 });
    new BudgetGuard(c, 'NoStore', { budgets: [Budget.usdPerDay(10)], agents: [b] });
    const objects = synth(c);
    expect(sidecarJson(objects, 'a-sidecar-config').store).toMatchObject({ type: 'redis', keyPrefix: 'acme:' });
    expect(sidecarJson(objects, 'b-sidecar-config').store).toEqual({ type: 'memory' });
  });

  test('acceptPerReplicaBudgets on the guard accepts per-pod limits on a target without Redis', () => {
    const c = chart();
    const a = agent(c, 'A');
    new BudgetGuard(c, 'PerPod', { budgets: [Budget.usdPerDay(10)], acceptPerReplicaBudgets: true, agents: [a] });
    expect(sidecarJson(synth(c), 'a-sidecar-config').budgets).toEqual([{ scope: 'agent', unit: 'usd', period: 'day', limit: 10 }]);
  });

  test('the agent\'s own equal loop guard is fine, and attaching twice is a no-op', () => {
    const c = chart();
    const a = agent(c, 'A', { replicas: 1, loopGuard: LoopGuard.of({ maxIterations: 10 }) });
    const guard = new BudgetGuard(c, 'G', { loopGuard: LoopGuard.of({ maxIterations: 10 }), agents: [a] });
    guard.attach(a);
    expect(guard.agents).toEqual([a]);
    expect(sidecarJson(synth(c), 'a-sidecar-config').loopGuard).toEqual({ maxIterations: 10, runTtlMs: 86_400_000 });
  });

  test('its PrometheusRule is the default child, labelled for kube-prometheus-stack, and watches exactly its targets', () => {
    const { supportGuard, gatewayGuard, objects } = platform();
    expect(supportGuard.node.defaultChild).toBe(supportGuard.alerts);
    const support = find(objects, 'PrometheusRule', 'support-budgets');
    expect(support.metadata).toMatchObject({ namespace: 'agents', labels: { release: 'kube-prometheus-stack', 'app.kubernetes.io/part-of': 'cdk-agents' } });
    const exprs: string[] = support.spec.groups.flatMap((g: Json) => g.rules.map((r: Json) => r.expr));
    for (const expr of exprs) {
      expect(expr).toContain('namespace="agents"');
      expect(expr).toContain('job="support-chat"');
      expect(expr).not.toContain('llm-gateway"');
    }
    const gatewayRules: Json[] = find(objects, 'PrometheusRule', 'gateway-budgets').spec.groups.flatMap((g: Json) => g.rules);
    // Token burn and run length are watched on agents' sidecars (which see all their calls): not on a gateway-only guard.
    expect(gatewayRules.map((r) => r.alert)).not.toContain('AgentTokenBurnAnomaly');
    expect(gatewayRules.map((r) => r.alert)).toContain('LlmUpstreamFailovers');
    for (const r of gatewayRules) expect(r.expr).toContain('job="llm-gateway"');
    expect(gatewayGuard.gateways).toHaveLength(1);
  });

  test('the run-length alert follows the loop guard: 80% of maxIterations', () => {
    const { objects } = platform();
    const rule = find(objects, 'PrometheusRule', 'support-budgets').spec.groups[0].rules.find((r: Json) => r.alert === 'AgentRunIterationsHigh');
    expect(rule.expr).toMatch(/\) > 20$/);
  });

  test('emitAlerts: false emits nothing of its own', () => {
    const c = chart();
    const a = agent(c, 'A', { replicas: 1 });
    const guard = new BudgetGuard(c, 'Quiet', { budgets: [Budget.usdPerDay(10)], agents: [a], emitAlerts: false });
    expect(guard.alerts).toBeUndefined();
    expect(findAll(synth(c), 'PrometheusRule')).toEqual([]);
  });

  test('a gateway caching in its Redis keeps the cache there with the guard\'s (same) Redis', () => {
    const c = chart();
    const gateway = gatewayOf(c, { store: redis(c), cache: GatewayCache.redis() });
    new AgentService(c, 'A', minimalProps({ providers: undefined, gateway }));
    new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(10)], store: redis(c), gateways: [gateway] });
    const config = sidecarJson(synth(c), 'llm-gateway-config');
    expect(config.cache).toEqual({ ttlMs: 300_000, maxEntries: 10_000, maxBytes: 1_048_576, sampled: false, streams: false });
    expect(config.store.type).toBe('redis');
  });

  describe('enforced by the runtime (dist/sidecar.js with the synthesized config)', () => {
    let fake: FakeLlm;
    let sidecar: Sidecar;

    beforeAll(async () => {
      const c = chart();
      const a = agent(c, 'A', { replicas: 1 });
      new BudgetGuard(c, 'G', {
        rateLimits: [RateLimit.requestsPerMinute(1).forUser()],
        loopGuard: LoopGuard.of({ maxIterations: 2 }),
        agents: [a],
      });
      fake = await FakeLlm.start();
      const config = sidecarJson(synth(c), 'a-sidecar-config');
      // Only what ties it to the pod changes: loopback ports, the fake provider, no key file.
      config.listen = { host: '127.0.0.1', port: 0 };
      config.admin = { host: '127.0.0.1', port: 0 };
      config.providers[0].baseUrl = fake.openaiUrl;
      delete config.providers[0].apiKey;
      sidecar = await Sidecar.start({ config: config as SidecarConfigInput });
    }, 30_000);

    afterAll(async () => {
      await sidecar?.stop();
      await fake?.close();
    });

    const call = (headers: Record<string, string>) =>
      rawPost(`${sidecar.url}/v1/chat/completions`, JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }), {
        'content-type': 'application/json',
        authorization: 'Bearer sk-test',
        ...headers,
      });

    test('the guard\'s per-user rate limit refuses a user\'s second call, not another user\'s', async () => {
      expect((await call({ 'x-agent-user': 'alice' })).status).toBe(200);
      const refused = await call({ 'x-agent-user': 'alice' });
      expect(refused.status).toBe(429);
      expect(refused.headers['x-cdk-agents-error']).toBe('rate_limited');
      expect((await call({ 'x-agent-user': 'bob' })).status).toBe(200);
      expect(await sidecar.metric('budget_rejections_total', { scope: 'user', limit: 'requests_per_minute' })).toBe(1);
    });

    test('the guard\'s loop guard stops a run at its third call', async () => {
      expect((await call({ 'x-agent-user': 'carol', 'x-agent-run-id': 'run-1' })).status).toBe(200);
      expect((await call({ 'x-agent-user': 'dave', 'x-agent-run-id': 'run-1' })).status).toBe(200);
      const stopped = await call({ 'x-agent-user': 'erin', 'x-agent-run-id': 'run-1' });
      expect(stopped.status).toBe(429);
      expect(stopped.headers['x-cdk-agents-error']).toBe('loop_detected');
    });
  });
});
