/**
 * Transport faults between the sidecar and its provider, injected by a TCP fault proxy in front
 * of the primary (connection reset, slow first byte, a stream stalled, cut or reset mid-way, a
 * whole answer cut short), and HTTP faults from the fake itself (429 and 5xx bursts). For each:
 * what the client saw (the official SDK's error or the stream and its error event), what was
 * billed (metrics, `usage_estimated`, and the Redis budget key, which must equal the sum of what
 * the audit records billed: every reservation settled or released exactly once), and what the
 * audit log says (status, attempts, failures), with the captured chain verified by
 * `sidecar.js verify-audit`.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { estimateInputTokens } from '../../lib/runtime/metering/estimate';
import { billedTokens, expectIntactAuditChain, waitForRequestRecords, type AuditRecord } from '../support/audit';
import { FaultProxy } from '../support/fault-proxy';
import { redisTokensUsed } from '../support/policy';
import { PRIMARY_TEXT, SECONDARY_TEXT, useProviderPair } from '../support/provider-pair';
import { RedisServer } from '../support/redis';
import { metricDelta, Sidecar, sleep, testConfig } from '../support/sidecar';

const MODEL = 'gpt-4o-mini';
const CLAUDE = 'claude-haiku-4-5';
const PROMPT = 'Summarise the incident report in three short bullet points.';
const MAX_TOKENS = 100;
const LONG_TEXT = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
const FIRST_BYTE_MS = 400;
const IDLE_MS = 500;
/** What a request reserves: its prompt estimate plus max_tokens. */
const RESERVED = estimateInputTokens({ messages: [{ role: 'user', content: PROMPT }] }) + MAX_TOKENS;
/** Room for one reservation and some settled usage, never two reservations: a leaked one shows. */
const USER_LIMIT = Math.floor(RESERVED * 1.5);

const fakes = useProviderPair();
let redis: RedisServer;
let proxy: FaultProxy;
let sidecar: Sidecar;
let openai: OpenAI;
let anthropic: Anthropic;

beforeAll(async () => {
  redis = await RedisServer.start();
  proxy = await FaultProxy.start(fakes.primary.port);
  sidecar = await Sidecar.start({
    config: testConfig({
      providers: [
        { name: 'primary', type: 'openai', baseUrl: `${proxy.url}/v1` },
        { name: 'secondary', type: 'openai', baseUrl: fakes.secondary.openaiUrl },
        { name: 'claude', type: 'anthropic', baseUrl: proxy.url },
      ],
      budgets: [{ scope: 'user', unit: 'tokens', period: 'day', limit: USER_LIMIT }],
      store: { type: 'redis', url: redis.url, commandTimeoutMs: 1_000 },
      timeouts: { firstByteMs: FIRST_BYTE_MS, idleMs: IDLE_MS },
      retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 40 },
      circuitBreaker: { failureThreshold: 100, cooldownMs: 30_000 },
    }),
  });
  openai = new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: 'agent-key', maxRetries: 0, timeout: 20_000 });
  anthropic = new Anthropic({ baseURL: sidecar.url, apiKey: 'agent-key', maxRetries: 0, timeout: 20_000 });
});

afterAll(async () => {
  await sidecar?.stop();
  await proxy?.close();
  await redis?.stop();
});

let user = '';
let testNo = 0;
beforeEach(async () => {
  user = `user-${++testNo}`;
  proxy.reset();
  // Every fault starts on a fresh connection: none kept alive from the test before.
  await proxy.dropConnections();
  await sleep(30);
});

afterEach(async () => {
  // Whatever the fault, the process is alive and its audit chain intact.
  expect(sidecar.child.exitCode).toBeNull();
  await expectIntactAuditChain(sidecar);
});

const as = () => ({ headers: { 'x-agent-user': user } });

function ask(stream: false): Promise<OpenAI.Chat.Completions.ChatCompletion> {
  return openai.chat.completions.create({ model: MODEL, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: PROMPT }], stream }, as());
}

