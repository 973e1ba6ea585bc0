/**
 * A scripted fake LLM provider on loopback: the one stand-in the tests use, since the real
 * providers are out of reach. Speaks OpenAI Chat Completions and Anthropic Messages, streamed
 * and whole, with tool calls and cached-token usage, and misbehaves on demand (errors, delays,
 * resets, cut and stalled streams, odd chunking).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeUsage {
  /** Uncached input tokens. */
  input: number;
  output: number;
  cacheRead?: number;
  cacheWrite?: number;
}

export interface FakeToolCall {
  id?: string;
  name: string;
  arguments: Record<string, unknown>;
}

/** What the fake does with one request. Unset fields take the defaults. */
export interface Step {
  /** Answer with this status and an error body in the API's shape (or `errorBody` as given). */
  status?: number;
  errorBody?: string;
  headers?: Record<string, string>;
  text?: string;
  toolCalls?: FakeToolCall[];
  usage?: FakeUsage;
  /** Leave usage out entirely (some OpenAI-compatible servers do). */
  noUsage?: boolean;
  /** Wait before sending the response head. */
  delayMs?: number;
  /** Wait between the head and the first body byte. */
  firstByteDelayMs?: number;
  /** Wait between stream events. */
  eventDelayMs?: number;
  /** Write the stream's bytes in pieces of these sizes (cycled), splitting events anywhere. */
  chunkSizes?: number[];
  /** Destroy the connection after this many stream events (or, unstreamed, half-way through the body). */
  cutAfterEvents?: number;
  /** Stop sending after this many stream events, leaving the connection open. */
  stallAfterEvents?: number;
  /** Destroy the connection as soon as the request arrives. */
  reset?: boolean;
  /** Never answer. */
  hang?: boolean;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: any;
  raw: string;
}

/** How the fake's response to one request ended. */
export interface ResponseOutcome {
  /** True when the whole response was written; false when the connection closed first (client gone). */
  finished: boolean;
  /** Milliseconds from the request's arrival to the close. */
  afterMs: number;
}

export const DEFAULT_TEXT = 'Hello! How can I help you today?';
export const DEFAULT_USAGE: FakeUsage = { input: 12, output: 9 };

export class FakeLlm {
  readonly requests: RecordedRequest[] = [];
  /** One per recorded request, same index: resolves when that response closes, however it ended. */
  readonly responseClosed: Promise<ResponseOutcome>[] = [];
  private readonly steps: Step[] = [];
  private readonly server: http.Server;
  private readonly sockets = new Set<import('node:net').Socket>();
  /** Applied when no scripted step is queued. */
  defaultStep: Step = {};
  private seq = 0;

