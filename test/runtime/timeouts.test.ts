/**
 * The runtime's timeouts: first byte (fails over), idle and total (cut a started stream with an
 * error event), slow clients (closed before anything goes upstream), and connect (fails over).
 * Short timeouts keep the suite fast; time bounds are generous since the machine is noisy.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import OpenAI from 'openai';
import type { SidecarConfigInput } from '../../lib/spec';
import { openaiProvider, PRIMARY_TEXT, SECONDARY_TEXT, useProviderPair } from '../support/provider-pair';
import { auditRecords, expectIntactAuditChain } from '../support/audit';
import { metricDelta, Sidecar, testConfig } from '../support/sidecar';

const MODEL = 'gpt-4o-mini';
const LONG_TEXT = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');

type Providers = SidecarConfigInput['providers'];
type Timeouts = NonNullable<SidecarConfigInput['timeouts']>;

const fakes = useProviderPair();

function useSidecar(
  providers: () => Providers,
  timeouts: Timeouts,
  retry: SidecarConfigInput['retry'] = { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 40 },
): { sidecar: Sidecar; openai: OpenAI } {
  const ctx = {} as { sidecar: Sidecar; openai: OpenAI };
  beforeAll(async () => {
    ctx.sidecar = await Sidecar.start({
      config: testConfig({ providers: providers(), timeouts, retry, circuitBreaker: { failureThreshold: 100, cooldownMs: 30_000 } }),
    });
    ctx.openai = new OpenAI({ baseURL: ctx.sidecar.openaiBaseUrl, apiKey: 'agent-key', maxRetries: 0, timeout: 20_000 });
  });
  afterAll(async () => {
    await ctx.sidecar?.stop();
  });
  return ctx;
}

function ask(client: OpenAI): Promise<OpenAI.Chat.Completions.ChatCompletion> {
  return client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Say hello.' }] });
}

/** Reads a stream to its end or its error, with the arrival time of every chunk. */
async function readStream(client: OpenAI): Promise<{ text: string; times: number[]; error: unknown; started: number }> {
  const started = performance.now();
  const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Say hello.' }], stream: true });
  let text = '';
  const times: number[] = [];
  let error: unknown;
  try {
    for await (const chunk of stream) {
      times.push(performance.now());
      text += chunk.choices[0]?.delta.content ?? '';
    }
  } catch (e) {
    error = e;
  }
  return { text, times, error, started };
}

/** What a request's last bytes and close look like when sent to `port` slowly. */
function slowClient(port: number, head: string, body: string, byteEveryMs: number): Promise<{ response: string; closedAfterMs: number; sent: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect({ host: '127.0.0.1', port });
    let response = '';
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const bytes = Buffer.from(head + body);
    const headBytes = Buffer.byteLength(head);
    socket.on('connect', () => {
      // With a body to trickle, the head goes at once.
      if (body) {
        socket.write(bytes.subarray(0, headBytes));
        sent = headBytes;
      }
      timer = setInterval(() => {
        if (sent >= bytes.length || socket.destroyed) return clearInterval(timer);
        socket.write(bytes.subarray(sent, sent + 1));
        sent++;
      }, byteEveryMs);
    });
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (response += d));
    socket.on('error', () => undefined); // a reset is a close too
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ response, closedAfterMs: performance.now() - started, sent });
    });
  });
}

/**
 * A local address that never completes a TCP handshake: a listener with a backlog of 1 whose
 * process never accepts, its queue filled. Connects to it hang like to a dead host.
 */
async function blackHole(): Promise<{ port: number; close: () => void }> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:net').createServer();
       s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
         process.stdout.write(s.address().port + '\\n');
         Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // never accept
       });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d) => resolve(Number(String(d).trim())));
    child.once('exit', (code) => reject(new Error(`black hole exited (${code})`)));
  });
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 16; i++) {
    const outcome = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      fillers.push(s);
      s.once('connect', () => resolve('connected'));
      s.once('error', () => resolve('error'));
      setTimeout(() => resolve('pending'), 200);
    });
    if (outcome === 'pending') break; // the queue is full: further connects hang
    if (i === 15) throw new Error('could not fill the black hole listener queue');
  }
  return {
    port,
    close: () => {
      for (const s of fillers) s.destroy();
      child.kill('SIGKILL');
    },
  };
}