/** Reads an OpenAI stream to its end or its error, timing the silence before the error. */
async function readStream(): Promise<{ text: string; error: unknown; silenceMs: number }> {
  const stream = await openai.chat.completions.create({ model: MODEL, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: PROMPT }], stream: true }, as());
  let text = '';
  let last = performance.now();
  let error: unknown;
  try {
    for await (const chunk of stream) {
      last = performance.now();
      text += chunk.choices[0]?.delta.content ?? '';
    }
  } catch (e) {
    error = e;
  }
  return { text, error, silenceMs: performance.now() - last };
}

const budgetUsed = () => redisTokensUsed(redis, user);

/**
 * The user's `count` request records, once the budget key settled to what they billed: every
 * reservation was settled with its request's usage, or released, exactly once.
 */
async function settled(count: number): Promise<AuditRecord[]> {
  const records = await waitForRequestRecords(sidecar, user, count);
  const billed = records.reduce((sum, r) => sum + billedTokens(r), 0);
  const deadline = Date.now() + 3_000;
  while (budgetUsed() !== billed && Date.now() < deadline) await sleep(20);
  expect(budgetUsed()).toBe(billed);
  return records;
}

/** A normal request of the same user fits: the faulted request's reservation is not held any more. */
async function expectReservationReleased(): Promise<void> {
  fakes.secondary.script({ text: 'after', usage: { input: 5, output: 1 } });
  proxy.nextConnections({ kind: 'reset' }); // the primary refuses: the follow-up goes to the secondary
  await proxy.dropConnections();
  expect((await ask(false)).choices[0].message.content).toBe('after');
}

const labels = (provider: string, model = MODEL) => ({ agent: 'test-agent', provider, model });

test('a connection reset before any answer is failed over: the client gets the secondary\'s answer, billed once, and the audit names the failure', async () => {
  const before = await sidecar.metricsText();
  proxy.nextConnections({ kind: 'reset' });

  const completion = await ask(false);

  // (a) the client: a normal answer, from the secondary.
  expect(completion.choices[0].message.content).toBe(SECONDARY_TEXT);
  expect(proxy.resetOnConnect).toBeGreaterThanOrEqual(1);
  expect(fakes.primary.requests).toHaveLength(0);
  // (b) billed: the secondary's reported usage, nothing for the primary.
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_tokens_total', { ...labels('secondary'), type: 'input' })).toBe(12);
  expect(metricDelta(before, after, 'llm_tokens_total', { ...labels('secondary'), type: 'output' })).toBe(9);
  expect(metricDelta(before, after, 'llm_tokens_total', labels('primary'))).toBe(0);
  // A reset right after the accept races the connect: the kernel may report it to the connect
  // itself (connect_error) or to the first read (connection_error). Either way, one failover.
  expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary' })).toBe(1);
  const byReason = (reason: string) => metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason });
  expect(byReason('connect_error') + byReason('connection_error')).toBe(1);
  // (c) the audit record.
  const [record] = await settled(1);
  expect(record).toMatchObject({ 'http.response.status_code': 200, 'gen_ai.provider.name': 'secondary', attempts: 2, usage_estimated: false, 'gen_ai.security.decision.type': 'allow' });
  expect(record.failures).toEqual([expect.stringMatching(/^primary: /)]);
  expect(billedTokens(record)).toBe(21);
});

