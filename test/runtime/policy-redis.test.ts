/**
 * Budgets and rate limits on a real Redis shared by sidecar processes: one global limit, not
 * one per replica; at most one round trip to reserve and one to settle; the configured
 * behaviour when Redis goes away, and recovery without a restart when it comes back; AUTH and
 * TLS as managed Redis needs them.
 */
import { spawn } from 'node:child_process';
import OpenAI from 'openai';
import type { SidecarConfigInput } from '../../lib/spec';
import { FakeLlm } from '../support/fake-llm';
import { RedisServer } from '../support/redis';
import { metricDelta, Sidecar, sleep, sumSamples, testConfig } from '../support/sidecar';
import { chatBody, outcome, PRICES, reservedTokens } from '../support/policy';

let fake: FakeLlm;
beforeAll(async () => {
  fake = await FakeLlm.start();
});
afterAll(async () => fake?.close());
beforeEach(() => fake.reset());

async function startSidecar(redis: RedisServer, overrides: Partial<SidecarConfigInput>, env?: NodeJS.ProcessEnv): Promise<{ sidecar: Sidecar; openai: OpenAI }> {
  const sidecar = await Sidecar.start({
    config: testConfig({
      providers: [{ name: 'openai', type: 'openai', baseUrl: fake.openaiUrl }],
      prices: PRICES,
      store: { type: 'redis', url: redis.url, commandTimeoutMs: 500 },
      ...overrides,
    }),
    env,
  });
  return { sidecar, openai: new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: 'k', maxRetries: 0 }) };
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('two sidecars sharing one Redis', () => {
  let redis: RedisServer;
  const sidecars: Sidecar[] = [];
  const clients: OpenAI[] = [];
  const content = 'Where is my parcel?';
  const perRequest = reservedTokens(content);
  const fits = 6;

  beforeAll(async () => {
    redis = await RedisServer.start();
    for (let i = 0; i < 2; i++) {
      const { sidecar, openai } = await startSidecar(redis, {
        rateLimits: [{ scope: 'agent', unit: 'requests', perMinute: 10 }],
        budgets: [{ scope: 'agent', unit: 'usd', period: 'day', limit: ((fits + 0.5) * perRequest) / 1_000 }],
      });
      sidecars.push(sidecar);
      clients.push(openai);
    }
  });
  afterAll(async () => {
    await Promise.all(sidecars.map((s) => s.stop()));
    await redis?.stop();
  });

  test('enforce one global budget under 50 concurrent requests, not one per replica', async () => {
    fake.defaultStep = { usage: { input: perRequest - 100, output: 100 }, delayMs: 30 };
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => outcome(clients[i % 2].chat.completions.create(chatBody(content)))));
    expect(results.filter((r) => r === 200)).toHaveLength(fits);
    expect(fake.requests).toHaveLength(fits);
    // Both replicas rejected some: the limit really was shared.
    const rejectedBy = await Promise.all(sidecars.map(async (s) => sumSamples(await s.metricsText(), 'budget_rejections_total', { limit: 'usd_per_day' })));
    expect(rejectedBy[0] + rejectedBy[1]).toBe(50 - fits);
    expect(rejectedBy[0]).toBeGreaterThan(0);
    expect(rejectedBy[1]).toBeGreaterThan(0);
    // Both replicas report the shared budget's use from Redis: the same ratio, near the cap.
    const ratios = await Promise.all(sidecars.map(async (s) => sumSamples(await s.metricsText(), 'budget_usage_ratio', { scope: 'agent', unit: 'usd', period: 'day' })));
    expect(ratios[0]).toBeCloseTo(fits / (fits + 0.5), 6);
    expect(ratios[1]).toBe(ratios[0]);
  });

  test('enforce one global rate limit', async () => {
    // The budget above is spent; a second agent name gets fresh keys for the rate limit test.
    await redis.cli('FLUSHALL');
    fake.defaultStep = {};
    const results = [];
    for (let i = 0; i < 16; i++) results.push(await outcome(clients[i % 2].chat.completions.create({ ...chatBody('hi'), max_tokens: 1 })));
    expect(results.filter((r) => r === 200)).toHaveLength(10);
    expect(results.slice(10)).toEqual(Array(6).fill('429 rate_limited'));
  });

  test('at most one round trip to reserve and one to settle per request', async () => {
    await redis.cli('FLUSHALL');
    // MONITOR shows every command a client sends ([0 127.0.0.1:port]) apart from those a script runs ([0 lua]).
    const monitor = spawn('redis-cli', ['-p', String(redis.port), 'MONITOR'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let seen = '';
    monitor.stdout.on('data', (d) => (seen += d));
    await sleep(200);
    for (let i = 0; i < 5; i++) expect(await outcome(clients[0].chat.completions.create({ ...chatBody('hi'), max_tokens: 1 }))).toBe(200);
    await sleep(200);
    monitor.kill();
    const sent = seen.split('\n').filter((line) => /\[\d+ 127\.0\.0\.1:\d+\]/.test(line)).map((line) => /\] "(\w+)"/.exec(line)?.[1]);
    // 5 reservations and 5 settlements (the usd budget is corrected by the real cost).
    expect(sent).toEqual(Array(10).fill('EVALSHA'));
  });
});

