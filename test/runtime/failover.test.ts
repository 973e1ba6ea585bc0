/**
 * Failover across providers of the same API shape, bounded retries, Retry-After, the circuit
 * breaker, and the rule that nothing is retried once the first byte reached the client. Two fake
 * providers stand in for a primary and a secondary; the official clients call the sidecar.
 */
import Anthropic from '@anthropic-ai/sdk';
import * as net from 'node:net';
import OpenAI from 'openai';
import type { SidecarConfigInput } from '../../lib/spec';
import { openaiProvider, PRIMARY_TEXT, SECONDARY_TEXT, useProviderPair } from '../support/provider-pair';
import { metricDelta, rawPost, Sidecar, sleep, testConfig } from '../support/sidecar';

const MODEL = 'gpt-4o-mini';
const CLAUDE = 'claude-sonnet-4-6';

type Providers = SidecarConfigInput['providers'];

const fakes = useProviderPair();

/** Starts a sidecar for a describe block; fast backoff, a circuit breaker that stays out of the way unless set. */
function useSidecar(providers: () => Providers, overrides: Partial<SidecarConfigInput> = {}): { sidecar: Sidecar; openai: OpenAI; anthropic: Anthropic } {
  const ctx = {} as { sidecar: Sidecar; openai: OpenAI; anthropic: Anthropic };
  beforeAll(async () => {
    ctx.sidecar = await Sidecar.start({
      config: testConfig({
        providers: providers(),
        retry: { maxAttempts: 4, baseDelayMs: 10, maxDelayMs: 40, maxRetryAfterMs: 2_000 },
        circuitBreaker: { failureThreshold: 100, cooldownMs: 30_000 },
        ...overrides,
      }),
    });
    ctx.openai = new OpenAI({ baseURL: ctx.sidecar.openaiBaseUrl, apiKey: 'agent-key', maxRetries: 0, timeout: 20_000 });
    ctx.anthropic = new Anthropic({ baseURL: ctx.sidecar.url, apiKey: 'agent-key', maxRetries: 0, timeout: 20_000 });
  });
  afterAll(async () => {
    await ctx.sidecar?.stop();
  });
  return ctx;
}

function ask(client: OpenAI): Promise<OpenAI.Chat.Completions.ChatCompletion> {
  return client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Say hello.' }] });
}