  private constructor() {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 60_000;
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  static async start(port = 0): Promise<FakeLlm> {
    const fake = new FakeLlm();
    await new Promise<void>((resolve) => fake.server.listen(port, '127.0.0.1', resolve));
    return fake;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Origin, as an Anthropic base URL. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** As an OpenAI base URL. */
  get openaiUrl(): string {
    return `${this.url}/v1`;
  }

  /** Queues steps, consumed one per request in order. */
  script(...steps: Step[]): this {
    this.steps.push(...steps);
    return this;
  }

  reset(): void {
    this.steps.length = 0;
    this.requests.length = 0;
    this.responseClosed.length = 0;
    this.defaultStep = {};
  }

  get pendingSteps(): number {
    return this.steps.length;
  }

  /** Open connections from clients (the proxy's pool). */
  get connections(): number {
    return this.sockets.size;
  }

  /** Closes every open connection (the proxy's pooled ones), so the next request arrives on a fresh one. */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: any;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        body = undefined;
      }
      this.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, raw });
      const arrived = Date.now();
      this.responseClosed.push(
        new Promise((resolve) => res.once('close', () => resolve({ finished: res.writableFinished, afterMs: Date.now() - arrived }))),
      );
      const step = { ...this.defaultStep, ...(this.steps.shift() ?? {}) };
      const anthropic = (req.url ?? '').includes('/messages');
      if (step.reset) {
        req.socket.destroy();
        return;
      }
      if (step.hang) return;
      const respond = () => {
        if (res.destroyed) return;
        if (step.status && step.status >= 400) return this.sendError(res, anthropic, step);
        if (req.method === 'GET' && (req.url ?? '').includes('/models')) return this.sendJson(res, step, { object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model' }] });
        const stream = body?.stream === true;
        if (anthropic) return stream ? this.streamAnthropic(res, body, step) : this.sendJson(res, step, anthropicMessage(body, step, ++this.seq));
        return stream ? this.streamOpenAi(res, body, step) : this.sendJson(res, step, openAiCompletion(body, step, ++this.seq));
      };
      if (step.delayMs) setTimeout(respond, step.delayMs);
      else respond();
    });
  }

  private sendError(res: http.ServerResponse, anthropic: boolean, step: Step): void {
    const status = step.status!;
    const body =
      step.errorBody ??
      JSON.stringify(
        anthropic
          ? { type: 'error', error: { type: status === 429 ? 'rate_limit_error' : status === 529 ? 'overloaded_error' : 'api_error', message: `fake error ${status}` } }
          : { error: { message: `fake error ${status}`, type: status === 429 ? 'rate_limit_error' : 'server_error', param: null, code: null } },
      );
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...step.headers });
    res.end(body);
  }

  private sendJson(res: http.ServerResponse, step: Step, payload: unknown): void {
    const body = Buffer.from(JSON.stringify(payload));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'x-request-id': `req_fake_${this.seq}`, ...step.headers });
    if (step.cutAfterEvents !== undefined) {
      res.write(body.subarray(0, body.length >> 1), () => res.destroy());
      return;
    }
    if (step.firstByteDelayMs) {
      res.flushHeaders();
      setTimeout(() => res.end(body), step.firstByteDelayMs);
    } else {
      res.end(body);
    }
  }

  private streamOpenAi(res: http.ServerResponse, body: any, step: Step): void {
    this.writeEvents(res, step, openAiEvents(body, step, ++this.seq));
  }

  private streamAnthropic(res: http.ServerResponse, body: any, step: Step): void {
    this.writeEvents(res, step, anthropicEvents(body, step, ++this.seq));
  }

  /** Writes SSE events with the step's pacing, chunking and failures. */
  private writeEvents(res: http.ServerResponse, step: Step, events: string[]): void {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': `req_fake_${this.seq}`, ...step.headers });
    res.flushHeaders();
    const limit = step.cutAfterEvents ?? step.stallAfterEvents ?? Infinity;
    const sizes = step.chunkSizes;
    let pending = Buffer.alloc(0);
    let sizeIndex = 0;
    const writeBytes = (bytes: Buffer, flushAll: boolean) => {
      if (!sizes) {
        res.write(bytes);
        return;
      }
      pending = Buffer.concat([pending, bytes]);
      while (pending.length) {
        const size = Math.max(1, sizes[sizeIndex % sizes.length]);
        if (pending.length < size && !flushAll) break;
        sizeIndex++;
        res.write(pending.subarray(0, size));
        pending = pending.subarray(size);
      }
    };
    let i = 0;
    const next = () => {
      if (res.destroyed) return;
      if (i >= limit) {
        writeBytes(Buffer.alloc(0), true);
        if (step.cutAfterEvents !== undefined) setTimeout(() => res.destroy(), 5);
        return; // stalled: keep the connection open
      }
      if (i >= events.length) {
        writeBytes(Buffer.alloc(0), true);
        res.end();
        return;
      }
      writeBytes(Buffer.from(events[i++]), false);
      if (step.eventDelayMs) setTimeout(next, step.eventDelayMs);
      else next();
    };
    if (step.firstByteDelayMs) setTimeout(next, step.firstByteDelayMs);
    else next();
  }
}

function usageOf(step: Step): FakeUsage {
  return step.usage ?? DEFAULT_USAGE;
}

function words(text: string): string[] {
  return text.match(/\S+\s*|\s+/g) ?? [];
}

function toolCallId(call: FakeToolCall, i: number): string {
  return call.id ?? `call_fake_${i}`;
}

