/**
 * The official Anthropic client, pointed at the sidecar, against the fake provider: messages
 * arrive as the provider sent them (whole and streamed, however the stream was chunked), and
 * /metrics shows the provider's usage, cache tokens included, and its cost.
 */
import Anthropic from '@anthropic-ai/sdk';
import { costUsd, DEFAULT_PRICES } from '../../lib/spec';
import { anthropicEvents, anthropicMessage, FakeLlm, type Step } from '../support/fake-llm';
import { metricDelta, rawPost, Sidecar, testConfig } from '../support/sidecar';

const MODEL = 'claude-sonnet-4-6';
const PROVIDER_KEY = 'sk-ant-real-provider-key';

let fake: FakeLlm;
let sidecar: Sidecar;
let client: Anthropic;
const labels = { agent: 'test-agent', provider: 'anthropic', model: MODEL };

beforeAll(async () => {
  fake = await FakeLlm.start();
  sidecar = await Sidecar.start({
    config: testConfig({ providers: [{ name: 'anthropic', type: 'anthropic', baseUrl: fake.url, apiKey: { env: 'TEST_ANTHROPIC_KEY' } }] }),
    env: { TEST_ANTHROPIC_KEY: PROVIDER_KEY },
  });
  client = new Anthropic({ baseURL: sidecar.url, apiKey: 'agent-holds-no-key', maxRetries: 0 });
});

afterAll(async () => {
  await sidecar?.stop();
  await fake?.close();
});

beforeEach(() => fake.reset());

/** The sequence number the fake gave an answer, read from its message id (msg_fake_N). */
function seqOf(text: string): number {
  const m = /msg_fake_(\d+)/.exec(text);
  if (!m) throw new Error(`no fake message id in ${text.slice(0, 200)}`);
  return Number(m[1]);
}

/** The data of each event the fake sends for a step, as the SDK yields them (pings skipped). */
function expectedEvents(step: Step, seq: number): unknown[] {
  return anthropicEvents({ model: MODEL }, step, seq)
    .map((e) => JSON.parse(/^data: (.*)$/m.exec(e)![1]))
    .filter((e) => e.type !== 'ping');
}

function tokenDeltas(before: string, after: string, l: Record<string, string> = labels) {
  const delta = (type: string) => metricDelta(before, after, 'llm_tokens_total', { ...l, type });
  return { input: delta('input'), output: delta('output'), cacheRead: delta('cache_read'), cacheWrite: delta('cache_write') };
}

const ask = { model: MODEL, max_tokens: 256, messages: [{ role: 'user' as const, content: 'Capital of France?' }] };

test('a message arrives exactly as the provider sent it, with the provider key injected', async () => {
  const step: Step = { text: 'Paris is the capital of France.', usage: { input: 20, output: 7 } };
  fake.script(step);
  const message = await client.messages.create(ask);

  expect(message).toEqual(anthropicMessage({ model: MODEL }, step, seqOf(message.id)));
  expect(fake.requests).toHaveLength(1);
  expect(fake.requests[0].method).toBe('POST');
  expect(fake.requests[0].path).toBe('/v1/messages');
  expect(fake.requests[0].body).toEqual(ask);
  // The provider saw our key, not the agent's (which this SDK sends as a bearer token).
  expect(fake.requests[0].headers['x-api-key']).toBe(PROVIDER_KEY);
  expect(fake.requests[0].headers.authorization).toBeUndefined();
});

test('input, output, cache-read and cache-write tokens and their cost are metered', async () => {
  const usage = { input: 20, output: 7, cacheRead: 1000, cacheWrite: 300 };
  const before = await sidecar.metricsText();
  fake.script({ usage });
  const message = await client.messages.create(ask);
  expect(message.usage).toMatchObject({ input_tokens: 20, output_tokens: 7, cache_read_input_tokens: 1000, cache_creation_input_tokens: 300 });

  const after = await sidecar.metricsText();
  expect(tokenDeltas(before, after)).toEqual(usage);
  const cost = metricDelta(before, after, 'llm_cost_usd_total', labels);
  expect(cost).toBeGreaterThan(0);
  expect(cost).toBeCloseTo(costUsd(DEFAULT_PRICES[MODEL], usage), 12);
  expect(metricDelta(before, after, 'llm_requests_total', { ...labels, code: '200' })).toBe(1);
  expect(metricDelta(before, after, 'llm_usage_estimated_total', labels)).toBe(0);
  expect(metricDelta(before, after, 'llm_unpriced_requests_total', labels)).toBe(0);
});

