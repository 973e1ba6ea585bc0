/**
 * Faults between the sidecar and its Redis budget store, injected by a TCP fault proxy in front
 * of a real redis-server: Redis down (connections refused), slow (latency past and under
 * commandTimeoutMs), connections reset with reservations in flight, gone between a request's
 * reservation and its settlement, and restarted empty mid-request. For each: what the client
 * saw, what was billed (metrics, audit usage, and the budget keys: never negative, never under
 * what was billed), and what the audit log says, with the chain verified by `verify-audit`.
 */
import OpenAI from 'openai';
import { estimateInputTokens } from '../../lib/runtime/metering/estimate';
import { auditRecords, billedTokens, expectIntactAuditChain, waitForRequestRecords } from '../support/audit';
import { FakeLlm } from '../support/fake-llm';
import { FaultProxy } from '../support/fault-proxy';
import { redisTokensUsed } from '../support/policy';
import { RedisServer } from '../support/redis';
import { metricDelta, Sidecar, sleep, sumSamples, testConfig } from '../support/sidecar';

const MODEL = 'gpt-4o-mini';
const PROMPT = 'Draft a polite reply to the customer about the late parcel.';
const MAX_TOKENS = 100;
const RESERVED = estimateInputTokens({ messages: [{ role: 'user', content: PROMPT }] }) + MAX_TOKENS;
const COMMAND_TIMEOUT_MS = 250;

let fake: FakeLlm;
let redis: RedisServer;
let proxy: FaultProxy;
let sidecar: Sidecar;
let openai: OpenAI;

beforeAll(async () => {
  fake = await FakeLlm.start();
  redis = await RedisServer.start();
  proxy = await FaultProxy.start(redis.port);
  sidecar = await Sidecar.start({
    config: testConfig({
      providers: [{ name: 'openai', type: 'openai', baseUrl: fake.openaiUrl }],
      budgets: [{ scope: 'user', unit: 'tokens', period: 'day', limit: 100 * RESERVED }],
      store: { type: 'redis', url: `redis://127.0.0.1:${proxy.port}`, commandTimeoutMs: COMMAND_TIMEOUT_MS },
    }),
  });
  openai = new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: 'agent-key', maxRetries: 0, timeout: 20_000 });
});

afterAll(async () => {
  await sidecar?.stop();
  await proxy?.close();
  await redis?.stop();
  await fake?.close();
});

let user = '';
let testNo = 0;
beforeEach(async () => {
  user = `user-${++testNo}`;
  fake.reset();
  proxy.reset();
  await proxy.up();
  await storeUp();
});

afterEach(async () => {
  expect(sidecar.child.exitCode).toBeNull();
  // No budget key is ever negative, whatever the fault.
  for (const key of redis.cli('KEYS', 'cdka:b:*').split('\n').filter(Boolean)) expect(Number(redis.cli('GET', key))).toBeGreaterThanOrEqual(0);
  await expectIntactAuditChain(sidecar);
});

async function storeUp(timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (sumSamples(await sidecar.metricsText(), 'budget_store_up') !== 1) {
    if (Date.now() > deadline) throw new Error('the budget store did not come back');
    await sleep(25);
  }
}

function ask(who = user): Promise<OpenAI.Chat.Completions.ChatCompletion> {
  return openai.chat.completions.create({ model: MODEL, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: PROMPT }] }, { headers: { 'x-agent-user': who } });
}

async function streamSlowly(words: number): Promise<{ text: string; error: unknown; next: () => Promise<void> }> {
  fake.script({ text: Array.from({ length: words }, (_, i) => `w${i}`).join(' '), eventDelayMs: 100, usage: { input: 20, output: words } });
  const stream = await openai.chat.completions.create(
    { model: MODEL, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: PROMPT }], stream: true },
    { headers: { 'x-agent-user': user } },
  );
  const it = stream[Symbol.asyncIterator]();
  const out = { text: '', error: undefined as unknown, next: async () => undefined as void };
  // The head is in: the reservation was made. The caller reads the rest with next().
  await it.next();
  out.next = async () => {
    try {
      for (let r = await it.next(); !r.done; r = await it.next()) out.text += r.value.choices[0]?.delta.content ?? '';
    } catch (e) {
      out.error = e;
    }
  };
  return out;
}

