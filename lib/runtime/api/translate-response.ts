/**
 * Answers across API shapes: a provider's whole JSON answer, and its error bodies, as the
 * client's API would have given them. Also the pieces the stream translators share: ids,
 * finish reasons and usage in each API's convention.
 */
import { randomUUID } from 'node:crypto';
import { anthropicToolId, isObject, parseArguments } from './translate-request';

type Json = Record<string, unknown>;

/** A provider answer that is not the JSON its API documents: the integrator treats it as a bad gateway. */
export class UnreadableAnswerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnreadableAnswerError';
  }
}

function parseJson(body: Buffer, what: string): Json {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new UnreadableAnswerError(`the fallback provider's ${what} is not JSON`);
  }
  if (!isObject(parsed)) throw new UnreadableAnswerError(`the fallback provider's ${what} is not a JSON object`);
  return parsed;
}

function randomId(): string {
  return randomUUID().replace(/-/g, '');
}

/**
 * Ids keep the provider's unique part under the client API's prefix, so one answer has one id
 * in logs on both sides: msg_01AbC <-> chatcmpl-01AbC.
 */
export function openAiIdFor(anthropicId: unknown): string {
  const s = typeof anthropicId === 'string' ? anthropicId.replace(/^msg_/, '') : '';
  return `chatcmpl-${s || randomId()}`;
}

export function anthropicIdFor(openAiId: unknown): string {
  const s = typeof openAiId === 'string' ? openAiId.replace(/^chatcmpl-/, '') : '';
  return `msg_${s || randomId()}`;
}

/** Unix seconds: an OpenAI answer's `created` (Anthropic answers carry no timestamp). */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * Anthropic stop_reason -> OpenAI finish_reason. OpenAI says "stop" both for a natural end and
 * for a stop sequence; "length" for the token limit (and, the nearest meaning, the context
 * window); "content_filter" for content withheld, which is what Claude's refusal is.
 * pause_turn (a server-tool turn paused) only occurs with server tools, which never reach here.
 */
export function finishReasonFor(stopReason: unknown): string {
  switch (stopReason) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default:
      return 'stop';
  }
}

/**
 * OpenAI finish_reason -> Anthropic stop_reason. OpenAI does not say whether "stop" came from a
 * stop sequence, so it maps to end_turn (stop_sequence stays null).
 */
export function stopReasonFor(finishReason: unknown): string {
  switch (finishReason) {
    case 'length':
      return 'max_tokens';
    case 'tool_calls':
    case 'function_call':
      return 'tool_use';
    case 'content_filter':
      return 'refusal';
    default:
      return 'end_turn';
  }
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0;
}

/** Token counts in neutral terms: uncached input, cache reads, cache writes, output. */
export interface Tokens {
  input: number;
  cacheRead: number;
  cacheWrite: number;
  output: number;
  /** Output tokens spent thinking, when the provider says (part of `output`). */
  reasoning?: number;
}

/** Anthropic usage: input_tokens excludes cache reads and writes, reported beside it. */
export function tokensFromAnthropic(usage: unknown): Tokens {
  const u = isObject(usage) ? usage : {};
  const details = isObject(u.output_tokens_details) ? u.output_tokens_details : undefined;
  const t: Tokens = { input: num(u.input_tokens), cacheRead: num(u.cache_read_input_tokens), cacheWrite: num(u.cache_creation_input_tokens), output: num(u.output_tokens) };
  if (details && typeof details.thinking_tokens === 'number') t.reasoning = num(details.thinking_tokens);
  return t;
}

/** OpenAI usage: prompt_tokens includes the cached tokens (prompt_tokens_details.cached_tokens). */
export function tokensFromOpenAi(usage: unknown): Tokens {
  const u = isObject(usage) ? usage : {};
  const prompt = num(u.prompt_tokens);
  const cached = Math.min(num(isObject(u.prompt_tokens_details) ? u.prompt_tokens_details.cached_tokens : 0), prompt);
  return { input: prompt - cached, cacheRead: cached, cacheWrite: 0, output: num(u.completion_tokens) };
}

/**
 * Usage as OpenAI reports it: prompt_tokens is every input token the model read, cached_tokens
 * the part read from the cache. OpenAI has no cache writes: Anthropic's cache-creation tokens
 * are prompt tokens not read from a cache, so they count in prompt_tokens only.
 */
export function openAiUsageOf(t: Tokens): Json {
  const prompt = t.input + t.cacheRead + t.cacheWrite;
  const usage: Json = { prompt_tokens: prompt, completion_tokens: t.output, total_tokens: prompt + t.output, prompt_tokens_details: { cached_tokens: t.cacheRead } };
  if (t.reasoning !== undefined) usage.completion_tokens_details = { reasoning_tokens: t.reasoning };
  return usage;
}

/** Usage as Anthropic reports it: input_tokens excludes the cache reads reported beside it. */
export function anthropicUsageOf(t: Tokens): Json {
  return { input_tokens: t.input, cache_creation_input_tokens: t.cacheWrite, cache_read_input_tokens: t.cacheRead, output_tokens: t.output };
}

/**
 * An Anthropic message (the provider's 2xx body) as an OpenAI chat completion. Text blocks make
 * the content, tool_use blocks the tool_calls (input serialized as the arguments JSON);
 * thinking and server-tool blocks have no Chat Completions counterpart and are left out.
 */
