/**
 * A client that goes away before its answer is complete: the sidecar stops the provider call at
 * once (no paying for tokens nobody reads), counts the request with code 499, bills what the
 * prompt cost as an estimate (never zero), releases the rest of the budget reservation, audits
 * it (status 499, usage_estimated), and keeps serving.
 */
import * as http from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { FakeLlm, type ResponseOutcome } from '../support/fake-llm';
import { billedTokens, expectIntactAuditChain, waitForRequestRecords } from '../support/audit';
import { expectBudgetHolds } from '../support/policy';
import { metricDelta, Sidecar, sleep, sumSamples, testConfig } from '../support/sidecar';

let fake: FakeLlm;
let sidecar: Sidecar;
let openai: OpenAI;
let anthropic: Anthropic;

const AGENT = 'test-agent';
const OPENAI_LABELS = { agent: AGENT, provider: 'openai', model: 'gpt-4o-mini' };
const ANTHROPIC_LABELS = { agent: AGENT, provider: 'anthropic', model: 'claude-haiku-4-5' };
/** Each test's end user has this many tokens a day: what its requests reserve and settle. */
const USER_TOKENS = 100_000;

beforeAll(async () => {
  fake = await FakeLlm.start();
  sidecar = await Sidecar.start({
    config: testConfig({
      providers: [
        { name: 'openai', type: 'openai', baseUrl: fake.openaiUrl },
        { name: 'anthropic', type: 'anthropic', baseUrl: fake.url },
      ],
      budgets: [{ scope: 'user', unit: 'tokens', period: 'day', limit: USER_TOKENS }],
    }),
  });
  openai = new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: 'sk-client', maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: sidecar.url, apiKey: 'sk-ant-client', maxRetries: 0 });
});

afterAll(async () => {
  await sidecar?.stop();
  await fake?.close();
});

let user = '';
let testNo = 0;
beforeEach(() => {
  fake.reset();
  user = `user-${++testNo}`;
});
const as = () => ({ 'x-agent-user': user });

afterEach(async () => {
  // Whatever a test did, nothing is left in flight, the process is alive and its audit chain intact.
  await eventually(async () => expect(await sidecar.metric('llm_requests_in_flight', { agent: AGENT })).toBe(0));
  expect(sidecar.child.exitCode).toBeNull();
  await expectIntactAuditChain(sidecar);
});

/** The user's one request record: a 499, billed as an estimate, never zero; and its reservation released. */
async function expectBilledAndReleased(): Promise<void> {
  const [record] = await waitForRequestRecords(sidecar, user, 1);
  expect(record).toMatchObject({ 'http.response.status_code': 499, usage_estimated: true, 'gen_ai.security.decision.type': 'allow' });
  expect(record['gen_ai.usage.input_tokens']).toBeGreaterThan(0);
  expect(record.cost_usd).toBeGreaterThan(0);
  await expectBudgetHolds(openai, user, USER_TOKENS, billedTokens(record));
}

/** Retries `check` until it passes or `ms` elapse (metrics settle a moment after the client sees the end). */
async function eventually(check: () => Promise<void>, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(25);
    }
  }
}

