/**
 * Graceful shutdown: after SIGTERM the sidecar stops taking requests and reports itself not
 * ready, lets in-flight streams finish (metered) for up to shutdown.drainMs, cuts what is left
 * with an error event the SDKs raise, and exits 0. Drained and cut requests alike are billed and
 * audited (the chain verifies through its stop record), and with a shared Redis budget their
 * reservations are settled to what they used before the process exits.
 */
import * as http from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { SidecarConfigInput } from '../../lib/spec';
import { auditRecords, billedTokens, expectIntactAuditChain, type AuditRecord } from '../support/audit';
import { redisTokensUsed } from '../support/policy';
import { FakeLlm } from '../support/fake-llm';
import { RedisServer } from '../support/redis';
import { Sidecar, sleep, sumSamples, testConfig } from '../support/sidecar';

let fake: FakeLlm;
const running: Sidecar[] = [];

beforeAll(async () => {
  fake = await FakeLlm.start();
});

afterEach(() => {
  for (const s of running.splice(0)) s.kill();
  fake.reset();
});

afterAll(async () => {
  await fake?.close();
});

async function startSidecar(drainMs: number, overrides: Partial<SidecarConfigInput> = {}): Promise<Sidecar> {
  const sidecar = await Sidecar.start({
    config: testConfig({
      providers: [
        { name: 'openai', type: 'openai', baseUrl: fake.openaiUrl },
        { name: 'anthropic', type: 'anthropic', baseUrl: fake.url },
      ],
      shutdown: { drainMs },
      ...overrides,
    }),
  });
  running.push(sidecar);
  return sidecar;
}

function clients(sidecar: Sidecar): { openai: OpenAI; anthropic: Anthropic } {
  return {
    openai: new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: 'sk-client', maxRetries: 0 }),
    anthropic: new Anthropic({ baseURL: sidecar.url, apiKey: 'sk-ant-client', maxRetries: 0 }),
  };
}

/** A request on a fresh connection (no pooled keep-alive socket): its status, or the connection error code. */
function freshRequest(url: string, method = 'GET', body?: string): Promise<{ status?: number; body?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = http.request(url, { method, agent: false, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.end(body);
  });
}

/** Fails the test if `promise` takes longer than `ms`. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const words = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}${i}`).join(' ');

/** After the exit: the whole stdout is one intact chain from start to stop; its request records. */
async function auditAfterExit(sidecar: Sidecar): Promise<AuditRecord[]> {
  await expectIntactAuditChain(sidecar);
  const records = auditRecords(sidecar);
  expect(records[0].kind).toBe('start');
  expect(records.at(-1)!.kind).toBe('stop');
  return records.filter((r) => r.kind === 'llm.request');
}