test('a streamed message reaches the client event by event and is metered from message_start and message_delta', async () => {
  const usage = { input: 31, output: 5, cacheRead: 640, cacheWrite: 128 };
  const step: Step = { text: 'one two three four five', usage };
  const before = await sidecar.metricsText();
  fake.script(step);
  // The raw event stream (messages.stream() would fold later events into message_start's object).
  const stream = await client.messages.create({ ...ask, stream: true });
  const events: Anthropic.RawMessageStreamEvent[] = [];
  for await (const event of stream) events.push(event);

  expect(events.length).toBeGreaterThan(5);
  expect(events).toEqual(expectedEvents(step, seqOf((events[0] as Anthropic.RawMessageStartEvent).message.id)));
  const text = events.map((e) => (e.type === 'content_block_delta' && e.delta.type === 'text_delta' ? e.delta.text : '')).join('');
  expect(text).toBe('one two three four five');
  expect(fake.requests[0].body.stream).toBe(true);

  const after = await sidecar.metricsText();
  // message_start carries input and cache tokens (and output 1); message_delta the final output.
  expect(tokenDeltas(before, after)).toEqual(usage);
  expect(metricDelta(before, after, 'llm_cost_usd_total', labels)).toBeCloseTo(costUsd(DEFAULT_PRICES[MODEL], usage), 12);
  expect(metricDelta(before, after, 'llm_requests_total', { ...labels, code: '200' })).toBe(1);
  expect(metricDelta(before, after, 'llm_usage_estimated_total', labels)).toBe(0);
  expect(metricDelta(before, after, 'llm_time_to_first_token_seconds_count', labels)).toBe(1);
});

test.each([[[1]], [[3, 7, 2]], [[17]]])('a stream written in chunks of %j bytes arrives byte for byte and is metered exactly once', async (chunkSizes) => {
  const step: Step = { text: 'Streams split anywhere must still be metered once — exactly.', usage: { input: 44, output: 13, cacheRead: 200, cacheWrite: 50 }, chunkSizes };
  const before = await sidecar.metricsText();
  fake.script(step);
  const res = await client.messages.create({ ...ask, stream: true }).asResponse();
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const text = await res.text();

  // Every byte the provider sent, in order, nothing added or lost at the chunk boundaries.
  expect(text).toBe(anthropicEvents({ model: MODEL }, step, seqOf(text)).join(''));

  const after = await sidecar.metricsText();
  expect(tokenDeltas(before, after)).toEqual({ input: 44, output: 13, cacheRead: 200, cacheWrite: 50 });
  expect(metricDelta(before, after, 'llm_cost_usd_total', labels)).toBeCloseTo(costUsd(DEFAULT_PRICES[MODEL], { input: 44, output: 13, cacheRead: 200, cacheWrite: 50 }), 12);
  expect(metricDelta(before, after, 'llm_requests_total', labels)).toBe(1);
  expect(metricDelta(before, after, 'llm_usage_estimated_total', labels)).toBe(0);
  expect(metricDelta(before, after, 'llm_time_to_first_token_seconds_count', labels)).toBe(1);
});

