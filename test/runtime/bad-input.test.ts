/**
 * Requests the sidecar turns away itself, before any provider is chosen: malformed or invalid
 * bodies (400), bodies over limits.maxBodyBytes (413) and, with unpricedModels: 'reject', models
 * missing from the price table. Each answer is in the called API's own error shape, tells the
 * SDK not to retry, never reaches the provider, is counted with provider="none", bills nothing,
 * and leaves one audit record saying who was refused, where and why.
 */
import * as http from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { auditRecords, expectIntactAuditChain } from '../support/audit';
import { FakeLlm } from '../support/fake-llm';
import { metricDelta, rawPost, Sidecar, sleep, testConfig } from '../support/sidecar';

const MAX_BODY = 2048;

let fake: FakeLlm;
let sidecar: Sidecar;
let openai: OpenAI;
let anthropic: Anthropic;

beforeAll(async () => {
  fake = await FakeLlm.start();
  sidecar = await Sidecar.start({
    config: testConfig({
      providers: [
        { name: 'openai', type: 'openai', baseUrl: fake.openaiUrl },
        { name: 'anthropic', type: 'anthropic', baseUrl: fake.url },
      ],
      limits: { maxBodyBytes: MAX_BODY },
      unpricedModels: 'reject',
    }),
  });
  openai = new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: 'sk-client', maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: sidecar.url, apiKey: 'sk-ant-client', maxRetries: 0 });
});

afterAll(async () => {
  // Every refusal left its record, in one intact chain.
  if (sidecar) await expectIntactAuditChain(sidecar);
  await sidecar?.stop();
  await fake?.close();
});

beforeEach(() => fake.reset());

const OPENAI_PATH = '/v1/chat/completions';
const ANTHROPIC_PATH = '/v1/messages';
const JSON_HEADERS = { 'content-type': 'application/json' };
const ANTHROPIC_HEADERS = { ...JSON_HEADERS, 'anthropic-version': '2023-06-01', 'x-api-key': 'sk-ant-client' };
const NONE = { agent: 'test-agent', provider: 'none', model: 'none' };
const user = [{ role: 'user', content: 'hi' }];

/** Runs `fn` and returns how many early rejections with `code` it added to llm_requests_total. */
async function rejectionsDuring(code: string, fn: () => Promise<void>): Promise<number> {
  const before = await sidecar.metricsText();
  await fn();
  const after = await sidecar.metricsText();
  // Refused before anything went upstream: nothing is billed.
  expect(metricDelta(before, after, 'llm_tokens_total')).toBe(0);
  expect(metricDelta(before, after, 'llm_cost_usd_total')).toBe(0);
  return metricDelta(before, after, 'llm_requests_total', { ...NONE, code });
}

/** The audit records written while `fn` ran, once they are out (a record follows its answer by a turn). */
async function auditDuring(count: number, fn: () => Promise<void>): Promise<ReturnType<typeof auditRecords>> {
  await sleep(50); // the records of what ran before are out
  const from = sidecar.stdout.length;
  await fn();
  const deadline = Date.now() + 3_000;
  while (sidecar.stdout.length - from < count && Date.now() < deadline) await sleep(10);
  await sleep(50);
  return auditRecords(sidecar).slice(from);
}

describe('invalid bodies get 400 in the OpenAI error shape, naming the parameter', () => {
  const cases: Array<[string, string, string | null]> = [
    ['malformed JSON', '{"model": "gpt-4o-mini", "messages": [', null],
    ['a JSON array', JSON.stringify([{ model: 'gpt-4o-mini', messages: user }]), null],
    ['JSON null', 'null', null],
    ['a body without model', JSON.stringify({ messages: user }), 'model'],
    ['a body without messages', JSON.stringify({ model: 'gpt-4o-mini' }), 'messages'],
    ['empty messages', JSON.stringify({ model: 'gpt-4o-mini', messages: [] }), 'messages'],
    ['a non-boolean stream', JSON.stringify({ model: 'gpt-4o-mini', messages: user, stream: 'true' }), 'stream'],
    ['stream_options without stream', JSON.stringify({ model: 'gpt-4o-mini', messages: user, stream_options: { include_usage: true } }), 'stream_options'],
    ['stream_options with stream: false', JSON.stringify({ model: 'gpt-4o-mini', messages: user, stream: false, stream_options: { include_usage: true } }), 'stream_options'],
  ];

  test.each(cases)('%s', async (_name, body, param) => {
    let res!: Awaited<ReturnType<typeof rawPost>>;
    let counted = 0;
    const records = await auditDuring(1, async () => {
      counted = await rejectionsDuring('400', async () => {
        res = await rawPost(sidecar.url + OPENAI_PATH, body, { ...JSON_HEADERS, authorization: 'Bearer sk-client' });
      });
    });
    expect(records).toEqual([
      expect.objectContaining({ kind: 'llm.request', 'http.response.status_code': 400, 'gen_ai.security.decision.type': 'deny', 'gen_ai.security.policy.id': 'invalid_request_error' }),
    ]);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['x-should-retry']).toBe('false');
    expect(JSON.parse(res.body)).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', param, code: 'invalid_request_error' },
    });
    if (param) expect(JSON.parse(res.body).error.message).toContain(param);
    expect(fake.requests).toEqual([]);
    expect(counted).toBe(1);
  });
});