const budgetUsed = (who = user) => redisTokensUsed(redis, who);

async function budgetSettlesTo(expected: number, who = user): Promise<void> {
  const deadline = Date.now() + 3_000;
  while (budgetUsed(who) !== expected && Date.now() < deadline) await sleep(20);
  expect(budgetUsed(who)).toBe(expected);
}

test('Redis down (connections refused): 503 budget_store_unavailable at once, nothing upstream or billed, the denial audited; enforcement resumes when it is back', async () => {
  const before = await sidecar.metricsText();
  await proxy.down();

  const started = performance.now();
  const error = await ask().catch((e: unknown) => e);
  const elapsed = performance.now() - started;

  // (a) the client: the documented error, with a hint to retry, within a bound (no hang on the store).
  expect(error).toBeInstanceOf(OpenAI.APIError);
  const e = error as InstanceType<typeof OpenAI.APIError>;
  expect([e.status, e.code]).toEqual([503, 'budget_store_unavailable']);
  expect(e.headers?.get('retry-after')).toBe('1');
  expect(elapsed).toBeLessThan(COMMAND_TIMEOUT_MS + 1_000);
  // (b) nothing went upstream and nothing was billed.
  expect(fake.requests).toHaveLength(0);
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_tokens_total')).toBe(0);
  expect(metricDelta(before, after, 'budget_store_errors_total', { mode: 'fail-closed' })).toBe(1);
  expect(sumSamples(after, 'budget_store_up')).toBe(0);
  // (c) the audit: the policy decision and the request, both deny.
  const [record] = await waitForRequestRecords(sidecar, user, 1);
  expect(record).toMatchObject({ 'http.response.status_code': 503, 'gen_ai.security.decision.type': 'deny', 'gen_ai.security.policy.id': 'budget_store_unavailable.store.store' });
  expect(record['gen_ai.usage.input_tokens']).toBeUndefined();
  expect(auditRecords(sidecar).filter((r) => r.kind === 'policy.decision' && r['user.id'] === user)).toEqual([
    expect.objectContaining({ 'gen_ai.security.decision.type': 'deny', 'gen_ai.security.decision.reason': expect.stringContaining('fail-closed') }),
  ]);

  // Back: enforced again without a restart, and the key holds exactly what was billed.
  await proxy.up();
  await storeUp();
  expect((await ask()).choices[0].message.content).toBeTruthy();
  const records = await waitForRequestRecords(sidecar, user, 2);
  expect(records[1]).toMatchObject({ 'http.response.status_code': 200, usage_estimated: false });
  await budgetSettlesTo(billedTokens(records[1]));
});

test('Redis slower than commandTimeoutMs counts as unavailable (503 within a bound); slow but under it, requests pass and are enforced', async () => {
  proxy.setFault({ kind: 'latency', ms: COMMAND_TIMEOUT_MS * 3 });
  await proxy.dropConnections();

  const started = performance.now();
  const error = await ask().catch((e: unknown) => e);
  expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_store_unavailable');
  expect(performance.now() - started).toBeLessThan(COMMAND_TIMEOUT_MS + 1_000);
  expect(fake.requests).toHaveLength(0);

  // 40 ms each way: slow, but within the command timeout.
  proxy.setFault({ kind: 'latency', ms: 40 });
  await proxy.dropConnections();
  await storeUp();
  expect((await ask()).choices[0].message.content).toBeTruthy();
  expect(fake.requests).toHaveLength(1);
  const records = await waitForRequestRecords(sidecar, user, 2);
  expect(records.map((r) => r['http.response.status_code'])).toEqual([503, 200]);
  await budgetSettlesTo(billedTokens(records[1]));
});

