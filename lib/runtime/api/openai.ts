/**
 * OpenAI Chat Completions (`POST /v1/chat/completions`), also spoken by Azure OpenAI and
 * OpenAI-compatible servers (vLLM, Ollama).
 *
 * Usage: `prompt_tokens` includes cached tokens (`prompt_tokens_details.cached_tokens`); the
 * meter reports input = prompt - cached so the four token types never overlap.
 */
import type { TokenUsage } from '../../spec/prices';
import { eventData } from '../sse';
import { tokensForBytes } from '../metering/estimate';
import { INVALID_REQUEST, type ApiDialect, type RequestProblem, type StreamMeter } from './dialect';
import { count, lastObjectValue, stringValueBytes } from './json-scan';

const USAGE_KEY = Buffer.from('"usage"');
const CONTENT_VALUE = Buffer.from('"content":"');
const ARGUMENTS_VALUE = Buffer.from('"arguments":"');
const REFUSAL_VALUE = Buffer.from('"refusal":"');
const REASONING_VALUE = Buffer.from('"reasoning_content":"');

export function openAiUsage(usage: Record<string, unknown> | undefined): TokenUsage | null {
  if (!usage) return null;
  const prompt = count(usage, 'prompt_tokens');
  const details = usage.prompt_tokens_details as Record<string, unknown> | undefined;
  const cached = Math.min(count(details, 'cached_tokens'), prompt);
  return { input: prompt - cached, output: count(usage, 'completion_tokens'), cacheRead: cached, cacheWrite: 0 };
}

class OpenAiStreamMeter implements StreamMeter {
  reported: TokenUsage | null = null;
  complete = false;
  firstToken = false;
  private outputBytes = 0;
  private deltas = 0;

  constructor(private readonly dropInjectedUsage: boolean) {}

  get outputEstimate(): number {
    // Servers stream about one token per chunk; the text length is the better guide when larger.
    return Math.max(this.deltas, tokensForBytes(this.outputBytes));
  }

  onEvent(event: Buffer): boolean {
    const text = stringValueBytes(event, CONTENT_VALUE) + stringValueBytes(event, ARGUMENTS_VALUE) +
      stringValueBytes(event, REFUSAL_VALUE) + stringValueBytes(event, REASONING_VALUE);
    if (text > 0) {
      this.outputBytes += text;
      this.deltas++;
      this.firstToken = true;
    }
    const at = event.indexOf(USAGE_KEY);
    if (at < 0 || isNullValue(event, at + USAGE_KEY.length)) return true;
    const data = eventData(event);
    if (data === null) return true;
    let chunk: { usage?: Record<string, unknown>; choices?: unknown[] };
    try {
      chunk = JSON.parse(data);
    } catch {
      return true;
    }
    const usage = openAiUsage(chunk.usage);
    if (!usage) return true;
    this.reported = usage;
    this.complete = true;
    // The usage-only chunk we asked for on the client's behalf is not the client's to see.
    return !(this.dropInjectedUsage && Array.isArray(chunk.choices) && chunk.choices.length === 0);
  }
}

/** True when the JSON value after the key at `from` (":" and spaces first) is null. */
function isNullValue(buf: Buffer, from: number): boolean {
  let i = from;
  while (buf[i] === 32) i++;
  if (buf[i] !== 58) return true; // not a key after all: nothing to read
  i++;
  while (buf[i] === 32) i++;
  return buf[i] === 110; // n(ull)
}

function isPositiveInt(v: unknown): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1;
}

export const openAiDialect: ApiDialect = {
  shape: 'openai',

  checkRequest(body): RequestProblem | null {
    if (typeof body.model !== 'string' || !body.model) {
      return { message: 'you must provide a model parameter', param: 'model' };
    }
    const messages = body.messages;
    if (!Array.isArray(messages) || messages.length === 0) {
      return { message: "'messages' must be a non-empty array", param: 'messages' };
    }
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as { role?: unknown } | null;
      if (!m || typeof m !== 'object' || typeof m.role !== 'string') {
        return { message: `'messages[${i}]' must be an object with a string 'role'`, param: `messages[${i}]` };
      }
    }
    if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') {
      return { message: "'stream' must be a boolean", param: 'stream' };
    }
    if (body.stream_options != null && body.stream !== true) {
      return { message: "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param: 'stream_options' };
    }
    for (const field of ['max_tokens', 'max_completion_tokens', 'n'] as const) {
      if (body[field] != null && !isPositiveInt(body[field])) {
        return { message: `'${field}' must be an integer >= 1`, param: field };
      }
    }
    return null;
  },

  usageFromBody(body) {
    return openAiUsage(lastObjectValue(body, 'usage'));
  },

  newStreamMeter(dropInjectedUsage) {
    return new OpenAiStreamMeter(dropInjectedUsage);
  },

  errorBody(status, code, message, param) {
    const type = status === 400 && code === INVALID_REQUEST ? INVALID_REQUEST : code;
    return JSON.stringify({ error: { message, type, param: param ?? null, code } });
  },

  errorEvent(code, message) {
    return `data: ${JSON.stringify({ error: { message, type: code, param: null, code } })}\n\n`;
  },
};

/**
 * For a streamed request, makes sure the provider reports usage (stream_options.include_usage).
 * Returns the body to send and whether the extra usage event must be kept from the client.
 */
export function withStreamUsage(body: Record<string, unknown>): { body: Record<string, unknown>; injected: boolean } {
  if (body.stream !== true) return { body, injected: false };
  const options = body.stream_options as Record<string, unknown> | undefined | null;
  if (options && options.include_usage === true) return { body, injected: false };
  return { body: { ...body, stream_options: { ...(options ?? {}), include_usage: true } }, injected: true };
}
