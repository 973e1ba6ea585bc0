/**
 * BudgetGuard validation: what the runtime would refuse, or would enforce other than declared,
 * fails at construction (or at attach) naming the guard, the target and the fix; what a later
 * call can still fix fails at synth.
 */
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
} from '../../lib';
import { agent, chart, minimalProps, sidecarJson, synth } from './helpers';
import type { Chart } from 'cdk8s';

const gatewayOf = (c: Chart, props: Partial<ConstructorParameters<typeof LlmGateway>[2]> = {}) =>
  new LlmGateway(c, 'Gw', { providers: [LlmProvider.openai({ apiKey: SecretKey.fromSecret('llm-keys', 'openai') })], ...props });
const redis = (url = 'redis://redis:6379') => BudgetStore.redis({ url });

describe('BudgetGuard errors', () => {
  describe('scopes the runtime cannot key', () => {
    test('a team budget on an agent without a team', () => {
      const c = chart();
      const a = agent(c, 'A', { store: redis() });
      const guard = new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(100).forTeam()] });
      expect(() => guard.attach(a)).toThrow(
        "BudgetGuard 'g': cannot attach to AgentService 'a': the budget 100 usd per day (team) is kept per team, but the agent has no 'team' (the runtime keys team limits by it). " +
          "Set 'team' on the agent, or give the limit another scope (forAgent(), forUser(), forRun()).",
      );
      expect(guard.agents).toEqual([]);
      expect(a.budgets).toEqual([]);
    });

    test('a team rate limit too, also when added after attach', () => {
      const c = chart();
      const a = agent(c, 'A', { store: redis() });
      const guard = new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(10)], agents: [a] });
      expect(() => guard.addRateLimit(RateLimit.tokensPerMinute(1000).forTeam())).toThrow(/the rate limit 1000 tokens per minute \(team\) is kept per team, but the agent has no 'team'/);
      expect(guard.rateLimits).toEqual([]);
    });

    test('a team budget on a gateway none of whose agents has a team: at synth, in the runtime\'s words', () => {
      const c = chart();
      const gw = gatewayOf(c, { store: redis() });
      new AgentService(c, 'A', minimalProps({ providers: undefined, gateway: gw }));
      new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(100).forTeam()], gateways: [gw] });
      expect(() => synth(c)).toThrow(/BudgetGuard 'g': LlmGateway 'gw' keeps 100 usd per day \(team\) per calling agent's team, but none of its connected agents has a 'team'/);
      expect(() => synth(c)).toThrow(/'budgets\[0\]': scope team needs at least one gateway\.agents\[\]\.team: give the connected agents their teams, or use another scope/);
    });

    test('user and run budgets on a gateway are fine (the sidecar forwards x-agent-user and x-agent-run-id)', () => {
      const c = chart();
      const gw = gatewayOf(c, { store: redis() });
      new AgentService(c, 'A', minimalProps({ providers: undefined, gateway: gw }));
      new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(5).forUser(), Budget.usdPerDay(1).forRun()], gateways: [gw] });
      expect(sidecarJson(synth(c), 'gw-config').budgets.map((b: { scope: string }) => b.scope)).toEqual(['user', 'run']);
    });
  });

  describe('limits shared by replicas need Redis (the same check as the agent\'s own budgets)', () => {
    test('a per-agent budget on 2 replicas with the memory store names the guard\'s props', () => {
      const c = chart();
      const a = agent(c, 'A');
      expect(() => new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(50)], agents: [a] })).toThrow(
        "AgentService 'a': the budget 50 usd per day (agent) of BudgetGuard 'g' is shared by every pod, but with 2 replicas and the memory store each pod keeps its own count, so the real cap is 2x. " +
          "Set 'store: BudgetStore.redis({ url, passwordSecret })' on BudgetGuard 'g' to share it, or 'acceptPerReplicaBudgets: true' on BudgetGuard 'g' if per-pod limits are intended.",
      );
    });

    test('a per-user rate limit with autoscaling names the maximum', () => {
      const c = chart();
      const a = agent(c, 'A', { autoscaling: { minReplicas: 2, maxReplicas: 6 } });
      expect(() => new BudgetGuard(c, 'G', { rateLimits: [RateLimit.requestsPerMinute(20).forUser()], agents: [a] })).toThrow(/up to 6 replicas .* real cap is 6x/);
    });

    test.each([
      ['the guard\'s Redis store', { store: redis() }, {}],
      ['the guard\'s acceptPerReplicaBudgets', { acceptPerReplicaBudgets: true }, {}],
      ['the agent\'s Redis store', {}, { store: redis() }],
      ['the agent\'s acceptPerReplicaBudgets', {}, { acceptPerReplicaBudgets: true }],
      ['one replica', {}, { replicas: 1 }],
    ])('fine with %s', (_, guardProps, agentProps) => {
      const c = chart();
      const a = agent(c, 'A', agentProps);
      expect(() => new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(50)], agents: [a], ...guardProps })).not.toThrow();
    });

    test('run budgets and loop guards live in one agent pod, but are spread over gateway pods', () => {
      const c = chart();
      expect(() => new BudgetGuard(c, 'Agents', { budgets: [Budget.usdPerDay(2).forRun()], loopGuard: LoopGuard.of({ maxIterations: 20 }), agents: [agent(c, 'A')] })).not.toThrow();
      const gw = gatewayOf(c);
      expect(() => new BudgetGuard(c, 'Runs', { budgets: [Budget.usdPerDay(2).forRun()], gateways: [gw] })).toThrow(
        /LlmGateway 'gw': the budget 2 usd per day \(run\) of BudgetGuard 'runs' is shared by every gateway pod, .* real cap is 10x \(the Service spreads a run's calls over the pods\)\. Set 'store: BudgetStore\.redis\(\{ url, passwordSecret \}\)' on BudgetGuard 'runs'/,
      );
      expect(() => new BudgetGuard(c, 'Loops', { loopGuard: LoopGuard.of({ maxIterations: 20 }), gateways: [gw] })).toThrow(/the loop guard of BudgetGuard 'loops' is shared by every gateway pod/);
    });

    test('a failed attach leaves the target as it was', () => {
      const c = chart();
      const a = agent(c, 'A');
      const guard = new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(2).forRun(), Budget.usdPerDay(50)], loopGuard: LoopGuard.of({ maxIterations: 5 }) });
      expect(() => guard.attach(a)).toThrow(/real cap is 2x/);
      expect(a.budgets).toEqual([]);
      expect(a.loopGuard).toBeUndefined();
      // Another guard can still take it.
      expect(() => new BudgetGuard(c, 'Other', { budgets: [Budget.usdPerDay(2).forRun()], agents: [a] })).not.toThrow();
    });
  });

  describe('conflicts with what the target already has', () => {
    test('a different Redis store', () => {
      const c = chart();
      const a = agent(c, 'A', { store: redis('redis://redis-a:6379') });
      expect(() => new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(50)], store: redis('redis://redis-b:6379'), agents: [a] })).toThrow(
        "BudgetGuard 'g': cannot attach to AgentService 'a': it keeps its limits in Redis redis://redis-a:6379 (onUnavailable fail-closed, keyPrefix 'cdka:'), " +
          "this guard in Redis redis://redis-b:6379 (onUnavailable fail-closed, keyPrefix 'cdka:'). Counters in two stores never add up: give both the same 'store' (or remove the target's own).",
      );
    });

    test('the same Redis with another failure mode is a different store', () => {
      const c = chart();
      const a = agent(c, 'A', { store: redis() });
      const failOpen = BudgetStore.redis({ url: 'redis://redis:6379', onUnavailable: StoreUnavailableBehavior.FAIL_OPEN });
      expect(() => new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(50)], store: failOpen, agents: [a] })).toThrow(/onUnavailable fail-closed.*onUnavailable fail-open/);
    });

    test('a different loop guard', () => {
      const c = chart();
      const a = agent(c, 'A', { loopGuard: LoopGuard.of({ maxIterations: 10 }) });
      expect(() => new BudgetGuard(c, 'G', { loopGuard: LoopGuard.of({ maxIterations: 40, maxRepeats: 3 }), agents: [a] })).toThrow(
        "BudgetGuard 'g': cannot attach to AgentService 'a': it already has a different 'loopGuard' (maxIterations 10; this guard's: maxIterations 40, maxRepeats 3). A run has one loop guard: remove one of them.",
      );
    });

    test('a budget of the same scope, unit and period', () => {
      const c = chart();
      const a = agent(c, 'A', { store: redis(), budgets: [Budget.usdPerDay(30)] });
      expect(() => new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(50)], agents: [a] })).toThrow(
        "BudgetGuard 'g': cannot attach to AgentService 'a': it already has the budget 30 usd per day (agent), and this guard brings 50 usd per day (agent); the runtime keeps one budget per scope, unit and period. Remove one of them.",
      );
    });

    test('a rate limit of the same scope and unit', () => {
      const c = chart();
      const a = agent(c, 'A', { store: redis(), rateLimits: [RateLimit.requestsPerMinute(10).forUser()] });
      expect(() => new BudgetGuard(c, 'G', { rateLimits: [RateLimit.requestsPerMinute(20).forUser()], agents: [a] })).toThrow(/already has the rate limit 10 requests per minute \(user\)/);
    });

    test('another guard', () => {
      const c = chart();
      const a = agent(c, 'A', { store: redis() });
      new BudgetGuard(c, 'First', { budgets: [Budget.usdPerDay(50)], agents: [a] });
      expect(() => new BudgetGuard(c, 'Second', { budgets: [Budget.usdPerMonth(5).forUser()], agents: [a] })).toThrow(
        "BudgetGuard 'second': cannot attach to AgentService 'a': BudgetGuard 'first' is already attached to it. A target takes one guard, so its limits, store and alerts have one source: put these limits in 'first' (or on the target itself with addBudget()).",
      );
    });

    test('a gateway caching in memory cannot take a Redis store from a guard', () => {
      const c = chart();
      const gw = gatewayOf(c, { acceptPerReplicaBudgets: true, cache: GatewayCache.memory() });
      expect(() => new BudgetGuard(c, 'G', { budgets: [Budget.usdPerDay(50)], store: redis(), gateways: [gw] })).toThrow(
        /LlmGateway 'gw': BudgetGuard 'g' brings a Redis store, where the runtime also keeps the response cache, but 'cache' is GatewayCache\.memory\(\)\. Use GatewayCache\.redis\(\)/,
      );
    });
  });

  describe('the guard itself', () => {
    test('two budgets of the same scope, unit and period', () => {
      expect(() => new BudgetGuard(chart(), 'G', { budgets: [Budget.usdPerDay(50), Budget.usdPerDay(20)] })).toThrow(
        "BudgetGuard 'g': two budgets in usd per day for scope agent (50 and 20); the runtime keeps one per scope, unit and period. Keep one.",
      );
    });

    test('two rate limits of the same scope and unit', () => {
      expect(() => new BudgetGuard(chart(), 'G', { rateLimits: [RateLimit.requestsPerMinute(5).forUser(), RateLimit.requestsPerMinute(9).forUser()] })).toThrow(
        /two rate limits in requests per minute for scope user \(5 and 9\)/,
      );
    });

    test('a loop guard the runtime would refuse names the field', () => {
      expect(() => new BudgetGuard(chart(), 'G', { loopGuard: LoopGuard.of({ maxIterations: 2.5 }) })).toThrow(/^BudgetGuard 'g': 'loopGuard' would be refused by the runtime: maxIterations: /);
      expect(() => new BudgetGuard(chart(), 'G', { loopGuard: LoopGuard.of({ maxRepeats: 1 }) })).toThrow(/'loopGuard' would be refused by the runtime: maxRepeats: /);
    });

    test('alert thresholds name the prop', () => {
      expect(() => new BudgetGuard(chart(), 'G', { budgets: [Budget.usdPerDay(1)], alerts: { budgetWarningRatio: 1.2 } })).toThrow(
        "AgentAlerts 'g': 'budgetWarningRatio' (1.2) must be above 0 and below 1 (a share of the budget; 1 is AgentBudgetExhausted).",
      );
      expect(() => new BudgetGuard(chart(), 'G', { alerts: { labels: { release: 'kube prometheus' } } })).toThrow(/'labels\.release' \('kube prometheus'\) is not a valid label value/);
    });

    test('alerts without emitAlerts', () => {
      expect(() => new BudgetGuard(chart(), 'G', { emitAlerts: false, alerts: { tokenBurnFactor: 4 } })).toThrow(
        "BudgetGuard 'g': 'alerts' sets alert thresholds, but 'emitAlerts' is false. Remove one.",
      );
    });

    test('attached to nothing, or declaring nothing: at synth', () => {
      const c = chart();
      new BudgetGuard(c, 'Idle', { budgets: [Budget.usdPerDay(50)] });
      expect(() => synth(c)).toThrow(/BudgetGuard 'idle': is attached to nothing, so nothing enforces its limits\. Call budgets\.attach\(agent\)/);
      const d = chart();
      new BudgetGuard(d, 'Empty', { agents: [agent(d, 'A')] });
      expect(() => synth(d)).toThrow(/BudgetGuard 'empty': declares no budget, rate limit or loop guard/);
    });

    test('the name must be a DNS label', () => {
      expect(() => new BudgetGuard(chart(), 'G', { name: 'Support_Budgets' })).toThrow(/BudgetGuard: 'name' \('Support_Budgets'\) must be a DNS label/);
    });
  });
});
