/**
 * The official OpenAI client, pointed at the sidecar, against the fake provider: answers arrive
 * as the provider sent them, and /metrics shows the provider's usage and its cost.
 */
import OpenAI from 'openai';
import { costUsd, DEFAULT_PRICES } from '../../lib/spec';
import { FakeLlm, openAiCompletion } from '../support/fake-llm';
import { metricDelta, rawPost, Sidecar, testConfig } from '../support/sidecar';

let fake: FakeLlm;
let sidecar: Sidecar;
let client: OpenAI;
const labels = { agent: 'test-agent', provider: 'openai', model: 'gpt-4o-mini' };

beforeAll(async () => {
  fake = await FakeLlm.start();
  sidecar = await Sidecar.start({
    config: testConfig({ providers: [{ name: 'openai', type: 'openai', baseUrl: fake.openaiUrl, apiKey: { env: 'TEST_OPENAI_KEY' } }] }),
    env: { TEST_OPENAI_KEY: 'sk-real-provider-key' },
  });
  client = new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: 'agent-holds-no-key', maxRetries: 0 });
});

afterAll(async () => {
  await sidecar?.stop();
  await fake?.close();
});

beforeEach(() => fake.reset());

test('a completion arrives exactly as the provider sent it, and its tokens and cost are metered', async () => {
  const before = await sidecar.metricsText();
  fake.script({ text: 'Paris is the capital of France.', usage: { input: 20, output: 7, cacheRead: 100 } });
  const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Capital of France?' }] });

  const expected = openAiCompletion({ model: 'gpt-4o-mini' }, { text: 'Paris is the capital of France.', usage: { input: 20, output: 7, cacheRead: 100 } }, 1);
  expect(completion).toEqual(expected);
  // The provider saw our key, not the agent's.
  expect(fake.requests[0].headers.authorization).toBe('Bearer sk-real-provider-key');

  const text = await sidecar.metricsText();
  const delta = (type: string) => metricDelta(before, text, 'llm_tokens_total', { ...labels, type });
  expect(delta('input')).toBe(20);
  expect(delta('cache_read')).toBe(100);
  expect(delta('output')).toBe(7);
  const cost = metricDelta(before, text, 'llm_cost_usd_total', labels);
  expect(cost).toBeCloseTo(costUsd(DEFAULT_PRICES['gpt-4o-mini'], { input: 20, output: 7, cacheRead: 100, cacheWrite: 0 }), 12);
  expect(metricDelta(before, text, 'llm_requests_total', { ...labels, code: '200' })).toBe(1);
});

test('a stream the client did not ask usage for is metered, and the usage chunk is kept from the client', async () => {
  const before = await sidecar.metricsText();
  fake.script({ text: 'one two three four', usage: { input: 11, output: 4 } });
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'count' }], stream: true });
  const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);

  // The sidecar asked the provider for usage on the client's behalf...
  expect(fake.requests[0].body.stream_options).toEqual({ include_usage: true });
  // ...and the client saw no chunk it did not ask for.
  expect(chunks.every((c) => c.choices.length === 1)).toBe(true);
  expect(chunks.map((c) => c.choices[0].delta.content ?? '').join('')).toBe('one two three four');
  expect(chunks.at(-1)!.choices[0].finish_reason).toBe('stop');

  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_tokens_total', { ...labels, type: 'input' })).toBe(11);
  expect(metricDelta(before, after, 'llm_tokens_total', { ...labels, type: 'output' })).toBe(4);
  expect(metricDelta(before, after, 'llm_usage_estimated_total', labels)).toBe(0);
  expect(metricDelta(before, after, 'llm_time_to_first_token_seconds_count', labels)).toBe(1);
});

test('a stream that asked for usage gets its usage chunk', async () => {
  fake.script({ usage: { input: 5, output: 9, cacheRead: 3 } });
  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  const last = chunks.at(-1)!;
  expect(last.choices).toEqual([]);
  expect(last.usage).toMatchObject({ prompt_tokens: 8, completion_tokens: 9, prompt_tokens_details: { cached_tokens: 3 } });
});

test('tool calls reach the client unchanged, whole and streamed', async () => {
  const call = { id: 'call_weather', name: 'get_weather', arguments: { city: 'Zürich', unit: 'celsius' } };
  fake.script({ toolCalls: [call] });
  const whole = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Weather in Zürich?' }],
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
  });
  const toolCall = whole.choices[0].message.tool_calls![0];
  expect(toolCall.type === 'function' && toolCall.function).toEqual({ name: 'get_weather', arguments: JSON.stringify(call.arguments) });
  expect(fake.requests[0].body.tools[0].function.name).toBe('get_weather');

  fake.script({ toolCalls: [call] });
  const stream = client.chat.completions.stream({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather in Zürich?' }] });
  const final = await stream.finalChatCompletion();
  const streamed = final.choices[0].message.tool_calls![0];
  expect(streamed.type === 'function' && JSON.parse(streamed.function.arguments)).toEqual(call.arguments);
  expect(streamed.id).toBe('call_weather');
});

test('a provider error reaches the client with its status and body', async () => {
  fake.script({ status: 400, errorBody: JSON.stringify({ error: { message: 'Invalid value for temperature', type: 'invalid_request_error', param: 'temperature', code: 'invalid_value' } }) });
  const err = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], temperature: 9 }).catch((e) => e);
  expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  expect(err.status).toBe(400);
  expect(err.code).toBe('invalid_value');
  expect(err.param).toBe('temperature');
  expect(fake.requests).toHaveLength(1); // a 400 is the client's problem: no failover, no retry
});

test('the agent identity headers and hop-by-hop headers do not reach the provider', async () => {
  await client.chat.completions.create(
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
    { headers: { 'x-agent-user': 'user-42', 'x-agent-run-id': 'run-7', 'x-custom': 'kept' } },
  );
  let headers = fake.requests[0].headers;
  expect(headers['x-agent-user']).toBeUndefined();
  expect(headers['x-agent-run-id']).toBeUndefined();
  expect(headers['x-custom']).toBe('kept');
  expect(headers.host).toBe(`127.0.0.1:${fake.port}`);

  // Headers the SDK's fetch refuses to send, from a plain HTTP client.
  const res = await rawPost(sidecar.url + '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }), {
    'content-type': 'application/json',
    connection: 'keep-alive, x-hop',
    'x-hop': 'named in Connection',
    'keep-alive': 'timeout=5',
    'proxy-authorization': 'Basic abc',
    te: 'trailers',
  });
  expect(res.status).toBe(200);
  headers = fake.requests[1].headers;
  for (const name of ['x-hop', 'keep-alive', 'proxy-authorization', 'te']) expect(headers[name]).toBeUndefined();
});

test('an unpriced model is metered and counted as unpriced', async () => {
  const before = await sidecar.metricsText();
  fake.script({ usage: { input: 3, output: 2 } });
  await client.chat.completions.create({ model: 'my-finetune-v1', messages: [{ role: 'user', content: 'x' }] });
  const after = await sidecar.metricsText();
  const l = { ...labels, model: 'my-finetune-v1' };
  expect(metricDelta(before, after, 'llm_tokens_total', { ...l, type: 'output' })).toBe(2);
  expect(metricDelta(before, after, 'llm_unpriced_requests_total', l)).toBe(1);
  expect(metricDelta(before, after, 'llm_cost_usd_total', l)).toBe(0);
});