test('SIGTERM during slow streams: not ready, no new connections, the streams finish and are metered, exit 0', async () => {
  const sidecar = await startSidecar(20_000);
  const { openai, anthropic } = clients(sidecar);
  const textA = words(8, 'a');
  const textB = words(20, 'b');
  // A (OpenAI) ends about 1.2 s after it starts; B (Anthropic) about 3.5 s after.
  fake.script({ text: textA, usage: { input: 21, output: 8 }, eventDelayMs: 100 }, { text: textB, usage: { input: 33, output: 20 }, eventDelayMs: 130 });

  const streamA = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'A' }], stream: true });
  const itA = streamA[Symbol.asyncIterator]();
  const chunksA: OpenAI.Chat.Completions.ChatCompletionChunk[] = [(await itA.next()).value];
  const streamB = await anthropic.messages.create({ model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'B' }], stream: true });
  const itB = streamB[Symbol.asyncIterator]();
  const eventsB: Anthropic.MessageStreamEvent[] = [(await itB.next()).value];

  const terminatedAt = Date.now();
  sidecar.child.kill('SIGTERM');
  const draining = await sidecar.waitForLog('draining');
  expect(draining.inFlight).toBe(2);

  // Not ready any more, on the admin listener (where the kubelet probes)...
  const readyz = await fetch(`${sidecar.adminUrl}/readyz`);
  expect(readyz.status).toBe(503);
  expect(await readyz.text()).toBe('draining\n');
  // ...and a new connection to the proxy is refused or turned away.
  const late = await freshRequest(`${sidecar.url}/v1/chat/completions`, 'POST', JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'late' }] }));
  if (late.error === undefined) expect(late.status).toBe(503);
  else expect(['ECONNREFUSED', 'ECONNRESET']).toContain(late.error);
  expect(fake.requests).toHaveLength(2); // the late request never reached the provider

  // A runs to its end: every chunk, as the provider sent it.
  for (let r = await itA.next(); !r.done; r = await itA.next()) chunksA.push(r.value);
  expect(chunksA.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(textA);
  expect(chunksA).toHaveLength(8 + 2); // role chunk, one per word, finish chunk
  expect(chunksA.at(-1)!.choices[0].finish_reason).toBe('stop');

  // B is still running, so the admin listener still answers: A's reported usage is metered.
  const metrics = await fetch(`${sidecar.adminUrl}/metrics`).then((r) => r.text());
  const a = { agent: 'test-agent', provider: 'openai', model: 'gpt-4o-mini' };
  expect(sumSamples(metrics, 'llm_requests_total', { ...a, code: '200' })).toBe(1);
  expect(sumSamples(metrics, 'llm_tokens_total', { ...a, type: 'input' })).toBe(21);
  expect(sumSamples(metrics, 'llm_tokens_total', { ...a, type: 'output' })).toBe(8);
  expect(sumSamples(metrics, 'llm_usage_estimated_total', a)).toBe(0);
  expect(sumSamples(metrics, 'llm_requests_in_flight', { agent: 'test-agent' })).toBe(1);

  // B runs to its end too, final usage included.
  for (let r = await itB.next(); !r.done; r = await itB.next()) eventsB.push(r.value);
  const textOfB = eventsB.map((e) => (e.type === 'content_block_delta' && e.delta.type === 'text_delta' ? e.delta.text : '')).join('');
  expect(textOfB).toBe(textB);
  const delta = eventsB.find((e) => e.type === 'message_delta');
  expect(delta && delta.type === 'message_delta' && delta.usage.output_tokens).toBe(20);
  expect(eventsB.at(-1)!.type).toBe('message_stop');
  expect(eventsB.some((e) => (e.type as string) === 'error')).toBe(false);
  // The drain ended as soon as B did, not at the drain deadline.
  const exit = await within(5_000, 'exit after the last stream', sidecar.exit);
  expect(exit).toEqual({ code: 0, signal: null });
  expect(Date.now() - terminatedAt).toBeLessThan(15_000);
  expect(fake.responseClosed).toHaveLength(2);
  await expect(Promise.all(fake.responseClosed)).resolves.toEqual([
    expect.objectContaining({ finished: true }),
    expect.objectContaining({ finished: true }),
  ]);
  expect(sidecar.stderr.some((l) => l.includes('drain deadline reached'))).toBe(false);
  // Both drained streams are audited with their reported usage; the late request, if it got an
  // answer at all, with its refusal.
  const requests = await auditAfterExit(sidecar);
  const served = requests.filter((r) => r['http.response.status_code'] === 200);
  expect(served.map((r) => [r['gen_ai.provider.name'], r['gen_ai.usage.input_tokens'], r['gen_ai.usage.output_tokens'], r.usage_estimated])).toEqual([
    ['openai', 21, 8, false],
    ['anthropic', 33, 20, false],
  ]);
  expect(requests.filter((r) => r['http.response.status_code'] !== 200).every((r) => r['http.response.status_code'] === 503)).toBe(true);
});