const NON_ROUTABLE = '10.255.255.1';

/** How a connect to the non-routable address behaves here: hangs, fails, or (intercepted) connects. */
function probeNonRoutable(): 'hangs' | 'fails' | 'connects' {
  const script = `const s = require('node:net').connect({ host: '${NON_ROUTABLE}', port: 81 });
    s.on('connect', () => { console.log('connects'); process.exit(0); });
    s.on('error', () => { console.log('fails'); process.exit(0); });
    setTimeout(() => { console.log('hangs'); process.exit(0); }, 600);`;
  const out = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 5_000 }).stdout.trim();
  return out === 'hangs' || out === 'fails' ? out : 'connects';
}

describe('first byte, idle and slow clients', () => {
  const FIRST_BYTE_MS = 300;
  const IDLE_MS = 400;
  const HEADERS_MS = 500;
  const BODY_MS = 2_000;
  const ctx = useSidecar(() => [openaiProvider('primary', fakes.primary.openaiUrl), openaiProvider('secondary', fakes.secondary.openaiUrl)], {
    firstByteMs: FIRST_BYTE_MS,
    idleMs: IDLE_MS,
    requestHeadersMs: HEADERS_MS,
    requestBodyMs: BODY_MS,
  });

  test('a primary that sends no response head within firstByteMs is failed over (reason timeout)', async () => {
    const before = await ctx.sidecar.metricsText();
    fakes.primary.script({ delayMs: 1_500 });

    const started = performance.now();
    const completion = await ask(ctx.openai);
    const elapsed = performance.now() - started;

    expect(completion.choices[0].message.content).toBe(SECONDARY_TEXT);
    expect(fakes.primary.requests).toHaveLength(1);
    expect(fakes.secondary.requests).toHaveLength(1);
    expect(elapsed).toBeGreaterThanOrEqual(FIRST_BYTE_MS * 0.9);
    expect(elapsed).toBeLessThan(FIRST_BYTE_MS * 3 + 1_000); // well before the primary's 1.5 s answer
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'timeout' })).toBe(1);
  });

  test('a stream whose head arrived but no body byte within firstByteMs is failed over too', async () => {
    const before = await ctx.sidecar.metricsText();
    fakes.primary.script({ firstByteDelayMs: 1_500 });

    const { text, error } = await readStream(ctx.openai);

    expect(error).toBeUndefined();
    expect(text).toBe(SECONDARY_TEXT);
    expect(fakes.primary.requests).toHaveLength(1);
    expect(fakes.secondary.requests).toHaveLength(1);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'timeout' })).toBe(1);
  });

  test('a stream that stalls mid-way is cut after idleMs with an error event, billed as estimated', async () => {
    const before = await ctx.sidecar.metricsText();
    fakes.primary.script({ stallAfterEvents: 3 });

    const { text, times, error } = await readStream(ctx.openai);

    expect(text).toMatch(/^Answered by/); // the first events arrived...
    expect(text).not.toBe(PRIMARY_TEXT);
    expect(error).toBeInstanceOf(OpenAI.APIError); // ...then the sidecar's error event
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_timeout');
    const silence = performance.now() - times[times.length - 1];
    expect(silence).toBeGreaterThanOrEqual(IDLE_MS * 0.9);
    expect(silence).toBeLessThan(IDLE_MS * 3 + 1_000);
    expect(fakes.primary.requests).toHaveLength(1);
    expect(fakes.secondary.requests).toHaveLength(0); // started streams are never retried

    const after = await ctx.sidecar.metricsText();
    const labels = { agent: 'test-agent', provider: 'primary', model: MODEL };
    expect(metricDelta(before, after, 'llm_requests_total', { ...labels, code: '504' })).toBe(1);
    expect(metricDelta(before, after, 'llm_usage_estimated_total', labels)).toBe(1);
    expect(metricDelta(before, after, 'llm_tokens_total', { ...labels, type: 'output' })).toBeGreaterThan(0);
  });

  test('a client sending its request headers slower than requestHeadersMs is closed, and nothing goes upstream', async () => {
    const port = Number(new URL(ctx.sidecar.url).port);
    const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
    const head = `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`;

    // One byte every 100 ms: the head alone would take ~10 s.
    const before = await ctx.sidecar.metricsText();
    const recordsBefore = auditRecords(ctx.sidecar).length;
    const result = await slowClient(port, head, '', 100);

    expect(result.sent).toBeLessThan(Buffer.byteLength(head));
    expect(result.closedAfterMs).toBeGreaterThanOrEqual(HEADERS_MS * 0.8);
    expect(result.closedAfterMs).toBeLessThan(HEADERS_MS * 3 + 1_000);
    if (result.response) expect(result.response).toMatch(/^HTTP\/1\.1 408 /);
    expect(fakes.primary.requests).toHaveLength(0);
    expect(fakes.secondary.requests).toHaveLength(0);
    // No request was ever read: nothing is billed or audited as one, and the chain is intact.
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_tokens_total')).toBe(0);
    expect(metricDelta(before, after, 'llm_requests_total')).toBe(0);
    expect(auditRecords(ctx.sidecar).slice(recordsBefore).filter((r) => r.kind === 'llm.request')).toEqual([]);
    await expectIntactAuditChain(ctx.sidecar);
  });

  test('a client sending its body slower than requestBodyMs is closed, and nothing goes upstream', async () => {
    const port = Number(new URL(ctx.sidecar.url).port);
    const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
    const head = `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`;

    // The head at once, then one body byte every 150 ms: the body would take ~10 s.
    const result = await slowClient(port, head, body, 150);

    expect(result.sent).toBeLessThan(Buffer.byteLength(head + body));
    expect(result.closedAfterMs).toBeGreaterThanOrEqual(BODY_MS * 0.8);
    expect(result.closedAfterMs).toBeLessThan(BODY_MS * 3);
    if (result.response) expect(result.response).toMatch(/^HTTP\/1\.1 408 /);
    expect(fakes.primary.requests).toHaveLength(0);
    expect(fakes.secondary.requests).toHaveLength(0);
  });
});