/** The outcome of the fake's response to request `i`, or a failure after `ms`. */
async function providerResponseClosed(i: number, ms: number): Promise<ResponseOutcome> {
  while (fake.responseClosed.length <= i) await sleep(5);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      fake.responseClosed[i],
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the provider's response ${i} was still open after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const longText = (n: number) => Array.from({ length: n }, (_, i) => `word${i}`).join(' ');
const prompt = 'Write a long story about a lighthouse keeper and the sea, in many short chapters.';

test('an OpenAI SDK stream aborted mid-way: the provider call is stopped, 499, billed as estimated', async () => {
  const before = await sidecar.metricsText();
  // 40 words, 100 ms apart: about 4 s if it ran to its end.
  fake.script({ text: longText(40), eventDelayMs: 100, usage: { input: 50, output: 40 } });
  const controller = new AbortController();
  const stream = await openai.chat.completions.create(
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }], stream: true },
    { signal: controller.signal, headers: as() },
  );
  let received = 0;
  // The SDK ends an aborted stream's iteration quietly (or with an abort error).
  const consumed = await (async () => {
    for await (const _ of stream) {
      if (++received === 3) controller.abort();
    }
  })().then(
    () => undefined,
    (e: unknown) => e,
  );
  if (consumed !== undefined) expect(consumed).toBeInstanceOf(OpenAI.APIUserAbortError);
  expect(received).toBeLessThan(10);
  const abortedAt = Date.now();

  // The sidecar closed its provider connection long before the stream would have ended: within 1 s.
  const outcome = await providerResponseClosed(0, 1_000);
  expect(outcome.finished).toBe(false);
  expect(Date.now() - abortedAt).toBeLessThan(1_000);

  await eventually(async () => {
    const after = await sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { ...OPENAI_LABELS, code: '499' })).toBe(1);
  });
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_requests_total', { ...OPENAI_LABELS, code: '200' })).toBe(0);
  expect(metricDelta(before, after, 'llm_usage_estimated_total', OPENAI_LABELS)).toBe(1);
  // The provider never reported usage (it was cut): the prompt is estimated, not taken from the script.
  const input = metricDelta(before, after, 'llm_tokens_total', { ...OPENAI_LABELS, type: 'input' });
  expect(input).toBeGreaterThan(0);
  expect(input).not.toBe(50);
  expect(metricDelta(before, after, 'llm_tokens_total', { ...OPENAI_LABELS, type: 'output' })).toBeLessThan(40);
  expect(metricDelta(before, after, 'llm_cost_usd_total', OPENAI_LABELS)).toBeGreaterThan(0);
  expect(sumSamples(after, 'llm_requests_in_flight', { agent: AGENT })).toBe(0);
  // The words streamed before the client left are billed too, and the reservation's rest released.
  const [record] = await waitForRequestRecords(sidecar, user, 1);
  expect(record['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
  await expectBilledAndReleased();
});

test('a raw Anthropic stream whose connection is destroyed after the first events: same', async () => {
  const before = await sidecar.metricsText();
  fake.script({ text: longText(40), eventDelayMs: 100 });
  const body = JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 500, messages: [{ role: 'user', content: prompt }], stream: true });
  const firstBytes = await new Promise<string>((resolve, reject) => {
    const req = http.request(
      `${sidecar.url}/v1/messages`,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'sk-ant-client', ...as() } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
          if (text.includes('content_block_delta')) {
            req.destroy();
            resolve(text);
          }
        });
      },
    );
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
    req.end(body);
  });
  expect(firstBytes).toContain('event: message_start');
  const destroyedAt = Date.now();

  const outcome = await providerResponseClosed(0, 2_000);
  expect(outcome.finished).toBe(false);
  expect(Date.now() - destroyedAt).toBeLessThan(2_000);

  await eventually(async () => {
    const after = await sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { ...ANTHROPIC_LABELS, code: '499' })).toBe(1);
  });
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_usage_estimated_total', ANTHROPIC_LABELS)).toBe(1);
  // message_start carried the provider's input count, so that is what is billed.
  expect(metricDelta(before, after, 'llm_tokens_total', { ...ANTHROPIC_LABELS, type: 'input' })).toBe(12);
  expect(metricDelta(before, after, 'llm_tokens_total', { ...ANTHROPIC_LABELS, type: 'output' })).toBeGreaterThan(0);
  expect(sumSamples(after, 'llm_requests_in_flight', { agent: AGENT })).toBe(0);
  const [record] = await waitForRequestRecords(sidecar, user, 1);
  expect(record).toMatchObject({ 'gen_ai.usage.input_tokens': 12 });
  expect(record['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
  await expectBilledAndReleased();
});

test('an Anthropic SDK call aborted while a whole answer is arriving slowly is counted 499 and stopped upstream', async () => {
  const before = await sidecar.metricsText();
  // The head comes at once, the body only after 1.5 s (the next test outlasts that timer).
  fake.script({ firstByteDelayMs: 1_500 });
  const controller = new AbortController();
  const pending = anthropic.messages
    .create({ model: 'claude-haiku-4-5', max_tokens: 50, messages: [{ role: 'user', content: prompt }] }, { signal: controller.signal, headers: as() })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  while (fake.requests.length < 1) await sleep(10);
  await sleep(200);
  controller.abort();
  expect(await pending).toBeInstanceOf(Anthropic.APIUserAbortError);
  expect((await providerResponseClosed(0, 1_200)).finished).toBe(false);
  await eventually(async () => {
    const after = await sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { ...ANTHROPIC_LABELS, code: '499' })).toBe(1);
  });
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_usage_estimated_total', ANTHROPIC_LABELS)).toBe(1);
  expect(metricDelta(before, after, 'llm_tokens_total', { ...ANTHROPIC_LABELS, type: 'input' })).toBeGreaterThan(0);
  await expectBilledAndReleased();
});