test('a request on a connection kept alive from before SIGTERM is not served during the drain', async () => {
  const sidecar = await startSidecar(20_000);
  fake.script({ text: words(10, 'k'), eventDelayMs: 100 }, { text: words(30, 'long'), eventDelayMs: 100 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  type Answer = { status?: number; body?: string; error?: string; reused?: boolean };
  const post = (content: string, stream: boolean, onHead?: () => void) =>
    new Promise<Answer>((resolve) => {
      const req = http.request(`${sidecar.url}/v1/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        onHead?.();
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode, body: text, reused: req.reusedSocket }));
      });
      req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message, reused: req.reusedSocket }));
      req.end(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], stream }));
    });
  try {
    // The first stream is under way (its head sent) before SIGTERM, on the agent's one pooled socket.
    let headSeen!: () => void;
    const head = new Promise<void>((resolve) => (headSeen = resolve));
    const first = post('first', true, () => headSeen());
    await head;
    // A second stream keeps the drain going while the first connection is tested.
    const { openai } = clients(sidecar);
    const keeper = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'keeper' }], stream: true });
    const keeperDone = (async () => {
      for await (const _ of keeper);
    })().catch((e: unknown) => e);
    sidecar.child.kill('SIGTERM');
    await sidecar.waitForLog('draining');
    expect((await first).status).toBe(200);

    // The same pooled connection is reused if the sidecar left it open: such a request must not
    // start a new upstream call while the process is going away (503, or the connection closed).
    const second = await post('second', false);
    expect(second.error ?? second.status).not.toBe(200);
    if (second.error === undefined) expect(second.status).toBe(503);
    expect(fake.requests.map((r) => r.body.messages[0].content)).toEqual(['first', 'keeper']);
    expect(await keeperDone).toBeUndefined();
    expect((await within(5_000, 'exit', sidecar.exit)).code).toBe(0);
  } finally {
    agent.destroy();
  }
});

test('streams that outlast shutdown.drainMs are cut at the deadline with an error event the SDKs raise; exit 0', async () => {
  const drainMs = 1_500;
  const sidecar = await startSidecar(drainMs);
  const { openai, anthropic } = clients(sidecar);
  // Two streams that stop sending after a few events, and one request the provider never answers.
  fake.script({ stallAfterEvents: 3 }, { stallAfterEvents: 3 }, { hang: true });

  const streamA = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'A' }], stream: true });
  const itA = streamA[Symbol.asyncIterator]();
  await itA.next();
  const streamB = await anthropic.messages.create({ model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'B' }], stream: true });
  const itB = streamB[Symbol.asyncIterator]();
  await itB.next();
  const unanswered = fetch(`${sidecar.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'C' }] }),
  });
  while (fake.requests.length < 3) await sleep(10);

  const terminatedAt = Date.now();
  sidecar.child.kill('SIGTERM');

  const drainA = (async () => {
    for (let r = await itA.next(); !r.done; r = await itA.next());
  })().then(
    () => undefined,
    (e: unknown) => ({ err: e, at: Date.now() - terminatedAt }),
  );
  const drainB = (async () => {
    for (let r = await itB.next(); !r.done; r = await itB.next());
  })().then(
    () => undefined,
    (e: unknown) => ({ err: e, at: Date.now() - terminatedAt }),
  );

  const cutA = await within(drainMs + 8_000, 'the OpenAI stream cut', drainA);
  expect(cutA).toBeDefined();
  expect(cutA!.err).toBeInstanceOf(OpenAI.APIError);
  const errA = cutA!.err as InstanceType<typeof OpenAI.APIError>;
  expect(errA).not.toBeInstanceOf(OpenAI.APIConnectionError);
  expect(errA.code).toBe('upstream_unavailable');
  expect(errA.message).toContain('shutting down');
  // Cut at the deadline, not before it.
  expect(cutA!.at).toBeGreaterThanOrEqual(drainMs - 50);

  const cutB = await within(5_000, 'the Anthropic stream cut', drainB);
  expect(cutB).toBeDefined();
  expect(cutB!.err).toBeInstanceOf(Anthropic.APIError);
  expect((cutB!.err as InstanceType<typeof Anthropic.APIError>).error).toEqual({
    type: 'error',
    error: { type: 'upstream_unavailable', message: expect.stringContaining('shutting down') },
  });
  expect(cutB!.at).toBeGreaterThanOrEqual(drainMs - 50);

  // The request still waiting for its provider is answered 503, with a hint to retry.
  const res = await within(5_000, 'the unanswered request', unanswered);
  expect(res.status).toBe(503);
  expect(res.headers.get('retry-after')).toBe('1');
  expect(await res.json()).toMatchObject({ error: { code: 'upstream_unavailable', type: 'upstream_unavailable' } });

  const exit = await within(5_000, 'exit after the drain deadline', sidecar.exit);
  expect(exit).toEqual({ code: 0, signal: null });
  const elapsed = Date.now() - terminatedAt;
  expect(elapsed).toBeGreaterThanOrEqual(drainMs);
  expect(elapsed).toBeLessThan(drainMs + 6_000);
  expect(sidecar.stderr.some((l) => l.includes('drain deadline reached'))).toBe(true);
  // The provider calls were abandoned, not left open.
  const closed = await within(3_000, 'the provider connections closing', Promise.all(fake.responseClosed));
  expect(closed.map((c) => c.finished)).toEqual([false, false, false]);
  // The cut streams are billed (estimated: the provider never sent its usage); the request still
  // waiting for its provider was answered nothing, so nothing is billed for it.
  const requests = await auditAfterExit(sidecar);
  expect(requests.map((r) => r['http.response.status_code'])).toEqual([503, 503, 503]);
  const streamed = requests.filter((r) => r.stream === true);
  const [waiting] = requests.filter((r) => r.stream === false);
  expect(streamed).toHaveLength(2);
  for (const cut of streamed) {
    expect(cut).toMatchObject({ stream: true, usage_estimated: true });
    expect(cut['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
    expect(cut.cost_usd).toBeGreaterThan(0);
  }
  expect(waiting).toMatchObject({ stream: false, 'gen_ai.provider.name': 'openai' });
  expect(waiting['gen_ai.usage.input_tokens']).toBeUndefined();
});

test('with a shared Redis budget, streams drained or cut at the deadline are settled to what they used before the process exits', async () => {
  const redis = await RedisServer.start();
  try {
    const drainMs = 1_000;
    const sidecar = await startSidecar(drainMs, {
      budgets: [{ scope: 'user', unit: 'tokens', period: 'day', limit: 1_000_000 }],
      store: { type: 'redis', url: redis.url, commandTimeoutMs: 1_000 },
    });
    const { openai } = clients(sidecar);
    // One stream ends during the drain, one stalls and is cut at the deadline.
    fake.script({ text: words(6, 'd'), eventDelayMs: 100, usage: { input: 30, output: 6 } }, { stallAfterEvents: 3 });
    const headers = { 'x-agent-user': 'drained' };
    const drained = await openai.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 500, messages: [{ role: 'user', content: 'D' }], stream: true }, { headers });
    const cut = await openai.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 500, messages: [{ role: 'user', content: 'C' }], stream: true }, { headers: { 'x-agent-user': 'cut' } });
    const readAll = async (s: AsyncIterable<unknown>) => {
      try {
        for await (const _ of s);
      } catch (e) {
        return e;
      }
      return undefined;
    };
    const reading = Promise.all([readAll(drained), readAll(cut)]);
    // Both reservations are in Redis (500 tokens of output each, plus the prompt).
    const used = (user: string) => redisTokensUsed(redis, user);
    expect(used('drained')).toBeGreaterThan(500);
    expect(used('cut')).toBeGreaterThan(500);

    sidecar.child.kill('SIGTERM');
    const [drainedError, cutError] = await within(drainMs + 6_000, 'the streams ending', reading);
    expect(drainedError).toBeUndefined();
    expect((cutError as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_unavailable');
    expect((await within(5_000, 'exit', sidecar.exit)).code).toBe(0);

    const requests = await auditAfterExit(sidecar);
    const byUser = (user: string) => requests.find((r) => r['user.id'] === user)!;
    expect(byUser('drained')).toMatchObject({ 'http.response.status_code': 200, usage_estimated: false, 'gen_ai.usage.input_tokens': 30, 'gen_ai.usage.output_tokens': 6 });
    expect(byUser('cut')).toMatchObject({ 'http.response.status_code': 503, usage_estimated: true });
    // The shared budget holds what each used, not what each reserved.
    expect(used('drained')).toBe(billedTokens(byUser('drained')));
    expect(used('cut')).toBe(billedTokens(byUser('cut')));
  } finally {
    await redis.stop();
  }
});