function textOf(completion: OpenAI.Chat.Completions.ChatCompletion): string | null {
  return completion.choices[0].message.content;
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const CHAT_BODY = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Say hello.' }] });

describe('failover to the next provider of the same shape', () => {
  const ctx = useSidecar(() => [
    openaiProvider('primary', fakes.primary.openaiUrl),
    openaiProvider('secondary', fakes.secondary.openaiUrl),
    { name: 'claude-a', type: 'anthropic', baseUrl: fakes.primary.url },
    { name: 'claude-b', type: 'anthropic', baseUrl: fakes.secondary.url },
  ]);

  test.each([
    [503, 'server_error'],
    [500, 'server_error'],
    [529, 'server_error'],
    [429, 'rate_limited'],
  ])('a %d from the primary is answered by the secondary (reason %s)', async (status, reason) => {
    const before = await ctx.sidecar.metricsText();
    fakes.primary.script({ status });

    const completion = await ask(ctx.openai);

    expect(textOf(completion)).toBe(SECONDARY_TEXT);
    expect(fakes.primary.requests).toHaveLength(1);
    expect(fakes.secondary.requests).toHaveLength(1);
    expect(fakes.secondary.requests[0].body.messages).toEqual([{ role: 'user', content: 'Say hello.' }]);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason })).toBe(1);
    expect(metricDelta(before, after, 'llm_upstream_failovers_total')).toBe(1);
    // The answer is metered against the provider that served it.
    expect(metricDelta(before, after, 'llm_requests_total', { provider: 'secondary', code: '200' })).toBe(1);
    expect(metricDelta(before, after, 'llm_requests_total', { provider: 'primary' })).toBe(0);
  });

  test('a streamed request fails over too when the primary answers 503 before streaming', async () => {
    const before = await ctx.sidecar.metricsText();
    fakes.primary.script({ status: 503 });

    const stream = await ctx.openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Say hello.' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';

    expect(text).toBe(SECONDARY_TEXT);
    expect(fakes.primary.requests).toHaveLength(1);
    expect(fakes.secondary.requests).toHaveLength(1);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'server_error' })).toBe(1);
  });

  test('a connection reset by the primary is answered by the secondary (reason connection_error)', async () => {
    // A fresh connection, so the reset cannot pass for a stale kept-alive one.
    fakes.primary.dropConnections();
    await sleep(50);
    const before = await ctx.sidecar.metricsText();
    fakes.primary.script({ reset: true });

    const completion = await ask(ctx.openai);

    expect(textOf(completion)).toBe(SECONDARY_TEXT);
    expect(fakes.primary.requests).toHaveLength(1);
    expect(fakes.secondary.requests).toHaveLength(1);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'connection_error' })).toBe(1);
  });

  test('a reset on a kept-alive connection, after the primary received the request, is not sent to the primary again', async () => {
    // Warm the pool: the next request reuses this connection.
    expect(textOf(await ask(ctx.openai))).toBe(PRIMARY_TEXT);
    fakes.primary.requests.length = 0;
    const before = await ctx.sidecar.metricsText();
    fakes.primary.script({ reset: true }); // the primary read the whole request, then dropped the connection

    const completion = await ask(ctx.openai);

    // The primary may have acted on (and billed) the request: sending it again would be a second,
    // uncounted attempt. It is a connection error like any other, and fails over.
    expect(fakes.primary.requests).toHaveLength(1);
    expect(textOf(completion)).toBe(SECONDARY_TEXT);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'connection_error' })).toBe(1);
  });

  test('a 400 from the primary goes back to the client as it is, without failover', async () => {
    const before = await ctx.sidecar.metricsText();
    const errorBody = { error: { message: "Invalid value for 'temperature'", type: 'invalid_request_error', param: 'temperature', code: 'invalid_value' } };
    fakes.primary.script({ status: 400, errorBody: JSON.stringify(errorBody) });

    const err = await ask(ctx.openai).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.status).toBe(400);
    expect(e.error).toEqual(errorBody.error);
    expect(fakes.primary.requests).toHaveLength(1);
    expect(fakes.secondary.requests).toHaveLength(0);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total')).toBe(0);
    expect(metricDelta(before, after, 'llm_upstream_retries_total')).toBe(0);
    expect(metricDelta(before, after, 'llm_requests_total', { provider: 'primary', code: '400' })).toBe(1);
  });

  test('with every provider failing, the client gets 502 upstream_unavailable after exactly maxAttempts upstream requests', async () => {
    const before = await ctx.sidecar.metricsText();
    fakes.primary.defaultStep = { status: 503 };
    fakes.secondary.defaultStep = { status: 500 };

    const err = await ask(ctx.openai).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(502);
    expect(e.code).toBe('upstream_unavailable');
    expect(e.type).toBe('upstream_unavailable');
    expect(e.headers?.get('x-cdk-agents-error')).toBe('upstream_unavailable');
    // maxAttempts is 4: both providers once, then retries of one that already failed.
    expect(fakes.primary.requests.length + fakes.secondary.requests.length).toBe(4);
    expect(fakes.primary.requests.length).toBeGreaterThanOrEqual(1);
    expect(fakes.secondary.requests.length).toBeGreaterThanOrEqual(1);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_retries_total')).toBe(2);
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'server_error' })).toBe(1);

    // The same from a plain HTTP client: status, header and OpenAI error shape.
    fakes.primary.requests.length = 0;
    fakes.secondary.requests.length = 0;
    const res = await rawPost(`${ctx.sidecar.url}/v1/chat/completions`, CHAT_BODY, { 'content-type': 'application/json' });
    expect(res.status).toBe(502);
    expect(res.headers['x-cdk-agents-error']).toBe('upstream_unavailable');
    const body = JSON.parse(res.body);
    expect(body.error).toMatchObject({ type: 'upstream_unavailable', code: 'upstream_unavailable', param: null });
    expect(typeof body.error.message).toBe('string');
    expect(fakes.primary.requests.length + fakes.secondary.requests.length).toBe(4);
  });

  test("the same failure in Anthropic's shape for Anthropic providers", async () => {
    fakes.primary.defaultStep = { status: 529 };
    fakes.secondary.defaultStep = { status: 503 };

    const err = await ctx.anthropic.messages
      .create({ model: CLAUDE, max_tokens: 64, messages: [{ role: 'user', content: 'Say hello.' }] })
      .catch((e: unknown) => e);

    expect(err).toBeInstanceOf(Anthropic.APIError);
    const e = err as InstanceType<typeof Anthropic.APIError>;
    expect(e.status).toBe(502);
    expect(e.type).toBe('upstream_unavailable');
    expect(e.error).toMatchObject({ type: 'error', error: { type: 'upstream_unavailable' } });
    expect(e.headers?.get('x-cdk-agents-error')).toBe('upstream_unavailable');
    expect(fakes.primary.requests.length + fakes.secondary.requests.length).toBe(4);
    for (const r of [...fakes.primary.requests, ...fakes.secondary.requests]) expect(r.path).toBe('/v1/messages');
  });

  test('never a retry after the first byte: a stream cut mid-way ends with an error event, billed as estimated', async () => {
    const before = await ctx.sidecar.metricsText();
    fakes.primary.script({ cutAfterEvents: 3 });

    const stream = await ctx.openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Say hello.' }], stream: true });
    const received: string[] = [];
    const err = await (async () => {
      for await (const chunk of stream) received.push(chunk.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);

    // The client saw the first events, then the sidecar's error event, raised by the SDK.
    expect(received.join('')).toMatch(/^Answered by/);
    expect(received.join('')).not.toBe(PRIMARY_TEXT);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_unavailable');
    expect(fakes.primary.requests).toHaveLength(1);
    expect(fakes.secondary.requests).toHaveLength(0);

    const after = await ctx.sidecar.metricsText();
    const labels = { agent: 'test-agent', provider: 'primary', model: MODEL };
    expect(metricDelta(before, after, 'llm_upstream_failovers_total')).toBe(0);
    expect(metricDelta(before, after, 'llm_upstream_retries_total')).toBe(0);
    expect(metricDelta(before, after, 'llm_usage_estimated_total', labels)).toBe(1);
    expect(metricDelta(before, after, 'llm_tokens_total', { ...labels, type: 'output' })).toBeGreaterThan(0);
    expect(metricDelta(before, after, 'llm_tokens_total', { ...labels, type: 'input' })).toBeGreaterThan(0);
    expect(metricDelta(before, after, 'llm_requests_total', { ...labels, code: '502' })).toBe(1);
  });

  test('a non-streamed answer cut half-way fails over, since nothing had reached the client', async () => {
    const before = await ctx.sidecar.metricsText();
    fakes.primary.script({ cutAfterEvents: 1 });

    const completion = await ask(ctx.openai);

    expect(textOf(completion)).toBe(SECONDARY_TEXT);
    expect(completion.usage).toMatchObject({ prompt_tokens: 12, completion_tokens: 9 });
    expect(fakes.primary.requests).toHaveLength(1);
    expect(fakes.secondary.requests).toHaveLength(1);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'connection_error' })).toBe(1);
    expect(metricDelta(before, after, 'llm_usage_estimated_total')).toBe(0);
    expect(metricDelta(before, after, 'llm_requests_total', { provider: 'secondary', code: '200' })).toBe(1);
  });
});