test('a body that is not JSON: the client sees the parser message, the audit log a fixed reason and none of the body', async () => {
  const body = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": sk-live-SECRETTOKEN123}]}';
  let res!: Awaited<ReturnType<typeof rawPost>>;
  const records = await auditDuring(1, async () => {
    res = await rawPost(sidecar.url + OPENAI_PATH, body, JSON_HEADERS);
  });
  expect(res.status).toBe(400);
  expect(JSON.parse(res.body).error.message).toMatch(/^the request body is not valid JSON: /);
  expect(records).toEqual([expect.objectContaining({ 'http.response.status_code': 400, 'gen_ai.security.decision.reason': 'the request body is not valid JSON' })]);
  expect(JSON.stringify(records)).not.toContain('sk-live');
  expect(fake.requests).toEqual([]);
});

describe('invalid bodies get 400 in the Anthropic error shape, naming the parameter', () => {
  const base = { model: 'claude-haiku-4-5', max_tokens: 100, messages: user };
  const cases: Array<[string, string, RegExp]> = [
    ['malformed JSON', '{"model": "claude-haiku-4-5", ', /JSON/],
    ['a JSON array', JSON.stringify([base]), /object/],
    ['a body without max_tokens', JSON.stringify({ model: base.model, messages: user }), /max_tokens/],
    ['a body without model', JSON.stringify({ max_tokens: 100, messages: user }), /model/],
    ['a body without messages', JSON.stringify({ model: base.model, max_tokens: 100 }), /messages/],
    ['a non-boolean stream', JSON.stringify({ ...base, stream: 'yes' }), /stream/],
  ];

  test.each(cases)('%s', async (_name, body, mentions) => {
    let res!: Awaited<ReturnType<typeof rawPost>>;
    const counted = await rejectionsDuring('400', async () => {
      res = await rawPost(sidecar.url + ANTHROPIC_PATH, body, ANTHROPIC_HEADERS);
    });
    expect(res.status).toBe(400);
    expect(res.headers['x-should-retry']).toBe('false');
    const parsed = JSON.parse(res.body);
    expect(parsed).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: expect.any(String) } });
    expect(parsed.error.message).toMatch(mentions);
    expect(fake.requests).toEqual([]);
    expect(counted).toBe(1);
  });
});

describe('the official SDKs raise BadRequestError for the requests they can send', () => {
  const sdkCases: Array<[string, Record<string, unknown>, string]> = [
    ['no model', { messages: user }, 'model'],
    ['empty messages', { model: 'gpt-4o-mini', messages: [] }, 'messages'],
    ['a non-boolean stream', { model: 'gpt-4o-mini', messages: user, stream: 'yes' }, 'stream'],
    ['stream_options without stream', { model: 'gpt-4o-mini', messages: user, stream_options: { include_usage: true } }, 'stream_options'],
  ];

  test.each(sdkCases)('OpenAI: %s', async (_name, body, param) => {
    const err = await openai.chat.completions.create(body as any).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.status).toBe(400);
    expect(e.code).toBe('invalid_request_error');
    expect(e.type).toBe('invalid_request_error');
    expect(e.param).toBe(param);
    expect(e.headers.get('x-should-retry')).toBe('false');
    expect(fake.requests).toEqual([]);
  });

  test.each([
    ['no max_tokens', { model: 'claude-haiku-4-5', messages: user }, 'max_tokens'],
    ['no model', { max_tokens: 50, messages: user }, 'model'],
  ])('Anthropic: %s', async (_name, body, param) => {
    const err = await anthropic.messages.create(body as any).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    const e = err as InstanceType<typeof Anthropic.BadRequestError>;
    expect(e.status).toBe(400);
    expect(e.error).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: expect.stringContaining(param) } });
    expect(e.headers?.get('x-should-retry')).toBe('false');
    expect(fake.requests).toEqual([]);
  });
});