describe('with a single provider', () => {
  const FIRST_BYTE_MS = 300;
  const TOTAL_MS = 1_500;
  const MAX_ATTEMPTS = 2;
  const ctx = useSidecar(
    () => [openaiProvider('only', fakes.primary.openaiUrl)],
    { firstByteMs: FIRST_BYTE_MS, totalMs: TOTAL_MS },
    { maxAttempts: MAX_ATTEMPTS, baseDelayMs: 10, maxDelayMs: 40 },
  );

  test('first-byte timeouts on every attempt end in 504 upstream_timeout after about firstByteMs * maxAttempts', async () => {
    const before = await ctx.sidecar.metricsText();
    fakes.primary.defaultStep = { delayMs: 1_200 };

    const started = performance.now();
    const err = await ask(ctx.openai).catch((e: unknown) => e);
    const elapsed = performance.now() - started;

    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(504);
    expect(e.code).toBe('upstream_timeout');
    expect(e.headers?.get('x-cdk-agents-error')).toBe('upstream_timeout');
    expect(fakes.primary.requests).toHaveLength(MAX_ATTEMPTS);
    expect(elapsed).toBeGreaterThanOrEqual(FIRST_BYTE_MS * MAX_ATTEMPTS * 0.9);
    expect(elapsed).toBeLessThan(FIRST_BYTE_MS * MAX_ATTEMPTS * 3 + 1_000);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_retries_total', { provider: 'only', reason: 'timeout' })).toBe(MAX_ATTEMPTS - 1);
    expect(metricDelta(before, after, 'llm_requests_total', { provider: 'only', code: '504' })).toBe(1);
  });

  test('a slow stream running past totalMs is cut at about totalMs with an error event', async () => {
    const before = await ctx.sidecar.metricsText();
    // About 43 events 150 ms apart: ~6.5 s whole, each gap far below any idle timeout.
    fakes.primary.script({ text: LONG_TEXT, eventDelayMs: 150 });

    const { text, error, started } = await readStream(ctx.openai);
    const elapsed = performance.now() - started;

    expect(text.startsWith('word0 word1')).toBe(true);
    expect(text.length).toBeLessThan(LONG_TEXT.length);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_timeout');
    expect(elapsed).toBeGreaterThanOrEqual(TOTAL_MS * 0.95);
    expect(elapsed).toBeLessThan(TOTAL_MS * 3);
    expect(fakes.primary.requests).toHaveLength(1);
    const after = await ctx.sidecar.metricsText();
    const labels = { agent: 'test-agent', provider: 'only', model: MODEL };
    expect(metricDelta(before, after, 'llm_requests_total', { ...labels, code: '504' })).toBe(1);
    expect(metricDelta(before, after, 'llm_usage_estimated_total', labels)).toBe(1);
  });
});