describe('a provider that refuses connections', () => {
  let deadUrl = '';
  beforeAll(async () => {
    deadUrl = `http://127.0.0.1:${await closedPort()}/v1`;
  });
  const ctx = useSidecar(() => [openaiProvider('primary', deadUrl), openaiProvider('secondary', fakes.secondary.openaiUrl)]);

  test('is failed over to the secondary (reason connect_error)', async () => {
    const before = await ctx.sidecar.metricsText();

    const completion = await ask(ctx.openai);

    expect(textOf(completion)).toBe(SECONDARY_TEXT);
    expect(fakes.secondary.requests).toHaveLength(1);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'connect_error' })).toBe(1);
  });
});

describe('Retry-After from the only provider', () => {
  const ctx = useSidecar(() => [openaiProvider('only', fakes.primary.openaiUrl)], {
    retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 40, maxRetryAfterMs: 2_000 },
  });

  test('is waited for before the retry, which succeeds', async () => {
    const before = await ctx.sidecar.metricsText();
    fakes.primary.script({ status: 429, headers: { 'retry-after': '1' } });

    const started = performance.now();
    const completion = await ask(ctx.openai);
    const elapsed = performance.now() - started;

    expect(textOf(completion)).toBe(PRIMARY_TEXT);
    expect(fakes.primary.requests).toHaveLength(2);
    // The backoff alone would be a few ms: the second attempt waited for the Retry-After.
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(6_000);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_retries_total', { provider: 'only', reason: 'rate_limited' })).toBe(1);
    expect(metricDelta(before, after, 'llm_requests_total', { provider: 'only', code: '200' })).toBe(1);
  });

  test('above retry.maxRetryAfterMs is not waited for: 502 upstream_unavailable at once', async () => {
    const before = await ctx.sidecar.metricsText();
    fakes.primary.script({ status: 429, headers: { 'retry-after': '30' } });

    const started = performance.now();
    const err = await ask(ctx.openai).catch((e: unknown) => e);
    const elapsed = performance.now() - started;

    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(502);
    expect(e.code).toBe('upstream_unavailable');
    expect(elapsed).toBeLessThan(5_000);
    expect(fakes.primary.requests).toHaveLength(1);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_retries_total')).toBe(0);
  });
});