test('tool_use blocks reach the client unchanged, whole and streamed', async () => {
  const call = { id: 'toolu_weather', name: 'get_weather', arguments: { city: 'Zürich', unit: 'celsius', days: [1, 2, 3], detail: { wind: true } } };
  const tools: Anthropic.Tool[] = [
    { name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
  ];
  const request = { ...ask, messages: [{ role: 'user' as const, content: 'Weather in Zürich?' }], tools };

  fake.script({ toolCalls: [call] });
  const whole = await client.messages.create(request);
  expect(whole.stop_reason).toBe('tool_use');
  expect(whole.content).toEqual([{ type: 'tool_use', id: 'toolu_weather', name: 'get_weather', input: call.arguments }]);
  expect(fake.requests[0].body.tools).toEqual(tools);

  // Streamed as input_json_delta fragments, the bytes split mid-character by odd chunking.
  const before = await sidecar.metricsText();
  fake.script({ toolCalls: [call], chunkSizes: [5], usage: { input: 70, output: 33 } });
  const stream = client.messages.stream(request);
  const deltas: string[] = [];
  stream.on('inputJson', (partial) => deltas.push(partial));
  const final = await stream.finalMessage();
  expect(deltas.length).toBeGreaterThan(1);
  expect(deltas.join('')).toBe(JSON.stringify(call.arguments));
  expect(final.stop_reason).toBe('tool_use');
  expect(final.content).toHaveLength(1);
  const block = final.content[0];
  expect(block.type).toBe('tool_use');
  expect(block.type === 'tool_use' && { id: block.id, name: block.name, input: block.input }).toEqual({ id: 'toolu_weather', name: 'get_weather', input: call.arguments });

  const after = await sidecar.metricsText();
  expect(tokenDeltas(before, after)).toEqual({ input: 70, output: 33, cacheRead: 0, cacheWrite: 0 });
  expect(metricDelta(before, after, 'llm_usage_estimated_total', labels)).toBe(0);
});

test('a provider 400 reaches the client as a BadRequestError with the provider message, not retried', async () => {
  const errorBody = { type: 'error', error: { type: 'invalid_request_error', message: 'messages.0.content: text content blocks must be non-empty' } };
  fake.script({ status: 400, errorBody: JSON.stringify(errorBody), headers: { 'request-id': 'req_upstream_400' } });
  const before = await sidecar.metricsText();
  const err = await client.messages.create({ ...ask, messages: [{ role: 'user', content: '' }] }).catch((e) => e);

  expect(err).toBeInstanceOf(Anthropic.BadRequestError);
  expect(err.status).toBe(400);
  expect(err.error).toEqual(errorBody);
  expect(err.type).toBe('invalid_request_error');
  expect(err.apiMessage).toBe(errorBody.error.message);
  expect(err.message).toContain(errorBody.error.message);
  expect(err.requestID).toBe('req_upstream_400');
  // A 400 is the client's problem: no failover, no retry.
  expect(fake.requests).toHaveLength(1);

  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_requests_total', { ...labels, code: '400' })).toBe(1);
  expect(metricDelta(before, after, 'llm_upstream_retries_total')).toBe(0);
  expect(metricDelta(before, after, 'llm_tokens_total', labels)).toBe(0);
});

test("the client's anthropic-version and anthropic-beta headers are forwarded unchanged", async () => {
  await client.messages.create(ask);
  // The SDK's own version, not replaced by one of ours.
  const sdkVersion = fake.requests[0].headers['anthropic-version'];
  expect(typeof sdkVersion).toBe('string');

  const pinned = new Anthropic({ baseURL: sidecar.url, apiKey: 'agent-holds-no-key', maxRetries: 0, defaultHeaders: { 'anthropic-version': '2023-01-01' } });
  await pinned.messages.create(ask, { headers: { 'anthropic-beta': 'prompt-caching-2024-07-31' } });
  expect(fake.requests[1].headers['anthropic-version']).toBe('2023-01-01');
  expect(fake.requests[1].headers['anthropic-beta']).toBe('prompt-caching-2024-07-31');

  // The raw header lines: exactly one anthropic-version, the client's.
  const raw = await rawPost(sidecar.url + '/v1/messages', JSON.stringify(ask), { 'content-type': 'application/json', 'anthropic-version': '2024-02-29' });
  expect(raw.status).toBe(200);
  expect(fake.requests[2].headers['anthropic-version']).toBe('2024-02-29');
});

test('the sidecar adds anthropic-version when a raw client omits it', async () => {
  const body = JSON.stringify(ask);
  const res = await rawPost(sidecar.url + '/v1/messages', body, { 'content-type': 'application/json', 'x-api-key': 'agent-holds-no-key' });
  expect(res.status).toBe(200);
  expect(JSON.parse(res.body)).toEqual(anthropicMessage({ model: MODEL }, {}, seqOf(res.body)));
  expect(fake.requests).toHaveLength(1);
  expect(fake.requests[0].headers['anthropic-version']).toBe('2023-06-01');
  expect(fake.requests[0].headers['x-api-key']).toBe(PROVIDER_KEY);
  expect(fake.requests[0].raw).toBe(body);
});

test("a request without max_tokens gets a 400 in Anthropic's error shape and never reaches the provider", async () => {
  const before = await sidecar.metricsText();
  const { max_tokens: _omitted, ...noMax } = ask;
  const err = await client.messages.create(noMax as Anthropic.MessageCreateParamsNonStreaming).catch((e) => e);
  expect(err).toBeInstanceOf(Anthropic.BadRequestError);
  expect(err.status).toBe(400);
  expect(err.error).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: expect.stringContaining('max_tokens') } });
  expect(err.type).toBe('invalid_request_error');

  // The same from a raw client, streamed or not.
  const res = await rawPost(sidecar.url + '/v1/messages', JSON.stringify({ ...noMax, stream: true }), { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' });
  expect(res.status).toBe(400);
  expect(res.headers['content-type']).toBe('application/json');
  expect(JSON.parse(res.body)).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: expect.stringContaining('max_tokens') } });

  expect(fake.requests).toHaveLength(0);
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_requests_total', { agent: 'test-agent', provider: 'none', model: 'none', code: '400' })).toBe(2);
  expect(metricDelta(before, after, 'llm_requests_total', { provider: 'anthropic' })).toBe(0);
});
