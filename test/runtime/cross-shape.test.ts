/**
 * Failover across API shapes: when every provider of a request's own shape failed, a provider
 * of the other shape with a model for it serves the request, translated there and back, so the
 * agent's own SDK gets exactly what it expects (whole, streamed, tool calls, errors), metered
 * from the provider's own usage. Two fakes stand in for an OpenAI and an Anthropic provider.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { FakeLlm } from '../support/fake-llm';
import { metricDelta, rawPost, Sidecar, testConfig } from '../support/sidecar';

const GPT = 'gpt-4o-mini';
const CLAUDE = 'claude-sonnet-4-6';
const OPENAI_TEXT = 'From the OpenAI provider.';
const ANTHROPIC_TEXT = 'From the Anthropic provider.';

let oai: FakeLlm;
let ant: FakeLlm;
let sidecar: Sidecar;
let openai: OpenAI;
let anthropic: Anthropic;

beforeAll(async () => {
  [oai, ant] = await Promise.all([FakeLlm.start(), FakeLlm.start()]);
  sidecar = await Sidecar.start({
    config: testConfig({
      providers: [
        // Serves Anthropic requests for claude-sonnet-4-6 as gpt-5.4; no other Claude model.
        { name: 'oai', type: 'openai', baseUrl: oai.openaiUrl, apiKey: { env: 'OAI_KEY' }, modelMap: { [CLAUDE]: 'gpt-5.4' } },
        // Serves any OpenAI request as claude-haiku-4-5.
        { name: 'ant', type: 'anthropic', baseUrl: ant.url, apiKey: { env: 'ANT_KEY' }, fallbackModel: 'claude-haiku-4-5' },
      ],
      retry: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 10, maxRetryAfterMs: 1_000 },
      circuitBreaker: { failureThreshold: 100, cooldownMs: 30_000 },
    }),
    env: { OAI_KEY: 'sk-oai-held-by-sidecar', ANT_KEY: 'sk-ant-held-by-sidecar' },
  });
  openai = new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: 'agent-key', maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: sidecar.url, apiKey: 'agent-key', maxRetries: 0 });
});
afterAll(async () => {
  await sidecar?.stop();
  await Promise.all([oai?.close(), ant?.close()]);
});
beforeEach(() => {
  oai.reset();
  ant.reset();
  oai.defaultStep = { text: OPENAI_TEXT };
  ant.defaultStep = { text: ANTHROPIC_TEXT };
});

const chat = (extra: Partial<OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming> = {}) =>
  openai.chat.completions.create({ model: GPT, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hello.' }], ...extra });

describe('an OpenAI request, its providers down, served by Anthropic', () => {
  test('whole: the OpenAI SDK gets a chat completion; the provider got a Messages request with its own key', async () => {
    oai.defaultStep = { status: 503 };
    ant.defaultStep = { text: ANTHROPIC_TEXT, usage: { input: 20, output: 6, cacheWrite: 100 } };
    const before = await sidecar.metricsText();
    const completion = await chat({ max_tokens: 300 });
    expect(completion.object).toBe('chat.completion');
    expect(completion.model).toBe(GPT);
    expect(completion.choices[0].message).toMatchObject({ role: 'assistant', content: ANTHROPIC_TEXT });
    expect(completion.choices[0].finish_reason).toBe('stop');
    // Cache writes have no OpenAI field: they are in prompt_tokens.
    expect(completion.usage).toMatchObject({ prompt_tokens: 120, completion_tokens: 6, total_tokens: 126 });

    expect(ant.requests).toHaveLength(1);
    const sent = ant.requests[0];
    expect(sent.path).toBe('/v1/messages');
    expect(sent.body).toMatchObject({ model: 'claude-haiku-4-5', system: 'Be brief.', max_tokens: 300, messages: [{ role: 'user', content: 'Say hello.' }] });
    expect(sent.headers['x-api-key']).toBe('sk-ant-held-by-sidecar');
    expect(sent.headers['anthropic-version']).toBeDefined();
    expect(sent.headers.authorization).toBeUndefined();

    const after = await sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'oai', to: 'ant', reason: 'server_error' })).toBe(1);
    // Metered from the Anthropic answer itself, cache writes included, priced as the served model.
    const labels = { provider: 'ant', model: 'claude-haiku-4-5' };
    expect(metricDelta(before, after, 'llm_tokens_total', { ...labels, type: 'input' })).toBe(20);
    expect(metricDelta(before, after, 'llm_tokens_total', { ...labels, type: 'cache_write' })).toBe(100);
    expect(metricDelta(before, after, 'llm_tokens_total', { ...labels, type: 'output' })).toBe(6);
    expect(metricDelta(before, after, 'llm_cost_usd_total', labels)).toBeGreaterThan(0);
  });

  test('streamed, with usage asked for: text, one finish and the usage chunk, as from OpenAI', async () => {
    oai.defaultStep = { status: 500 };
    ant.defaultStep = { text: 'Streamed across APIs, piece by piece.', usage: { input: 11, output: 8 }, chunkSizes: [7, 3, 50] };
    const stream = await openai.chat.completions.create({ model: GPT, messages: [{ role: 'user', content: 'Stream.' }], stream: true, stream_options: { include_usage: true } });
    let text = '';
    const finishes: string[] = [];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.choices[0]?.finish_reason) finishes.push(chunk.choices[0].finish_reason);
      if (chunk.usage) usage = chunk.usage;
      expect(chunk.model).toBe(GPT);
    }
    expect(text).toBe('Streamed across APIs, piece by piece.');
    expect(finishes).toEqual(['stop']);
    expect(usage).toMatchObject({ prompt_tokens: 11, completion_tokens: 8 });
    expect(ant.requests[0].body.stream).toBe(true);
  });

  test('streamed without usage asked for: no usage chunk reaches the client, yet the tokens are metered', async () => {
    oai.defaultStep = { status: 502 };
    ant.defaultStep = { text: 'No usage chunk here.', usage: { input: 9, output: 5 } };
    const before = await sidecar.metricsText();
    const stream = await openai.chat.completions.create({ model: GPT, messages: [{ role: 'user', content: 'Stream.' }], stream: true });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.some((c) => c.usage)).toBe(false);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('No usage chunk here.');
    const after = await sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_tokens_total', { provider: 'ant', type: 'output' })).toBe(5);
  });

  test('a tool call comes back as OpenAI tool_calls with the same arguments', async () => {
    oai.defaultStep = { status: 503 };
    ant.defaultStep = { toolCalls: [{ id: 'toolu_01', name: 'lookup_order', arguments: { order: 'A-17', verbose: true } }] };
    const completion = await chat({
      tools: [{ type: 'function', function: { name: 'lookup_order', parameters: { type: 'object', properties: { order: { type: 'string' } } } } }],
    });
    expect(completion.choices[0].finish_reason).toBe('tool_calls');
    const call = completion.choices[0].message.tool_calls![0] as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe('lookup_order');
    expect(JSON.parse(call.function.arguments)).toEqual({ order: 'A-17', verbose: true });
    expect(ant.requests[0].body.tools).toEqual([{ name: 'lookup_order', input_schema: { type: 'object', properties: { order: { type: 'string' } } } }]);
  });

  test("the other provider's refusal of the request reaches the client in OpenAI's error shape", async () => {
    oai.defaultStep = { status: 503 };
    ant.defaultStep = { status: 400, errorBody: JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: 'prompt is too long: 210000 tokens > 200000 maximum' } }) };
    const err = await chat().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const bad = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(bad.message).toContain('prompt is too long');
    expect(bad.type).toBe('invalid_request_error');
  });

  test('a request the other API cannot serve is not sent there: the error says why', async () => {
    oai.defaultStep = { status: 503 };
    const res = await rawPost(`${sidecar.openaiBaseUrl}/chat/completions`, JSON.stringify({ model: GPT, n: 2, messages: [{ role: 'user', content: 'Two answers.' }] }), {
      'content-type': 'application/json',
    });
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body).error.message).toMatch(/ant: cannot serve this request in the anthropic API: .*\bn\b/);
    expect(ant.requests).toHaveLength(0);
  });

  test('while its own providers answer, nothing goes to the other shape', async () => {
    const completion = await chat();
    expect(completion.choices[0].message.content).toBe(OPENAI_TEXT);
    expect(ant.requests).toHaveLength(0);
  });
});

describe('an Anthropic request, its provider down, served by OpenAI', () => {
  test('whole: the Anthropic SDK gets a message; the provider got a chat completion request with its own key', async () => {
    ant.defaultStep = { status: 529 };
    oai.defaultStep = { text: OPENAI_TEXT, usage: { input: 30, output: 4, cacheRead: 10 } };
    const message = await anthropic.messages.create({ model: CLAUDE, max_tokens: 200, system: 'Be brief.', messages: [{ role: 'user', content: 'Say hello.' }] });
    expect(message.type).toBe('message');
    expect(message.model).toBe(CLAUDE);
    expect(message.content).toEqual([expect.objectContaining({ type: 'text', text: OPENAI_TEXT })]);
    expect(message.stop_reason).toBe('end_turn');
    expect(message.usage).toMatchObject({ input_tokens: 30, output_tokens: 4, cache_read_input_tokens: 10 });

    const sent = oai.requests[0];
    expect(sent.path).toBe('/v1/chat/completions');
    expect(sent.body).toMatchObject({ model: 'gpt-5.4', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hello.' }] });
    expect(sent.headers.authorization).toBe('Bearer sk-oai-held-by-sidecar');
    expect(Object.keys(sent.headers).filter((h) => h.startsWith('anthropic-'))).toEqual([]);
  });

  test('streamed: MessageStream assembles the text and the usage', async () => {
    ant.defaultStep = { status: 503 };
    oai.defaultStep = { text: 'An OpenAI stream, as Anthropic events.', usage: { input: 14, output: 9 }, chunkSizes: [5, 11] };
    const stream = anthropic.messages.stream({ model: CLAUDE, max_tokens: 200, messages: [{ role: 'user', content: 'Stream.' }] });
    let text = '';
    stream.on('text', (t) => (text += t));
    const final = await stream.finalMessage();
    expect(text).toBe('An OpenAI stream, as Anthropic events.');
    expect(final.stop_reason).toBe('end_turn');
    expect(final.usage).toMatchObject({ input_tokens: 14, output_tokens: 9 });
    expect(oai.requests[0].body.stream_options).toEqual({ include_usage: true });
  });

  test('a model the other provider has no mapping for stays with its own shape', async () => {
    ant.defaultStep = { status: 503 };
    const err = await anthropic.messages.create({ model: 'claude-opus-4-6', max_tokens: 50, messages: [{ role: 'user', content: 'Hi.' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect((err as InstanceType<typeof Anthropic.APIError>).status).toBe(502);
    expect(oai.requests).toHaveLength(0);
  });
});