describe('circuit breaker', () => {
  const COOLDOWN_MS = 1_500;
  const ctx = useSidecar(() => [openaiProvider('primary', fakes.primary.openaiUrl), openaiProvider('secondary', fakes.secondary.openaiUrl)], {
    retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 40 },
    circuitBreaker: { failureThreshold: 2, cooldownMs: COOLDOWN_MS },
  });

  async function openPrimaryCircuit(): Promise<void> {
    fakes.primary.defaultStep = { status: 503 };
    for (let i = 0; i < 2; i++) expect(textOf(await ask(ctx.openai))).toBe(SECONDARY_TEXT);
    expect(fakes.primary.requests).toHaveLength(2);
  }

  test('opens after failureThreshold failures, skips the primary, and closes after a successful trial', async () => {
    await openPrimaryCircuit();
    expect(await ctx.sidecar.metric('llm_upstream_circuit_open', { provider: 'primary' })).toBe(1);
    expect(await ctx.sidecar.metric('llm_upstream_circuit_open', { provider: 'secondary' })).toBe(0);

    // Open: straight to the fakes.secondary, the primary sees nothing.
    const before = await ctx.sidecar.metricsText();
    expect(textOf(await ask(ctx.openai))).toBe(SECONDARY_TEXT);
    expect(textOf(await ask(ctx.openai))).toBe(SECONDARY_TEXT);
    expect(fakes.primary.requests).toHaveLength(2);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'circuit_open' })).toBe(2);

    // After the cooldown, one trial request (of two at once) reaches the recovered fakes.primary.
    fakes.primary.defaultStep = { text: PRIMARY_TEXT, delayMs: 500 };
    await sleep(COOLDOWN_MS + 300);
    const both = await Promise.all([ask(ctx.openai), ask(ctx.openai)]);
    expect(both.map(textOf).sort()).toEqual([PRIMARY_TEXT, SECONDARY_TEXT]);
    expect(fakes.primary.requests).toHaveLength(3);

    // The trial succeeded: closed, and traffic is back on the fakes.primary.
    fakes.primary.defaultStep = { text: PRIMARY_TEXT };
    expect(await ctx.sidecar.metric('llm_upstream_circuit_open', { provider: 'primary' })).toBe(0);
    const secondaryBefore = fakes.secondary.requests.length;
    expect(textOf(await ask(ctx.openai))).toBe(PRIMARY_TEXT);
    expect(textOf(await ask(ctx.openai))).toBe(PRIMARY_TEXT);
    expect(fakes.primary.requests).toHaveLength(5);
    expect(fakes.secondary.requests).toHaveLength(secondaryBefore);
  });

  test('a failed trial opens the circuit again', async () => {
    await openPrimaryCircuit();
    await sleep(COOLDOWN_MS + 300);

    const before = await ctx.sidecar.metricsText();
    expect(textOf(await ask(ctx.openai))).toBe(SECONDARY_TEXT); // the trial fails over
    expect(fakes.primary.requests).toHaveLength(3);
    expect(textOf(await ask(ctx.openai))).toBe(SECONDARY_TEXT); // open again: skipped
    expect(fakes.primary.requests).toHaveLength(3);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'server_error' })).toBe(1);
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'circuit_open' })).toBe(1);
    expect(await ctx.sidecar.metric('llm_upstream_circuit_open', { provider: 'primary' })).toBe(1);
  });
});