test('a stream reset by the network mid-way ends with an error event; what was streamed is billed as an estimate and the reservation settled to it', async () => {
  const before = await sidecar.metricsText();
  fakes.primary.script({ text: LONG_TEXT, eventDelayMs: 20, usage: { input: 40, output: 40 } });
  proxy.nextConnections({ kind: 'reset', afterBytes: 1_200 });

  const { text, error } = await readStream();

  // (a) some words, then the SDK raises the sidecar's error event (not a bare connection error).
  expect(text).toMatch(/^word0 /);
  expect(text.length).toBeLessThan(LONG_TEXT.length);
  expect(error).toBeInstanceOf(OpenAI.APIError);
  expect(error).not.toBeInstanceOf(OpenAI.APIConnectionError);
  expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_unavailable');
  expect(fakes.secondary.requests).toHaveLength(0); // a started stream is never retried
  // (b) billed: an estimate, not zero and not the usage the provider never got to report.
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_requests_total', { ...labels('primary'), code: '502' })).toBe(1);
  expect(metricDelta(before, after, 'llm_usage_estimated_total', labels('primary'))).toBe(1);
  const [record] = await settled(1);
  expect(record).toMatchObject({ 'http.response.status_code': 502, 'gen_ai.provider.name': 'primary', attempts: 1, usage_estimated: true });
  expect(record['gen_ai.usage.input_tokens']).toBeGreaterThan(0);
  expect(record['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
  expect(record['gen_ai.usage.output_tokens']).toBeLessThan(40);
  expect(record.cost_usd).toBeGreaterThan(0);
  await expectReservationReleased();
  await settled(2);
});

test('an Anthropic stream reset mid-way: the SDK raises an error event in Anthropic\'s shape; billed from message_start plus an output estimate', async () => {
  fakes.primary.script({ text: LONG_TEXT, eventDelayMs: 20, usage: { input: 33, output: 40 } });
  proxy.nextConnections({ kind: 'reset', afterBytes: 1_500 });

  const stream = await anthropic.messages.create({ model: CLAUDE, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: PROMPT }], stream: true }, as());
  let text = '';
  let error: unknown;
  try {
    for await (const event of stream) if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
  } catch (e) {
    error = e;
  }

  expect(text).toMatch(/^word0/);
  expect(error).toBeInstanceOf(Anthropic.APIError);
  expect((error as InstanceType<typeof Anthropic.APIError>).error).toEqual({ type: 'error', error: { type: 'upstream_unavailable', message: expect.stringContaining('mid-stream') } });
  const [record] = await settled(1);
  // message_start carried the provider's input count: that is billed as it is, the output estimated.
  expect(record).toMatchObject({ 'http.response.status_code': 502, 'gen_ai.provider.name': 'claude', usage_estimated: true, 'gen_ai.usage.input_tokens': 33 });
  expect(record['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
});

test('a first byte slower than firstByteMs is failed over (reason timeout); one just under it is served as usual', async () => {
  const before = await sidecar.metricsText();
  proxy.nextConnections({ kind: 'slow-first-byte', ms: FIRST_BYTE_MS * 4 }, { kind: 'slow-first-byte', ms: FIRST_BYTE_MS / 4 });

  const started = performance.now();
  const slow = await ask(false);
  const elapsed = performance.now() - started;

  expect(slow.choices[0].message.content).toBe(SECONDARY_TEXT);
  expect(elapsed).toBeLessThan(FIRST_BYTE_MS * 4); // failed over before the primary's answer got through
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'timeout' })).toBe(1);
  expect(metricDelta(before, after, 'llm_tokens_total', labels('primary'))).toBe(0);
  const [timedOut] = await settled(1);
  expect(timedOut).toMatchObject({ 'http.response.status_code': 200, 'gen_ai.provider.name': 'secondary', attempts: 2, usage_estimated: false });
  expect(timedOut.failures).toEqual([`primary: no response within ${FIRST_BYTE_MS} ms`]);

  // The same delay under the bound: the primary answers, billed exactly.
  await proxy.dropConnections();
  fakes.primary.script({ text: 'slow but fine', usage: { input: 7, output: 3 } });
  expect((await ask(false)).choices[0].message.content).toBe('slow but fine');
  const [, onTime] = await settled(2);
  expect(onTime).toMatchObject({ 'gen_ai.provider.name': 'primary', attempts: 1, usage_estimated: false, 'gen_ai.usage.input_tokens': 7, 'gen_ai.usage.output_tokens': 3 });
  expect(onTime.failures).toBeUndefined();
});