test('SIGTERM with nothing in flight exits 0 promptly, long before drainMs', async () => {
  const sidecar = await startSidecar(20_000);
  const { openai } = clients(sidecar);
  // A finished request leaves a kept-alive client connection open; it must not hold the exit.
  await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
  await fetch(`${sidecar.adminUrl}/metrics`).then((r) => r.text());

  const terminatedAt = Date.now();
  sidecar.child.kill('SIGTERM');
  const exit = await within(5_000, 'exit when idle', sidecar.exit);
  expect(exit).toEqual({ code: 0, signal: null });
  expect(Date.now() - terminatedAt).toBeLessThan(3_000);
  const draining = await sidecar.waitForLog('draining');
  expect(draining.inFlight).toBe(0);
  await sidecar.waitForLog('stopped');
});

test('SIGINT drains the same way', async () => {
  const sidecar = await startSidecar(20_000);
  const { openai } = clients(sidecar);
  fake.script({ text: words(6, 'i'), eventDelayMs: 100 });
  const stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true });
  const it = stream[Symbol.asyncIterator]();
  const chunks = [(await it.next()).value];
  sidecar.child.kill('SIGINT');
  expect((await sidecar.waitForLog('draining')).signal).toBe('SIGINT');
  for (let r = await it.next(); !r.done; r = await it.next()) chunks.push(r.value);
  expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(words(6, 'i'));
  expect((await within(5_000, 'exit', sidecar.exit)).code).toBe(0);
});