describe('every provider in cooldown', () => {
  const ctx = useSidecar(() => [openaiProvider('primary', fakes.primary.openaiUrl), openaiProvider('secondary', fakes.secondary.openaiUrl)], {
    retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 40 },
    circuitBreaker: { failureThreshold: 1, cooldownMs: 5_000 },
  });

  test('the client gets 503 upstream_unavailable with Retry-After, and no provider is called', async () => {
    fakes.primary.defaultStep = { status: 503 };
    fakes.secondary.defaultStep = { status: 503 };
    const first = (await ask(ctx.openai).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(first.status).toBe(502);
    expect(fakes.primary.requests).toHaveLength(1);
    expect(fakes.secondary.requests).toHaveLength(1);
    expect(await ctx.sidecar.metric('llm_upstream_circuit_open')).toBe(2);

    const err = await ask(ctx.openai).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(503);
    expect(e.code).toBe('upstream_unavailable');
    const retryAfter = Number(e.headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(5);
    expect(fakes.primary.requests).toHaveLength(1);
    expect(fakes.secondary.requests).toHaveLength(1);

    const res = await rawPost(`${ctx.sidecar.url}/v1/chat/completions`, CHAT_BODY, { 'content-type': 'application/json' });
    expect(res.status).toBe(503);
    expect(res.headers['x-cdk-agents-error']).toBe('upstream_unavailable');
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(res.body).error).toMatchObject({ type: 'upstream_unavailable', code: 'upstream_unavailable' });
  });

  test('an API shape with no provider at all is not reported as cooling down', async () => {
    // This sidecar has OpenAI providers only: an Anthropic call has nowhere to go, and no wait helps.
    const res = await rawPost(
      `${ctx.sidecar.url}/v1/messages`,
      JSON.stringify({ model: CLAUDE, max_tokens: 16, messages: [{ role: 'user', content: 'Say hello.' }] }),
      { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    );
    expect(res.headers['x-cdk-agents-error']).toBe('upstream_unavailable');
    expect(JSON.parse(res.body)).toMatchObject({ type: 'error', error: { type: 'upstream_unavailable' } });
    expect(res.status).toBe(502);
    expect(res.headers['retry-after']).toBeUndefined();
  });
});
