/**
 * Budgets, rate limits and loop guards, enforced by a real sidecar process with the in-memory
 * store: reservations hold under concurrency, unused reservations are released, scopes are kept
 * apart, rejections come in the called API's shape, and loops are stopped.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { SidecarConfigInput } from '../../lib/spec';
import { FakeLlm } from '../support/fake-llm';
import { chatBody, MAX_TOKENS, MODEL, outcome, PRICES, reservedTokens } from '../support/policy';
import { metricDelta, Sidecar, sumSamples, testConfig } from '../support/sidecar';

let fake: FakeLlm;
beforeAll(async () => {
  fake = await FakeLlm.start();
});
afterAll(async () => fake?.close());
beforeEach(() => fake.reset());

function useSidecar(overrides: Partial<SidecarConfigInput>, options: { openaiOnly?: boolean } = {}): { sidecar: Sidecar; openai: OpenAI; anthropic: Anthropic } {
  const ctx = {} as { sidecar: Sidecar; openai: OpenAI; anthropic: Anthropic };
  beforeAll(async () => {
    ctx.sidecar = await Sidecar.start({
      config: testConfig({
        providers: [
          { name: 'openai', type: 'openai', baseUrl: fake.openaiUrl },
          ...(options.openaiOnly ? [] : [{ name: 'anthropic', type: 'anthropic' as const, baseUrl: fake.url }]),
        ],
        prices: PRICES,
        ...overrides,
      }),
    });
    ctx.openai = new OpenAI({ baseURL: ctx.sidecar.openaiBaseUrl, apiKey: 'k', maxRetries: 0 });
    ctx.anthropic = new Anthropic({ baseURL: ctx.sidecar.url, apiKey: 'k', maxRetries: 0 });
  });
  afterAll(async () => ctx.sidecar?.stop());
  return ctx;
}

describe('budget usage for alerting', () => {
  const ctx = useSidecar({
    agent: { name: 'test-agent', team: 'care' },
    budgets: [
      { scope: 'agent', unit: 'tokens', period: 'day', limit: 1_000 },
      { scope: 'team', unit: 'usd', period: 'month', limit: 10 },
      { scope: 'user', unit: 'tokens', period: 'day', limit: 500 },
    ],
  });

  test('budget_usage_ratio shows the share of each agent and team budget used in its window; never per user', async () => {
    fake.defaultStep = { usage: { input: 150, output: 50 } };
    await ctx.openai.chat.completions.create(chatBody('first'), { headers: { 'x-agent-user': 'u1' } });
    await ctx.openai.chat.completions.create(chatBody('second'), { headers: { 'x-agent-user': 'u2' } });
    const text = await ctx.sidecar.metricsText();
    // 2 x 200 tokens of 1,000; 400 tokens at $1,000 per million = $0.40 of $10.
    expect(sumSamples(text, 'budget_usage_ratio', { agent: 'test-agent', scope: 'agent', unit: 'tokens', period: 'day' })).toBeCloseTo(0.4, 6);
    expect(sumSamples(text, 'budget_usage_ratio', { agent: 'test-agent', scope: 'team', unit: 'usd', period: 'month' })).toBeCloseTo(0.04, 6);
    expect(text).not.toMatch(/budget_usage_ratio\{[^}]*scope="user"/);
  });
});

describe('a budget under 50 concurrent requests', () => {
  const content = 'What is the status of order 1234?';
  const perRequest = reservedTokens(content); // tokens, and dollars per thousand
  const fits = 7;
  const ctx = useSidecar({ budgets: [{ scope: 'agent', unit: 'usd', period: 'day', limit: ((fits + 0.5) * perRequest) / 1_000 }] });

  test('admits exactly what fits the cap when usage matches the reservation: the overshoot is zero, not the concurrency', async () => {
    // The provider bills exactly what was reserved: prompt estimate in, max_tokens out.
    fake.defaultStep = { usage: { input: perRequest - MAX_TOKENS, output: MAX_TOKENS }, delayMs: 50 };
    const before = await ctx.sidecar.metricsText();
    const results = await Promise.all(Array.from({ length: 50 }, () => outcome(ctx.openai.chat.completions.create(chatBody(content)))));
    const after = await ctx.sidecar.metricsText();
    expect(results.filter((r) => r === 200)).toHaveLength(fits);
    expect(results.filter((r) => r === '429 budget_exceeded')).toHaveLength(50 - fits);
    expect(fake.requests).toHaveLength(fits);
    const spent = metricDelta(before, after, 'llm_cost_usd_total', { model: MODEL });
    expect(spent).toBeLessThanOrEqual(((fits + 0.5) * perRequest) / 1_000 + 1e-9);
    expect(metricDelta(before, after, 'budget_rejections_total', { scope: 'agent', limit: 'usd_per_day' })).toBe(50 - fits);
  });
});

describe('estimation error is the only overshoot', () => {
  const content = 'Summarize the ticket.';
  const perRequest = reservedTokens(content);
  const fits = 5;
  const error = 40; // the provider counts 40 more input tokens than estimated
  const ctx = useSidecar({ budgets: [{ scope: 'agent', unit: 'usd', period: 'day', limit: ((fits + 0.5) * perRequest) / 1_000 }] });

  test('50 at once against a cap: spend exceeds it by at most the estimation error of the requests admitted together', async () => {
    fake.defaultStep = { usage: { input: perRequest - MAX_TOKENS + error, output: MAX_TOKENS }, delayMs: 50 };
    const before = await ctx.sidecar.metricsText();
    const results = await Promise.all(Array.from({ length: 50 }, () => outcome(ctx.openai.chat.completions.create(chatBody(content)))));
    const after = await ctx.sidecar.metricsText();
    const admitted = results.filter((r) => r === 200).length;
    expect(admitted).toBe(fits);
    const cap = ((fits + 0.5) * perRequest) / 1_000;
    const spent = metricDelta(before, after, 'llm_cost_usd_total', { model: MODEL });
    expect(spent).toBeGreaterThan(cap - perRequest / 1_000); // the budget was really used up...
    expect(spent - cap).toBeLessThanOrEqual((admitted * error) / 1_000 + 1e-9); // ...and overshot only by the error
    // Settlement charged the real usage: the budget is now over, so even a small request is refused.
    expect(await outcome(ctx.openai.chat.completions.create({ ...chatBody('x'), max_tokens: 1 }))).toBe('429 budget_exceeded');
  });
});

describe('reservations are settled', () => {
  const content = 'Hello';
  const perRequest = reservedTokens(content);
  const ctx = useSidecar(
    {
      retry: { maxAttempts: 1 },
      budgets: [{ scope: 'agent', unit: 'tokens', period: 'hour', limit: perRequest + 10 }],
    },
    { openaiOnly: true },
  );

  test('a failed request releases its reservation, and a cheap answer frees what it did not use', async () => {
    // Only one reservation fits at a time.
    fake.script({ status: 500 });
    expect(await outcome(ctx.openai.chat.completions.create(chatBody(content)))).toBe('502 upstream_unavailable');
    // Released: the next one fits, and it used only 21 tokens of its reservation.
    fake.script({ usage: { input: 12, output: 9 } });
    expect(await outcome(ctx.openai.chat.completions.create(chatBody(content)))).toBe(200);
    // 21 used + a new reservation of perRequest would exceed perRequest + 10 ...
    expect(await outcome(ctx.openai.chat.completions.create(chatBody(content)))).toBe('429 budget_exceeded');
    // ... but a reservation of up to perRequest + 10 - 21 fits.
    expect(await outcome(ctx.openai.chat.completions.create({ ...chatBody(content), max_tokens: MAX_TOKENS - 21 }))).toBe(200);
  });
});

describe('scopes', () => {
  const ctx = useSidecar({
    agent: { name: 'test-agent', team: 'support' },
    rateLimits: [
      { scope: 'user', unit: 'requests', perMinute: 2 },
      { scope: 'team', unit: 'requests', perMinute: 5 },
    ],
  });

  test('each end user has their own limit, and the team caps them together', async () => {
    const as = (user: string) => outcome(ctx.openai.chat.completions.create(chatBody('hi'), { headers: { 'x-agent-user': user } }));
    expect([await as('alice'), await as('alice'), await as('alice')]).toEqual([200, 200, '429 rate_limited']);
    expect([await as('bob'), await as('bob')]).toEqual([200, 200]);
    // Team: 5 per minute across everyone, and 4 are used.
    expect(await as('carol')).toBe(200);
    expect(await as('dave')).toBe('429 rate_limited');
    const text = await ctx.sidecar.metricsText();
    expect(sumSamples(text, 'budget_rejections_total', { scope: 'user', limit: 'requests_per_minute' })).toBe(1);
    expect(sumSamples(text, 'budget_rejections_total', { scope: 'team', limit: 'requests_per_minute' })).toBe(1);
    // The end user's id is in no metric.
    expect(text).not.toMatch(/alice|bob|carol|dave/);
  });

  test('a rejection says which limit, carries Retry-After, and comes in the called API\'s shape', async () => {
    const raw = await fetch(`${ctx.sidecar.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-agent-user': 'alice' },
      body: JSON.stringify({ model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(raw.status).toBe(429);
    expect(Number(raw.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(raw.headers.get('x-cdk-agents-error')).toBe('rate_limited');
    const body = await raw.json();
    expect(body).toEqual({ type: 'error', error: { type: 'rate_limited', message: expect.stringContaining('user rate limit of 2 requests per minute') } });
    expect(fake.requests.filter((r) => r.path === '/v1/messages')).toHaveLength(0);
  });
});

describe('loop guards', () => {
  const ctx = useSidecar({ loopGuard: { maxIterations: 6, maxRepeats: 3 } });

  test('the same new turn three times in a row stops the run with loop_detected; another run is unaffected', async () => {
    const call = (run: string, content: string) =>
      ctx.openai.chat.completions.create(chatBody(content), { headers: { 'x-agent-run-id': run } }).then(
        () => 200,
        (e: InstanceType<typeof OpenAI.APIError>) => `${e.status} ${e.code} ${e.headers?.get('x-should-retry')}`,
      );
    expect(await call('run-1', 'look up the order')).toBe(200);
    expect(await call('run-1', 'look up the order')).toBe(200);
    expect(await call('run-1', 'look up the order')).toBe('429 loop_detected false');
    expect(await call('run-2', 'look up the order')).toBe(200);
    const text = await ctx.sidecar.metricsText();
    expect(sumSamples(text, 'budget_rejections_total', { scope: 'run', limit: 'run_repeats' })).toBe(1);
  });

  test('a run may make at most maxIterations calls, and every call feeds agent_run_iterations', async () => {
    const before = await ctx.sidecar.metricsText();
    const results = [];
    for (let i = 0; i < 8; i++) results.push(await outcome(ctx.openai.chat.completions.create(chatBody(`step ${i}`), { headers: { 'x-agent-run-id': 'run-3' } })));
    expect(results).toEqual([200, 200, 200, 200, 200, 200, '429 loop_detected', '429 loop_detected']);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'agent_run_iterations_count', { agent: 'test-agent' })).toBe(6);
    // The sixth call landed in the bucket le=8 (and not le=5).
    expect(metricDelta(before, after, 'agent_run_iterations_bucket', { agent: 'test-agent', le: '5' })).toBe(5);
    expect(metricDelta(before, after, 'agent_run_iterations_bucket', { agent: 'test-agent', le: '8' })).toBe(6);
  });
});

describe('loop guard on tokens and cost per run', () => {
  const content = 'next step';
  const ctx = useSidecar({ loopGuard: { maxCostUsd: (2.5 * reservedTokens(content)) / 1_000 } });

  test('a run that would spend more than maxCostUsd is stopped; usage is what counts', async () => {
    fake.defaultStep = { usage: { input: reservedTokens(content) - MAX_TOKENS, output: MAX_TOKENS } };
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await outcome(ctx.openai.chat.completions.create(chatBody(content), { headers: { 'x-agent-run-id': 'cost-a' } })));
    expect(results).toEqual([200, 200, '429 loop_detected', '429 loop_detected']);
  });
});