test('a client gone before the provider answered: 499, the late answer harms nothing, the next request succeeds', async () => {
  const before = await sidecar.metricsText();
  fake.script({ delayMs: 1_500 });
  const controller = new AbortController();
  const pending = openai.chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }] }, { signal: controller.signal, headers: as() })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  while (fake.requests.length < 1) await sleep(10);
  controller.abort();
  expect(await pending).toBeInstanceOf(OpenAI.APIUserAbortError);

  // The provider call is abandoned while the provider is still thinking.
  const outcome = await providerResponseClosed(0, 1_400);
  expect(outcome.finished).toBe(false);

  await eventually(async () => {
    const after = await sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { ...OPENAI_LABELS, code: '499' })).toBe(1);
  });
  let after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_usage_estimated_total', OPENAI_LABELS)).toBe(1);
  expect(metricDelta(before, after, 'llm_tokens_total', { ...OPENAI_LABELS, type: 'input' })).toBeGreaterThan(0);
  expect(sumSamples(after, 'llm_requests_in_flight', { agent: AGENT })).toBe(0);
  await expectBilledAndReleased();

  // Past the moment the provider would have answered, the sidecar is alive and serves normally.
  await sleep(1_700);
  expect(sidecar.child.exitCode).toBeNull();
  fake.script({ text: 'all good', usage: { input: 7, output: 2 } });
  const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'again' }] });
  expect(completion.choices[0].message.content).toBe('all good');
  after = await sidecar.metricsText();
  // The follow-up that proved the reservation released, and this one.
  expect(metricDelta(before, after, 'llm_requests_total', { ...OPENAI_LABELS, code: '200' })).toBe(2);
  expect(metricDelta(before, after, 'llm_requests_total', { ...OPENAI_LABELS, code: '499' })).toBe(1);
  expect(metricDelta(before, after, 'llm_usage_estimated_total', OPENAI_LABELS)).toBe(1);
  expect(sidecar.stderr.filter((l) => l.includes('"level":"error"'))).toEqual([]);
});

test('many clients leaving mid-stream at once leave nothing in flight and no provider connection open', async () => {
  const before = await sidecar.metricsText();
  const n = 8;
  fake.defaultStep = { text: longText(60), eventDelayMs: 50 };
  const controllers = Array.from({ length: n }, () => new AbortController());
  const runs = controllers.map(async (controller) => {
    const stream = await openai.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }], stream: true },
      { signal: controller.signal, headers: as() },
    );
    let seen = 0;
    try {
      for await (const _ of stream) if (++seen === 2) controller.abort();
    } catch (e) {
      if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
    }
    return seen;
  });
  const seen = await Promise.all(runs);
  expect(seen.every((count) => count < 10)).toBe(true);
  const outcomes = await Promise.all(Array.from({ length: n }, (_, i) => providerResponseClosed(i, 3_000)));
  expect(outcomes.map((o) => o.finished)).toEqual(Array(n).fill(false));
  await eventually(async () => {
    const after = await sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { ...OPENAI_LABELS, code: '499' })).toBe(n);
  });
  const after = await sidecar.metricsText();
  expect(metricDelta(before, after, 'llm_usage_estimated_total', OPENAI_LABELS)).toBe(n);
  expect(sumSamples(after, 'llm_requests_in_flight', { agent: AGENT })).toBe(0);
  // One record each, every one billed; all n reservations released, none twice.
  const records = await waitForRequestRecords(sidecar, user, n);
  expect(records).toHaveLength(n);
  for (const r of records) {
    expect(r).toMatchObject({ 'http.response.status_code': 499, usage_estimated: true });
    expect(r['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
  }
  fake.defaultStep = {};
  await expectBudgetHolds(openai, user, USER_TOKENS, records.reduce((sum, r) => sum + billedTokens(r), 0));
});