export function anthropicResponseToOpenAi(body: Buffer, clientModel: string): Buffer {
  const msg = parseJson(body, 'answer');
  let text: string | null = null;
  const calls: Json[] = [];
  for (const b of Array.isArray(msg.content) ? msg.content : []) {
    if (!isObject(b)) continue;
    if (b.type === 'text' && typeof b.text === 'string') text = (text ?? '') + b.text;
    else if (b.type === 'tool_use') calls.push({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } });
  }
  // OpenAI's content is null when the answer is only tool calls, a string otherwise.
  const message: Json = { role: 'assistant', content: text ?? (calls.length ? null : ''), refusal: null };
  if (calls.length) message.tool_calls = calls;
  const completion = {
    id: openAiIdFor(msg.id),
    object: 'chat.completion',
    created: nowSeconds(),
    model: clientModel,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finishReasonFor(msg.stop_reason) }],
    usage: openAiUsageOf(tokensFromAnthropic(msg.usage)),
  };
  return Buffer.from(JSON.stringify(completion));
}

/**
 * An OpenAI chat completion (the provider's 2xx body) as an Anthropic message: the content
 * (or refusal) as a text block, then each tool call as a tool_use block with its arguments
 * parsed into `input`. Only the first choice is read: translated requests ask for one.
 */
export function openAiResponseToAnthropic(body: Buffer, clientModel: string): Buffer {
  const completion = parseJson(body, 'answer');
  const choice = Array.isArray(completion.choices) && isObject(completion.choices[0]) ? completion.choices[0] : {};
  const message = isObject(choice.message) ? choice.message : {};
  const content: Json[] = [];
  if (typeof message.content === 'string' && message.content) content.push({ type: 'text', text: message.content });
  const refused = typeof message.refusal === 'string' && message.refusal !== '';
  if (refused) content.push({ type: 'text', text: message.refusal });
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls) {
      if (!isObject(call) || !isObject(call.function)) continue;
      content.push({ type: 'tool_use', id: anthropicToolId(call.id), name: call.function.name, input: parseArguments(call.function.arguments) });
    }
  } else if (isObject(message.function_call)) {
    content.push({ type: 'tool_use', id: `toolu_${randomId()}`, name: message.function_call.name, input: parseArguments(message.function_call.arguments) });
  }
  const out = {
    id: anthropicIdFor(completion.id),
    type: 'message',
    role: 'assistant',
    model: clientModel,
    content,
    // A structured-output refusal comes with finish_reason "stop": it is still a refusal.
    stop_reason: refused ? 'refusal' : stopReasonFor(choice.finish_reason),
    stop_sequence: null,
    usage: anthropicUsageOf(tokensFromOpenAi(completion.usage)),
  };
  return Buffer.from(JSON.stringify(out));
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

const MAX_MESSAGE = 2000;

/** The message and type of an error body in either shape (or of whatever a proxy answered). */
function readError(body: Buffer | string): { message: string; type?: string; param?: unknown; code?: unknown } {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { message: text.trim().slice(0, MAX_MESSAGE) || 'the fallback provider failed without an explanation' };
  }
  if (isObject(parsed)) {
    const e = parsed.error;
    // Anthropic {"type":"error","error":{"type","message"}}; OpenAI {"error":{"message","type","param","code"}}.
    if (isObject(e)) {
      return {
        message: typeof e.message === 'string' ? e.message : JSON.stringify(e.message ?? e),
        type: typeof e.type === 'string' ? e.type : undefined,
        param: e.param,
        code: e.code,
      };
    }
    // Some OpenAI-compatible servers: {"error":"..."} (Ollama) or {"message","type"} (vLLM).
    if (typeof e === 'string') return { message: e };
    if (typeof parsed.message === 'string') return { message: parsed.message, type: typeof parsed.type === 'string' ? parsed.type : undefined };
  }
  return { message: text.trim().slice(0, MAX_MESSAGE) };
}

/** OpenAI's error object: the Anthropic type (invalid_request_error, rate_limit_error...) is also OpenAI's vocabulary. */
export function openAiErrorObject(body: Buffer | string): Json {
  const e = readError(body);
  return { message: e.message, type: e.type ?? 'api_error', param: typeof e.param === 'string' ? e.param : null, code: typeof e.code === 'string' ? e.code : null };
}

const ANTHROPIC_ERROR_TYPES = new Set([
  'invalid_request_error',
  'authentication_error',
  'billing_error',
  'permission_error',
  'not_found_error',
  'request_too_large',
  'rate_limit_error',
  'timeout_error',
  'api_error',
  'overloaded_error',
]);

/** Anthropic's error object: OpenAI's types and codes in Anthropic's vocabulary. */
export function anthropicErrorObject(body: Buffer | string): Json {
  const e = readError(body);
  let type = e.type && ANTHROPIC_ERROR_TYPES.has(e.type) ? e.type : undefined;
  if (!type) {
    if (e.code === 'invalid_api_key') type = 'authentication_error';
    else if (e.type === 'insufficient_quota' || e.code === 'insufficient_quota') type = 'billing_error';
    else if (e.type === 'tokens' || e.type === 'requests' || e.code === 'rate_limit_exceeded') type = 'rate_limit_error';
    else if (e.type === 'server_error' || e.type === 'internal_error') type = 'api_error';
    else type = e.type ? 'invalid_request_error' : 'api_error';
  }
  return { type, message: e.message };
}

/** A provider's Anthropic error body as OpenAI's {"error":{message,type,param,code}}. The status stays. */
export function errorToOpenAi(body: Buffer): Buffer {
  return Buffer.from(JSON.stringify({ error: openAiErrorObject(body) }));
}

/** A provider's OpenAI error body as Anthropic's {"type":"error","error":{type,message}}. The status stays. */
export function errorToAnthropic(body: Buffer): Buffer {
  return Buffer.from(JSON.stringify({ type: 'error', error: anthropicErrorObject(body) }));
}