describe('connect timeout', () => {
  const CONNECT_MS = 300;
  let hole: { port: number; close: () => void } | undefined;
  beforeAll(async () => {
    hole = await blackHole();
  });
  afterAll(() => hole?.close());
  const ctx = useSidecar(() => [openaiProvider('primary', `http://127.0.0.1:${hole!.port}/v1`), openaiProvider('secondary', fakes.secondary.openaiUrl)], {
    connectMs: CONNECT_MS,
  });

  test('a provider that never completes the TCP handshake is failed over after connectMs (reason connect_error)', async () => {
    const before = await ctx.sidecar.metricsText();

    const started = performance.now();
    const completion = await ask(ctx.openai);
    const elapsed = performance.now() - started;

    expect(completion.choices[0].message.content).toBe(SECONDARY_TEXT);
    expect(fakes.secondary.requests).toHaveLength(1);
    expect(elapsed).toBeGreaterThanOrEqual(CONNECT_MS * 0.9);
    expect(elapsed).toBeLessThan(CONNECT_MS * 3 + 1_000);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'connect_error' })).toBe(1);
  });
});

// Where a non-routable address black-holes (or is rejected at once), the same through the network
// stack. Skipped where the sandbox intercepts outbound connections and answers them itself.
const nonRoutable = probeNonRoutable();
(nonRoutable === 'connects' ? describe.skip : describe)(`a provider on a non-routable address (${NON_ROUTABLE}: connect ${nonRoutable})`, () => {
  const CONNECT_MS = 300;
  const ctx = useSidecar(() => [openaiProvider('primary', `http://${NON_ROUTABLE}:81/v1`), openaiProvider('secondary', fakes.secondary.openaiUrl)], {
    connectMs: CONNECT_MS,
  });

  test('is failed over quickly (reason connect_error)', async () => {
    const before = await ctx.sidecar.metricsText();

    const started = performance.now();
    const completion = await ask(ctx.openai);
    const elapsed = performance.now() - started;

    expect(completion.choices[0].message.content).toBe(SECONDARY_TEXT);
    expect(elapsed).toBeLessThan(CONNECT_MS * 3 + 1_000);
    if (nonRoutable === 'hangs') expect(elapsed).toBeGreaterThanOrEqual(CONNECT_MS * 0.9);
    const after = await ctx.sidecar.metricsText();
    expect(metricDelta(before, after, 'llm_upstream_failovers_total', { from: 'primary', to: 'secondary', reason: 'connect_error' })).toBe(1);
  });
});