export function openAiUsage(u: FakeUsage): Record<string, unknown> {
  const cached = u.cacheRead ?? 0;
  return {
    prompt_tokens: u.input + cached,
    completion_tokens: u.output,
    total_tokens: u.input + cached + u.output,
    prompt_tokens_details: { cached_tokens: cached, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
}

export function openAiCompletion(body: any, step: Step, seq: number): Record<string, unknown> {
  const tools = step.toolCalls;
  const message: Record<string, unknown> = { role: 'assistant', content: tools ? null : (step.text ?? DEFAULT_TEXT), refusal: null };
  if (tools) {
    message.tool_calls = tools.map((t, i) => ({ id: toolCallId(t, i), type: 'function', function: { name: t.name, arguments: JSON.stringify(t.arguments) } }));
  }
  const out: Record<string, unknown> = {
    id: `chatcmpl-fake-${seq}`,
    object: 'chat.completion',
    created: 1_760_000_000,
    model: body?.model ?? 'gpt-4o-mini',
    choices: [{ index: 0, message, logprobs: null, finish_reason: tools ? 'tool_calls' : 'stop' }],
    system_fingerprint: 'fp_fake',
  };
  if (!step.noUsage) out.usage = openAiUsage(usageOf(step));
  return out;
}

export function openAiEvents(body: any, step: Step, seq: number): string[] {
  const includeUsage = body?.stream_options?.include_usage === true && !step.noUsage;
  const base = { id: `chatcmpl-fake-${seq}`, object: 'chat.completion.chunk', created: 1_760_000_000, model: body?.model ?? 'gpt-4o-mini', system_fingerprint: 'fp_fake' };
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
    `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...(includeUsage ? { usage: null } : {}) })}\n\n`;
  const events = [chunk({ role: 'assistant', content: '', refusal: null })];
  if (step.toolCalls) {
    step.toolCalls.forEach((t, i) => {
      events.push(chunk({ tool_calls: [{ index: i, id: toolCallId(t, i), type: 'function', function: { name: t.name, arguments: '' } }] }));
      const args = JSON.stringify(t.arguments);
      for (let at = 0; at < args.length; at += 8) events.push(chunk({ tool_calls: [{ index: i, function: { arguments: args.slice(at, at + 8) } }] }));
    });
    events.push(chunk({}, 'tool_calls'));
  } else {
    for (const w of words(step.text ?? DEFAULT_TEXT)) events.push(chunk({ content: w }));
    events.push(chunk({}, 'stop'));
  }
  if (includeUsage) events.push(`data: ${JSON.stringify({ ...base, choices: [], usage: openAiUsage(usageOf(step)) })}\n\n`);
  events.push('data: [DONE]\n\n');
  return events;
}

export function anthropicMessage(body: any, step: Step, seq: number): Record<string, unknown> {
  const u = usageOf(step);
  const content: unknown[] = [];
  if (step.toolCalls) for (const [i, t] of step.toolCalls.entries()) content.push({ type: 'tool_use', id: t.id ?? `toolu_fake_${i}`, name: t.name, input: t.arguments });
  else content.push({ type: 'text', text: step.text ?? DEFAULT_TEXT });
  const out: Record<string, unknown> = {
    id: `msg_fake_${seq}`,
    type: 'message',
    role: 'assistant',
    model: body?.model ?? 'claude-sonnet-4-5',
    content,
    stop_reason: step.toolCalls ? 'tool_use' : 'end_turn',
    stop_sequence: null,
  };
  if (!step.noUsage) {
    out.usage = { input_tokens: u.input, cache_creation_input_tokens: u.cacheWrite ?? 0, cache_read_input_tokens: u.cacheRead ?? 0, output_tokens: u.output };
  }
  return out;
}

export function anthropicEvents(body: any, step: Step, seq: number): string[] {
  const u = usageOf(step);
  const ev = (name: string, data: Record<string, unknown>) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;
  const events = [
    ev('message_start', {
      message: {
        id: `msg_fake_${seq}`,
        type: 'message',
        role: 'assistant',
        model: body?.model ?? 'claude-sonnet-4-5',
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: step.noUsage
          ? {}
          : { input_tokens: u.input, cache_creation_input_tokens: u.cacheWrite ?? 0, cache_read_input_tokens: u.cacheRead ?? 0, output_tokens: 1 },
      },
    }),
  ];
  if (step.toolCalls) {
    step.toolCalls.forEach((t, i) => {
      events.push(ev('content_block_start', { index: i, content_block: { type: 'tool_use', id: t.id ?? `toolu_fake_${i}`, name: t.name, input: {} } }));
      const args = JSON.stringify(t.arguments);
      for (let at = 0; at < args.length; at += 8) events.push(ev('content_block_delta', { index: i, delta: { type: 'input_json_delta', partial_json: args.slice(at, at + 8) } }));
      events.push(ev('content_block_stop', { index: i }));
    });
  } else {
    events.push(ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }));
    events.push(ev('ping', {}));
    for (const w of words(step.text ?? DEFAULT_TEXT)) events.push(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } }));
    events.push(ev('content_block_stop', { index: 0 }));
  }
  events.push(
    ev('message_delta', { delta: { stop_reason: step.toolCalls ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: step.noUsage ? {} : { output_tokens: u.output } }),
  );
  events.push(ev('message_stop', {}));
  return events;
}