/** A chunked POST (no content-length): writes `chunk` every few ms until an answer arrives. */
function chunkedPost(url: string, headers: Record<string, string>, chunk: Buffer, maxChunks: number): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; written: number }> {
  return new Promise((resolve, reject) => {
    let written = 0;
    let answered = false;
    const req = http.request(url, { method: 'POST', headers, agent: false }, (res) => {
      answered = true;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, written });
        req.destroy();
      });
      res.on('error', reject);
    });
    // Writes after the server answered and closed may fail; the answer is what counts.
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    const pump = () => {
      if (answered || req.destroyed) return;
      if (written >= maxChunks) {
        req.end();
        return;
      }
      written++;
      req.write(chunk);
      setTimeout(pump, 10);
    };
    req.flushHeaders();
    pump();
  });
}

describe(`bodies over limits.maxBodyBytes (${MAX_BODY}) get 413 request_too_large`, () => {
  const bigOpenAi = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(4 * MAX_BODY) }] });
  const bigAnthropic = JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'x'.repeat(4 * MAX_BODY) }] });

  test('a body just under the limit is proxied', async () => {
    const filler = 'x'.repeat(MAX_BODY - 150);
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: filler }] });
    expect(Buffer.byteLength(body)).toBeLessThan(MAX_BODY);
    const res = await rawPost(sidecar.url + OPENAI_PATH, body, JSON_HEADERS);
    expect(res.status).toBe(200);
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0].body.messages[0].content).toBe(filler);
  });

  test('declared with content-length: OpenAI shape, nothing upstream, the rest of the body drained, the refusal audited', async () => {
    let res!: Awaited<ReturnType<typeof rawPost>>;
    let counted = 0;
    const records = await auditDuring(1, async () => {
      counted = await rejectionsDuring('413', async () => {
        res = await rawPost(sidecar.url + OPENAI_PATH, bigOpenAi, JSON_HEADERS);
      });
    });
    expect(records).toEqual([
      expect.objectContaining({
        kind: 'llm.request',
        'url.path': OPENAI_PATH,
        'http.response.status_code': 413,
        'gen_ai.security.decision.type': 'deny',
        'gen_ai.security.policy.id': 'request_too_large',
        'gen_ai.security.decision.reason': expect.stringContaining('limits.maxBodyBytes'),
      }),
    ]);
    expect(records[0]['gen_ai.usage.input_tokens']).toBeUndefined();
    expect(res.status).toBe(413);
    expect(res.headers['x-should-retry']).toBe('false');
    // Kept open while the client finishes sending: closing mid-upload would surface as EPIPE.
    expect(res.headers.connection).not.toBe('close');
    expect(JSON.parse(res.body)).toEqual({
      error: { message: expect.stringContaining(String(MAX_BODY)), type: 'request_too_large', param: null, code: 'request_too_large' },
    });
    expect(fake.requests).toEqual([]);
    expect(counted).toBe(1);
  });

  test('declared with content-length: Anthropic shape', async () => {
    let res!: Awaited<ReturnType<typeof rawPost>>;
    const counted = await rejectionsDuring('413', async () => {
      res = await rawPost(sidecar.url + ANTHROPIC_PATH, bigAnthropic, ANTHROPIC_HEADERS);
    });
    expect(res.status).toBe(413);
    expect(res.headers['x-should-retry']).toBe('false');
    expect(JSON.parse(res.body)).toEqual({ type: 'error', error: { type: 'request_too_large', message: expect.any(String) } });
    expect(fake.requests).toEqual([]);
    expect(counted).toBe(1);
  });

  test('sent chunked without content-length: cut off once past the limit', async () => {
    let res!: Awaited<ReturnType<typeof chunkedPost>>;
    const counted = await rejectionsDuring('413', async () => {
      // 40 x 512 bytes = 20 KiB if the sidecar never answered early.
      res = await chunkedPost(sidecar.url + OPENAI_PATH, { ...JSON_HEADERS }, Buffer.alloc(512, 'x'), 40);
    });
    expect(res.status).toBe(413);
    expect(res.headers['x-should-retry']).toBe('false');
    expect(JSON.parse(res.body).error.code).toBe('request_too_large');
    // Answered as soon as the limit was passed, not after the client had sent everything.
    expect(res.written).toBeLessThan(40);
    expect(fake.requests).toEqual([]);
    expect(counted).toBe(1);
  });

  test('sent chunked to the Anthropic endpoint', async () => {
    let res!: Awaited<ReturnType<typeof chunkedPost>>;
    const records = await auditDuring(1, async () => {
      res = await chunkedPost(sidecar.url + ANTHROPIC_PATH, { ...ANTHROPIC_HEADERS }, Buffer.alloc(700, 'y'), 40);
    });
    expect(records).toEqual([expect.objectContaining({ kind: 'llm.request', 'url.path': ANTHROPIC_PATH, 'http.response.status_code': 413, 'gen_ai.security.policy.id': 'request_too_large' })]);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body)).toEqual({ type: 'error', error: { type: 'request_too_large', message: expect.any(String) } });
    expect(fake.requests).toEqual([]);
  });

  /** Outcome of one SDK call: the HTTP status of its API error, or the connection error it raised. */
  function outcome(err: unknown): string {
    if (err instanceof OpenAI.APIConnectionError || err instanceof Anthropic.APIConnectionError) {
      const cause = (err as { cause?: { code?: string; cause?: { code?: string }; message?: string } }).cause;
      return `connection error (${cause?.code ?? cause?.cause?.code ?? cause?.message ?? err.message})`;
    }
    if (err instanceof OpenAI.APIError || err instanceof Anthropic.APIError) return `status ${err.status}`;
    return `other: ${String(err)}`;
  }

  /** Tallies the outcomes of `tries` calls. */
  async function tally(tries: number, call: () => Promise<unknown>): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (let i = 0; i < tries; i++) {
      const key = await call().then(
        () => 'succeeded',
        (e: unknown) => outcome(e),
      );
      out[key] = (out[key] ?? 0) + 1;
    }
    return out;
  }

  test('the OpenAI SDK sees the 413 as an API error with its code', async () => {
    const content = 'z'.repeat(256 * 1024);
    const err = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(outcome(err)).toBe('status 413');
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('request_too_large');
    expect(fake.requests).toEqual([]);
  });

  test('the Anthropic SDK sees the 413 as an API error with its type', async () => {
    const content = 'z'.repeat(256 * 1024);
    const err = await anthropic.messages.create({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content }] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(outcome(err)).toBe('status 413');
    expect((err as InstanceType<typeof Anthropic.APIError>).error).toEqual({ type: 'error', error: { type: 'request_too_large', message: expect.any(String) } });
    expect(fake.requests).toEqual([]);
  });

  // An agent sending a multi-megabyte body (a few images) must learn it is too large, not see a
  // broken connection that its SDK then retries with the same body.
  test('the SDKs see the 413, never a connection reset, for bodies of several megabytes', async () => {
    const content = 'z'.repeat(8 * 1024 * 1024);
    const openaiOutcomes = await tally(20, () => openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }));
    const anthropicOutcomes = await tally(20, () =>
      anthropic.messages.create({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content }] }),
    );
    expect({ openai: openaiOutcomes, anthropic: anthropicOutcomes }).toEqual({ openai: { 'status 413': 20 }, anthropic: { 'status 413': 20 } });
    expect(fake.requests).toEqual([]);
  });

  test('the sidecar keeps serving after oversized bodies', async () => {
    const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'still there?' }] });
    expect(completion.choices[0].message.content).toBeTruthy();
    expect(fake.requests).toHaveLength(1);
  });
});