test('Redis gone between a stream\'s reservation and its settlement: the stream completes and is billed; the reservation stays counted (over, never under)', async () => {
  const before = await sidecar.metricsText();
  const stream = await streamSlowly(8);
  expect(budgetUsed()).toBe(RESERVED); // reserved before the first byte

  await proxy.down();
  await stream.next();

  // (a) the client got its whole answer: the store going away does not cut a stream.
  expect(stream.error).toBeUndefined();
  expect(stream.text).toBe(Array.from({ length: 8 }, (_, i) => `w${i}`).join(' '));
  // (b) billed in metrics and audit from the provider's usage...
  const [record] = await waitForRequestRecords(sidecar, user, 1);
  expect(record).toMatchObject({ 'http.response.status_code': 200, usage_estimated: false, 'gen_ai.usage.input_tokens': 20, 'gen_ai.usage.output_tokens': 8 });
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_tokens_total', { type: 'output' })).toBe(8);
  // ...but the settlement could not reach the store: counted as a store error.
  await proxy.up();
  await storeUp();
  expect(metricDelta(before, await sidecar.metricsText(), 'budget_store_errors_total')).toBeGreaterThanOrEqual(1);
  // (c) the budget still holds the whole reservation: more than was used, never less.
  expect(budgetUsed()).toBe(RESERVED);
  expect(budgetUsed()).toBeGreaterThan(billedTokens(record));
});

test('Redis connections reset with reservations in flight: each request is served or refused whole, and the budget is never under what was billed', async () => {
  const others = Array.from({ length: 16 }, (_, i) => `${user}-${i}`);
  // The store answers slowly (40 ms a round trip), so reservations are on the wire when the connection is reset.
  proxy.setFault({ kind: 'latency', ms: 20 });
  await proxy.dropConnections();
  await storeUp();

  const outcomes: Array<Promise<number | string>> = [];
  const sending = (async () => {
    for (const who of others) {
      outcomes.push(ask(who).then(() => 200, (e: InstanceType<typeof OpenAI.APIError>) => `${e.status} ${e.code}`));
      await sleep(15);
    }
  })();
  // Once one request was admitted, the store's connection is reset under the others.
  while (fake.requests.length < 1) await sleep(5);
  await proxy.dropConnections();
  await sending;
  const results = await Promise.all(outcomes);

  expect(results.every((r) => r === 200 || r === '503 budget_store_unavailable')).toBe(true);
  expect(results).toContain(200);
  expect(results).toContain('503 budget_store_unavailable');
  // Only admitted requests went upstream.
  expect(fake.requests).toHaveLength(results.filter((r) => r === 200).length);
  await storeUp();
  for (const [i, who] of others.entries()) {
    const [record] = await waitForRequestRecords(sidecar, who, 1);
    expect(record['http.response.status_code']).toBe(results[i] === 200 ? 200 : 503);
    if (results[i] === 200) {
      // Settled to the usage, or (its settlement lost with the connection) still the whole
      // reservation: over, never under.
      expect([billedTokens(record), RESERVED]).toContain(budgetUsed(who));
    } else {
      // A reservation whose reply was lost may have been applied: then it stays counted (over).
      expect([0, RESERVED]).toContain(budgetUsed(who));
    }
  }
});

test('Redis restarted empty mid-stream: the stream completes and is billed; its settlement leaves no negative key; new requests are enforced from zero', async () => {
  const stream = await streamSlowly(8);
  expect(budgetUsed()).toBe(RESERVED);

  await redis.restart();
  await proxy.dropConnections();
  expect(Number(redis.cli('DBSIZE'))).toBe(0);
  await stream.next();

  // (a) the client got its whole answer.
  expect(stream.error).toBeUndefined();
  expect(stream.text).toBe(Array.from({ length: 8 }, (_, i) => `w${i}`).join(' '));
  // (b) billed from the provider's usage, in the audit.
  const [record] = await waitForRequestRecords(sidecar, user, 1);
  expect(record).toMatchObject({ 'http.response.status_code': 200, usage_estimated: false, 'gen_ai.usage.output_tokens': 8 });
  // The settlement (minus the unused part of a reservation the new Redis never saw) made no key.
  await storeUp();
  await sleep(100);
  expect(budgetUsed()).toBe(0);
  expect(redis.cli('KEYS', `cdka:b:user:test-agent:${user}:*`)).toBe('');

  // The restarted store enforces again, from zero: the state before the restart is gone.
  expect((await ask()).choices[0].message.content).toBeTruthy();
  const records = await waitForRequestRecords(sidecar, user, 2);
  await budgetSettlesTo(billedTokens(records[1]));
});
