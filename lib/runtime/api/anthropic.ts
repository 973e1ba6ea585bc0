/**
 * Anthropic Messages (`POST /v1/messages`).
 *
 * Usage: `input_tokens` excludes cache reads and writes, which come separately
 * (`cache_read_input_tokens`, `cache_creation_input_tokens`). A stream reports input in
 * `message_start` and the cumulative output (and, lately, final input) in `message_delta`.
 */
import type { TokenUsage } from '../../spec/prices';
import { eventData, eventName } from '../sse';
import { tokensForBytes } from '../metering/estimate';
import type { ApiDialect, RequestProblem, StreamMeter } from './dialect';
import { count, lastObjectValue, stringValueBytes } from './json-scan';

const TEXT_VALUE = Buffer.from('"text":"');
const JSON_VALUE = Buffer.from('"partial_json":"');
const THINKING_VALUE = Buffer.from('"thinking":"');
const TYPE_PREFIX = Buffer.from('"type":"');

export function anthropicUsage(usage: Record<string, unknown> | undefined): TokenUsage | null {
  if (!usage) return null;
  return {
    input: count(usage, 'input_tokens'),
    output: count(usage, 'output_tokens'),
    cacheRead: count(usage, 'cache_read_input_tokens'),
    cacheWrite: count(usage, 'cache_creation_input_tokens'),
  };
}

class AnthropicStreamMeter implements StreamMeter {
  reported: TokenUsage | null = null;
  complete = false;
  firstToken = false;
  private outputBytes = 0;

  get outputEstimate(): number {
    return Math.max(tokensForBytes(this.outputBytes), this.reported?.output ?? 0);
  }

  onEvent(event: Buffer): boolean {
    const type = eventName(event) ?? dataType(event);
    if (type === 'content_block_delta') {
      const text = stringValueBytes(event, TEXT_VALUE) + stringValueBytes(event, JSON_VALUE) + stringValueBytes(event, THINKING_VALUE);
      this.outputBytes += text;
      this.firstToken = true;
    } else if (type === 'message_start' || type === 'message_delta') {
      const data = eventData(event);
      if (data === null) return true;
      let parsed: { message?: { usage?: Record<string, unknown> }; usage?: Record<string, unknown> };
      try {
        parsed = JSON.parse(data);
      } catch {
        return true;
      }
      if (type === 'message_start') {
        const usage = parsed.message?.usage;
        if (usage && 'input_tokens' in usage) this.reported = anthropicUsage(usage);
      } else if (parsed.usage && 'output_tokens' in parsed.usage) {
        // message_delta counts are cumulative; input fields appear there only in newer API versions.
        const prior = this.reported;
        const u = parsed.usage;
        this.reported = {
          input: 'input_tokens' in u ? count(u, 'input_tokens') : (prior?.input ?? 0),
          output: count(u, 'output_tokens'),
          cacheRead: 'cache_read_input_tokens' in u ? count(u, 'cache_read_input_tokens') : (prior?.cacheRead ?? 0),
          cacheWrite: 'cache_creation_input_tokens' in u ? count(u, 'cache_creation_input_tokens') : (prior?.cacheWrite ?? 0),
        };
        this.complete = true;
      }
    }
    return true;
  }
}

/** The `type` of an event's JSON data, for servers that send no `event:` line. */
function dataType(event: Buffer): string | undefined {
  const at = event.indexOf(TYPE_PREFIX);
  if (at < 0) return undefined;
  const start = at + TYPE_PREFIX.length;
  const end = event.indexOf(34, start);
  return end < 0 ? undefined : event.toString('latin1', start, end);
}

export const anthropicDialect: ApiDialect = {
  shape: 'anthropic',

  checkRequest(body): RequestProblem | null {
    if (typeof body.model !== 'string' || !body.model) return { message: 'model: Field required', param: 'model' };
    const max = body.max_tokens;
    if (typeof max !== 'number' || !Number.isInteger(max) || max < 1) {
      return { message: 'max_tokens: Field required (an integer >= 1)', param: 'max_tokens' };
    }
    const messages = body.messages;
    if (!Array.isArray(messages) || messages.length === 0) {
      return { message: 'messages: at least one message is required', param: 'messages' };
    }
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as { role?: unknown } | null;
      if (!m || typeof m !== 'object' || (m.role !== 'user' && m.role !== 'assistant')) {
        return { message: `messages.${i}.role: must be "user" or "assistant"`, param: `messages.${i}.role` };
      }
    }
    if (body.stream !== undefined && typeof body.stream !== 'boolean') return { message: 'stream: must be a boolean', param: 'stream' };
    return null;
  },

  usageFromBody(body) {
    return anthropicUsage(lastObjectValue(body, 'usage'));
  },

  newStreamMeter() {
    return new AnthropicStreamMeter();
  },

  errorBody(_status, code, message) {
    return JSON.stringify({ type: 'error', error: { type: code, message } });
  },

  errorEvent(code, message) {
    return `event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: code, message } })}\n\n`;
  },
};