test('a stream stalled by the network is cut after idleMs with upstream_timeout, billed as an estimate', async () => {
  fakes.primary.script({ text: LONG_TEXT, eventDelayMs: 10 });
  proxy.nextConnections({ kind: 'stall', afterBytes: 1_000 });

  const { text, error, silenceMs } = await readStream();

  expect(text).toMatch(/^word0/);
  expect(text.length).toBeLessThan(LONG_TEXT.length);
  expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_timeout');
  expect(silenceMs).toBeGreaterThanOrEqual(IDLE_MS * 0.9);
  expect(silenceMs).toBeLessThan(IDLE_MS * 3 + 1_000);
  const [record] = await settled(1);
  expect(record).toMatchObject({ 'http.response.status_code': 504, 'gen_ai.provider.name': 'primary', usage_estimated: true });
  expect(record['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
  await expectReservationReleased();
  await settled(2);
});

test('a stream cut short by a clean close (FIN) mid-way is an error for the client, not a short answer, and is billed as an estimate', async () => {
  fakes.primary.script({ text: LONG_TEXT, eventDelayMs: 10 });
  proxy.nextConnections({ kind: 'truncate', afterBytes: 1_000 });

  const { text, error } = await readStream();

  expect(text).toMatch(/^word0/);
  expect(text.length).toBeLessThan(LONG_TEXT.length);
  expect(error).toBeInstanceOf(OpenAI.APIError);
  expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_unavailable');
  const [record] = await settled(1);
  expect(record).toMatchObject({ 'http.response.status_code': 502, 'gen_ai.provider.name': 'primary', usage_estimated: true, attempts: 1 });
  expect(record['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
});

test('a whole answer cut short before it was complete is failed over: the client gets a complete answer, never a truncated one', async () => {
  fakes.primary.script({ text: LONG_TEXT });
  // The response head and part of the JSON body, then a clean close.
  proxy.nextConnections({ kind: 'truncate', afterBytes: 400 });

  const completion = await ask(false);

  expect(completion.choices[0].message.content).toBe(SECONDARY_TEXT);
  expect(fakes.primary.requests).toHaveLength(1);
  const [record] = await settled(1);
  expect(record).toMatchObject({ 'http.response.status_code': 200, 'gen_ai.provider.name': 'secondary', attempts: 2, usage_estimated: false });
  expect(record.failures).toEqual([expect.stringMatching(/^primary: /)]);
});

test('a burst of 429 and 5xx shorter than maxAttempts is ridden out: one answer, billed once, each failure in the audit', async () => {
  const before = await sidecar.metricsText();
  fakes.primary.script({ status: 429 }, { text: PRIMARY_TEXT, usage: { input: 10, output: 4 } });
  fakes.secondary.script({ status: 503 });

  const completion = await ask(false);

  expect(completion.choices[0].message.content).toBe(PRIMARY_TEXT);
  expect(fakes.primary.requests).toHaveLength(2);
  expect(fakes.secondary.requests).toHaveLength(1);
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_requests_total', { ...labels('primary'), code: '200' })).toBe(1);
  expect(metricDelta(before, after, 'llm_requests_total', { agent: 'test-agent', code: '200' })).toBe(1);
  const [record] = await settled(1);
  expect(record).toMatchObject({ 'http.response.status_code': 200, 'gen_ai.provider.name': 'primary', attempts: 3, usage_estimated: false });
  expect(billedTokens(record)).toBe(14);
  expect(record.failures).toEqual([expect.stringMatching(/^primary: 429 /), expect.stringMatching(/^secondary: 503 /)]);
});

test('a 5xx burst longer than maxAttempts: 502 upstream_unavailable, nothing billed, the reservation released', async () => {
  const before = await sidecar.metricsText();
  fakes.primary.defaultStep = { status: 500 };
  fakes.secondary.defaultStep = { status: 503 };

  const error = await ask(false).catch((e: unknown) => e);

  expect(error).toBeInstanceOf(OpenAI.APIError);
  expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
  expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_unavailable');
  expect(fakes.primary.requests.length + fakes.secondary.requests.length).toBe(3);
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_tokens_total')).toBe(0);
  expect(metricDelta(before, after, 'llm_cost_usd_total')).toBe(0);
  const [record] = await settled(1);
  expect(record).toMatchObject({ 'http.response.status_code': 502, attempts: 3 });
  expect(record.usage_estimated).toBeUndefined(); // no usage at all: nothing was answered
  expect(record.failures).toHaveLength(3);
  expect(budgetUsed()).toBe(0);

  fakes.primary.defaultStep = { text: PRIMARY_TEXT };
  fakes.secondary.defaultStep = { text: SECONDARY_TEXT };
  await expectReservationReleased();
  await settled(2);
});
