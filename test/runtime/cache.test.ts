/**
 * The response cache: deterministic requests answered once by the provider and then from the
 * cache (whatever the key order), per tenant; sampled and streamed requests only when asked;
 * entries expiring with their TTL; shared across replicas through Redis.
 */
import OpenAI from 'openai';
import type { SidecarConfigInput } from '../../lib/spec';
import { FakeLlm } from '../support/fake-llm';
import { RedisServer } from '../support/redis';
import { metricDelta, rawPost, Sidecar, sleep, testConfig } from '../support/sidecar';

let fake: FakeLlm;
beforeAll(async () => {
  fake = await FakeLlm.start();
});
afterAll(async () => fake?.close());
beforeEach(() => fake.reset());

async function start(cache: SidecarConfigInput['cache'], extra: Partial<SidecarConfigInput> = {}): Promise<{ sidecar: Sidecar; openai: OpenAI }> {
  const sidecar = await Sidecar.start({ config: testConfig({ providers: [{ name: 'openai', type: 'openai', baseUrl: fake.openaiUrl }], cache, ...extra }) });
  return { sidecar, openai: new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: 'k', maxRetries: 0 }) };
}

const ask = (openai: OpenAI, extra: Partial<OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming> = {}, options?: OpenAI.RequestOptions) =>
  openai.chat.completions.create({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: 'What is 2 + 2?' }], ...extra }, options);

describe('in memory', () => {
  let ctx: { sidecar: Sidecar; openai: OpenAI };
  beforeAll(async () => {
    ctx = await start({ ttlMs: 1_000 });
  });
  afterAll(async () => ctx.sidecar.stop());

  test('a deterministic request is answered by the provider once, then from the cache, identically', async () => {
    fake.script({ text: 'Four.' });
    const before = await ctx.sidecar.metricsText();
    const first = await ask(ctx.openai);
    const second = await ask(ctx.openai);
    expect(fake.requests).toHaveLength(1);
    expect(second).toEqual(first);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_cache_requests_total', { result: 'miss' })).toBe(1);
    expect(metricDelta(before, after, 'llm_cache_requests_total', { result: 'hit' })).toBe(1);
    // A hit costs nothing: the provider's tokens were metered once.
    expect(metricDelta(before, after, 'llm_tokens_total', { type: 'output' })).toBe(9);
    expect(metricDelta(before, after, 'llm_requests_total', { provider: 'cache', code: '200' })).toBe(1);
  });

  test('the same request with its keys in another order hits; a different one misses', async () => {
    await ask(ctx.openai, { messages: [{ role: 'user', content: 'Capital of Peru?' }] });
    const reordered = JSON.stringify({ messages: [{ content: 'Capital of Peru?', role: 'user' }], temperature: 0, model: 'gpt-4o-mini' });
    const res = await rawPost(`${ctx.sidecar.url}/v1/chat/completions`, reordered, { 'content-type': 'application/json' });
    expect(res.headers['x-cdk-agents-cache']).toBe('hit');
    await ask(ctx.openai, { messages: [{ role: 'user', content: 'Capital of Chile?' }] });
    expect(fake.requests).toHaveLength(2);
  });

  test('sampled and streamed requests are not cached unless asked', async () => {
    await ask(ctx.openai, { temperature: 0.7 });
    await ask(ctx.openai, { temperature: 0.7 });
    await ask(ctx.openai, { temperature: undefined });
    const stream = async () => {
      const s = await ctx.openai.chat.completions.create({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: 'stream me' }], stream: true });
      for await (const _ of s);
    };
    await stream();
    await stream();
    expect(fake.requests).toHaveLength(5);
  });

  test('entries expire with their TTL', async () => {
    await ask(ctx.openai, { messages: [{ role: 'user', content: 'expiring' }] });
    await sleep(1_200);
    await ask(ctx.openai, { messages: [{ role: 'user', content: 'expiring' }] });
    expect(fake.requests).toHaveLength(2);
  });

  test('a provider error is never cached', async () => {
    fake.script({ status: 400 });
    await ask(ctx.openai, { messages: [{ role: 'user', content: 'bad' }] }).catch(() => undefined);
    await ask(ctx.openai, { messages: [{ role: 'user', content: 'bad' }] });
    expect(fake.requests).toHaveLength(2);
  });
});

test('a run repeating itself is stopped by its loop guard even when the cache answers it', async () => {
  const { sidecar, openai } = await start({}, { loopGuard: { maxRepeats: 3 } });
  try {
    const results: string[] = [];
    for (let i = 0; i < 5; i++) {
      results.push(
        await ask(openai, { messages: [{ role: 'user', content: 'check the order status' }] }, { headers: { 'x-agent-run-id': 'run-7' } }).then(
          () => 'ok',
          (err: { status?: number; code?: string }) => `${err.status} ${err.code}`,
        ),
      );
    }
    // The first call reaches the provider, the second comes from the cache, the third repeat is a loop.
    expect(results).toEqual(['ok', 'ok', '429 loop_detected', '429 loop_detected', '429 loop_detected']);
    expect(fake.requests).toHaveLength(1);
  } finally {
    await sidecar.stop();
  }
});

test('streams, when asked, are replayed whole and parse like the original', async () => {
  const { sidecar, openai } = await start({ streams: true });
  try {
    fake.script({ text: 'A cached stream answer.' });
    const read = async () => {
      const s = await openai.chat.completions.create({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: 'stream' }], stream: true });
      let text = '';
      for await (const chunk of s) text += chunk.choices[0]?.delta.content ?? '';
      return text;
    };
    expect(await read()).toBe('A cached stream answer.');
    expect(await read()).toBe('A cached stream answer.');
    expect(fake.requests).toHaveLength(1);
  } finally {
    await sidecar.stop();
  }
});

test('with Redis, replicas share the cache', async () => {
  const redis = await RedisServer.start();
  const a = await start({}, { store: { type: 'redis', url: redis.url } });
  const b = await start({}, { store: { type: 'redis', url: redis.url } });
  try {
    fake.script({ text: 'Shared.' });
    const first = await ask(a.openai);
    await sleep(50); // the write to Redis is not awaited by the request
    const second = await ask(b.openai);
    expect(second.choices[0].message.content).toBe(first.choices[0].message.content);
    expect(fake.requests).toHaveLength(1);
  } finally {
    await Promise.all([a.sidecar.stop(), b.sidecar.stop()]);
    await redis.stop();
  }
});