describe("unpricedModels: 'reject'", () => {
  test('a model outside the price table gets 400 model_not_priced (OpenAI) without reaching the provider', async () => {
    let err: unknown;
    const counted = await rejectionsDuring('400', async () => {
      err = await openai.chat.completions.create({ model: 'my-finetune-v1', messages: [{ role: 'user', content: 'x' }] }).then(
        () => undefined,
        (e: unknown) => e,
      );
    });
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.code).toBe('model_not_priced');
    expect(e.type).toBe('model_not_priced');
    expect(e.param).toBe('model');
    expect(e.message).toContain('my-finetune-v1');
    expect(e.headers.get('x-should-retry')).toBe('false');
    expect(fake.requests).toEqual([]);
    expect(counted).toBe(1);
  });

  test('a model outside the price table gets 400 model_not_priced (Anthropic)', async () => {
    const err = await anthropic.messages.create({ model: 'claude-homebrew-1', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as InstanceType<typeof Anthropic.BadRequestError>).error).toEqual({
      type: 'error',
      error: { type: 'model_not_priced', message: expect.stringContaining('claude-homebrew-1') },
    });
    expect(fake.requests).toEqual([]);
  });

  test('priced models pass, including a dated alias of a priced model', async () => {
    const before = await sidecar.metricsText();
    const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
    expect(completion.model).toBe('gpt-4o-mini');
    const message = await anthropic.messages.create({ model: 'claude-haiku-4-5-20251001', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] });
    expect(message.model).toBe('claude-haiku-4-5-20251001');
    expect(fake.requests.map((r) => r.body.model)).toEqual(['gpt-4o-mini', 'claude-haiku-4-5-20251001']);
    const after = await sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_requests_total', { ...NONE, code: '400' })).toBe(0);
    expect(metricDelta(before, after, 'llm_requests_total', { provider: 'openai', model: 'gpt-4o-mini', code: '200' })).toBe(1);
    expect(metricDelta(before, after, 'llm_requests_total', { provider: 'anthropic', model: 'claude-haiku-4-5-20251001', code: '200' })).toBe(1);
  });
});