describe('Redis unreachable', () => {
  test('fail-closed (the default): 503 budget_store_unavailable with Retry-After, readiness stays up, and enforcement recovers by itself', async () => {
    const redis = await RedisServer.start();
    const { sidecar, openai } = await startSidecar(redis, { rateLimits: [{ scope: 'agent', unit: 'requests', perMinute: 2 }] });
    try {
      expect(await outcome(openai.chat.completions.create(chatBody('a')))).toBe(200);
      await redis.stop();
      const before = await sidecar.metricsText();
      const raw = await fetch(`${sidecar.openaiBaseUrl}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chatBody('b')) });
      expect(raw.status).toBe(503);
      expect(raw.headers.get('retry-after')).toBe('1');
      expect(((await raw.json()) as { error: { code: string } }).error.code).toBe('budget_store_unavailable');
      expect(fake.requests).toHaveLength(1); // nothing went upstream unenforced
      const after = await sidecar.metricsText();
      expect(sumSamples(after, 'budget_store_up')).toBe(0);
      expect(metricDelta(before, after, 'budget_store_errors_total', { mode: 'fail-closed' })).toBe(1);
      expect((await fetch(`${sidecar.adminUrl}/readyz`)).status).toBe(200);

      await redis.startProcess(); // back, and empty
      await waitFor(async () => sumSamples(await sidecar.metricsText(), 'budget_store_up') === 1, 10_000, 'reconnection');
      expect([await outcome(openai.chat.completions.create(chatBody('c'))), await outcome(openai.chat.completions.create(chatBody('d')))]).toEqual([200, 200]);
      expect(await outcome(openai.chat.completions.create(chatBody('e')))).toBe('429 rate_limited');
    } finally {
      await sidecar.stop();
      await redis.stop();
    }
  });

  test('fail-open lets requests through unenforced, counted', async () => {
    const redis = await RedisServer.start();
    const { sidecar, openai } = await startSidecar(redis, {
      rateLimits: [{ scope: 'agent', unit: 'requests', perMinute: 1 }],
      store: { type: 'redis', url: redis.url, commandTimeoutMs: 500, onUnavailable: 'fail-open' },
    });
    try {
      await redis.stop();
      const results = [];
      for (let i = 0; i < 3; i++) results.push(await outcome(openai.chat.completions.create(chatBody('x'))));
      expect(results).toEqual([200, 200, 200]);
      expect(await sidecar.metric('budget_store_errors_total', { mode: 'fail-open' })).toBe(3);
    } finally {
      await sidecar.stop();
    }
  });

  test('local enforces the limits per process while Redis is away', async () => {
    const redis = await RedisServer.start();
    const { sidecar, openai } = await startSidecar(redis, {
      rateLimits: [{ scope: 'agent', unit: 'requests', perMinute: 2 }],
      store: { type: 'redis', url: redis.url, commandTimeoutMs: 500, onUnavailable: 'local' },
    });
    try {
      await redis.stop();
      const results = [];
      for (let i = 0; i < 3; i++) results.push(await outcome(openai.chat.completions.create(chatBody('x'))));
      expect(results).toEqual([200, 200, '429 rate_limited']);
    } finally {
      await sidecar.stop();
    }
  });

  test('a Redis that hangs counts as unavailable after commandTimeoutMs', async () => {
    const redis = await RedisServer.start();
    const { sidecar, openai } = await startSidecar(redis, { rateLimits: [{ scope: 'agent', unit: 'requests', perMinute: 100 }] });
    try {
      expect(await outcome(openai.chat.completions.create(chatBody('a')))).toBe(200);
      // The next reservation waits past commandTimeoutMs (500) on a server that does not answer.
      const { awake } = await redis.hang(2);
      const started = Date.now();
      expect(await outcome(openai.chat.completions.create(chatBody('b')))).toBe('503 budget_store_unavailable');
      expect(Date.now() - started).toBeLessThan(1_800);
      await awake;
    } finally {
      await sidecar.stop();
      await redis.stop();
    }
  });
});

describe('managed Redis: AUTH and TLS', () => {
  test('connects with a password from a secret reference, over TLS with a CA file', async () => {
    const redis = await RedisServer.start({ password: 's3cret-token', tls: true });
    const { sidecar, openai } = await startSidecar(
      redis,
      {
        rateLimits: [{ scope: 'agent', unit: 'requests', perMinute: 1 }],
        // The URL too comes by reference, the way the cloud side hands over an endpoint it learns at apply time.
        store: { type: 'redis', url: { env: 'REDIS_URL' }, password: { env: 'REDIS_AUTH' }, tls: { caFile: redis.caFile }, commandTimeoutMs: 1_000 },
      },
      { REDIS_AUTH: 's3cret-token', REDIS_URL: redis.url },
    );
    try {
      expect([await outcome(openai.chat.completions.create(chatBody('a'))), await outcome(openai.chat.completions.create(chatBody('b')))]).toEqual([200, '429 rate_limited']);
      expect(Number(redis.cli('DBSIZE'))).toBeGreaterThan(0);
    } finally {
      await sidecar.stop();
      await redis.stop();
    }
  });

  test('a wrong password is an unavailable store, not a silent bypass', async () => {
    const redis = await RedisServer.start({ password: 'right' });
    const { sidecar, openai } = await startSidecar(
      redis,
      { rateLimits: [{ scope: 'agent', unit: 'requests', perMinute: 1 }], store: { type: 'redis', url: redis.url, password: { env: 'REDIS_AUTH' } } },
      { REDIS_AUTH: 'wrong' },
    );
    try {
      expect(await outcome(openai.chat.completions.create(chatBody('a')))).toBe('503 budget_store_unavailable');
      expect(await sidecar.metric('budget_store_up')).toBe(0);
    } finally {
      await sidecar.stop();
      await redis.stop();
    }
  });
});
