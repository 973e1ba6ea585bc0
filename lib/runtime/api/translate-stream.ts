/**
 * Streamed answers across API shapes, one whole provider SSE event in (as SseSplitter cuts
 * them), zero or more whole client events out.
 *
 * Anthropic streams a message as message_start, then per content block content_block_start,
 * content_block_delta... and content_block_stop, then message_delta (stop_reason and the
 * cumulative usage) and message_stop; ping and error may come anywhere. Every event names
 * itself in an `event:` line, which the Anthropic SDK requires (it skips events without one).
 *
 * OpenAI streams `data:` lines only: chat.completion.chunk objects whose choices[0].delta
 * carries the role (first), content fragments, and tool_calls fragments keyed by index (id,
 * type and name on a call's first fragment, argument text after); the last choice chunk carries
 * finish_reason; with stream_options.include_usage a chunk with `choices: []` and the usage
 * follows (every earlier chunk then has `usage: null`); `data: [DONE]` ends the stream. An error
 * after the start is `data: {"error":{...}}`, which the OpenAI SDK raises.
 */
import { eventData, eventName } from '../sse';
import { anthropicToolId, isObject } from './translate-request';
import {
  anthropicErrorObject,
  anthropicIdFor,
  anthropicUsageOf,
  finishReasonFor,
  nowSeconds,
  openAiErrorObject,
  openAiIdFor,
  openAiUsageOf,
  stopReasonFor,
  tokensFromAnthropic,
  tokensFromOpenAi,
  type Tokens,
} from './translate-response';

type Json = Record<string, unknown>;

function parseData(event: Buffer): { data: string | null; json: Json | null } {
  const data = eventData(event);
  if (data === null) return { data, json: null };
  try {
    const parsed: unknown = JSON.parse(data);
    return { data, json: isObject(parsed) ? parsed : null };
  } catch {
    return { data, json: null };
  }
}

function dataEvent(payload: unknown): Buffer {
  return Buffer.from(`data: ${JSON.stringify(payload)}\n\n`);
}

const DONE = Buffer.from('data: [DONE]\n\n');

/** Where an Anthropic content block's deltas go in the OpenAI stream. */
type BlockTarget = { kind: 'text' } | { kind: 'tool'; index: number; argumentsSent: boolean } | { kind: 'ignored' };

/**
 * An Anthropic Messages stream as an OpenAI Chat Completions stream. Text deltas become content
 * deltas; each tool_use block becomes a tool call (its position among the tool calls is the
 * OpenAI index), its input_json_delta fragments the argument fragments; thinking and server-tool
 * blocks are left out. The finish_reason chunk goes out on message_delta; the usage chunk (when
 * the client asked for it) and [DONE] on message_stop, or on end() when the provider closed the
 * stream after message_delta without message_stop. A stream cut before message_delta gets no
 * finish and no [DONE] from end(): the integrator ends it with an error event, as for any cut.
 */
export class AnthropicStreamToOpenAi {
  private readonly clientModel: string;
  private readonly includeUsage: boolean;
  private id = '';
  private readonly created = nowSeconds();
  private started = false;
  private finished = false;
  private closed = false;
  private readonly blocks = new Map<number, BlockTarget>();
  private toolCount = 0;
  private tokens: Tokens = { input: 0, cacheRead: 0, cacheWrite: 0, output: 0 };

  constructor(options: { clientModel: string; includeUsage: boolean }) {
    this.clientModel = options.clientModel;
    this.includeUsage = options.includeUsage;
  }

  /** True once the stream was finished or ended with an error event: nothing more is owed. */
  get done(): boolean {
    return this.closed;
  }

  onEvent(event: Buffer): Buffer[] {
    if (this.closed) return [];
    const { json } = parseData(event);
    const type = eventName(event) ?? (typeof json?.type === 'string' ? json.type : undefined);
    if (!json || !type) return [];
    switch (type) {
      case 'message_start': {
        const message = isObject(json.message) ? json.message : {};
        this.id = openAiIdFor(message.id);
        this.tokens = tokensFromAnthropic(message.usage);
        return this.start();
      }
      case 'content_block_start':
        return this.blockStart(json);
      case 'content_block_delta':
        return this.blockDelta(json);
      case 'content_block_stop': {
        const target = this.blocks.get(Number(json.index));
        // A tool called without arguments streams no input_json_delta (or an empty one);
        // OpenAI's arguments are then "{}", never empty (clients JSON-parse them).
        if (target?.kind === 'tool' && !target.argumentsSent) {
          target.argumentsSent = true;
          return [this.chunk({ tool_calls: [{ index: target.index, function: { arguments: '{}' } }] })];
        }
        return [];
      }
      case 'message_delta': {
        this.updateUsage(json.usage);
        const delta = isObject(json.delta) ? json.delta : {};
        return [...this.start(), ...this.finish(finishReasonFor(delta.stop_reason))];
      }
      case 'message_stop':
        return [...this.start(), ...this.finish('stop'), ...this.close()];
      case 'error':
        this.closed = true;
        // Anthropic {"type":"error","error":{type,message}} as OpenAI's in-stream error.
        return [dataEvent({ error: openAiErrorObject(JSON.stringify(json)) })];
      default:
        return []; // ping, and event types added later
    }
  }

  end(): Buffer[] {
    if (this.closed || !this.finished) return [];
    return this.close();
  }

  private start(): Buffer[] {
    if (this.started) return [];
    this.started = true;
    if (!this.id) this.id = openAiIdFor(undefined);
    // OpenAI's first chunk: the role, with empty content.
    return [this.chunk({ role: 'assistant', content: '', refusal: null })];
  }

  private finish(reason: string): Buffer[] {
    if (this.finished) return [];
    this.finished = true;
    return [this.chunk({}, reason)];
  }

  private close(): Buffer[] {
    this.closed = true;
    const out: Buffer[] = [];
    if (this.includeUsage) {
      out.push(dataEvent({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.clientModel, choices: [], usage: openAiUsageOf(this.tokens) }));
    }
    out.push(DONE);
    return out;
  }

  /** message_delta usage is cumulative: present fields replace what message_start said. */
  private updateUsage(usage: unknown): void {
    if (!isObject(usage)) return;
    const t = tokensFromAnthropic(usage);
    if (usage.output_tokens != null) this.tokens.output = t.output;
    if (usage.input_tokens != null) this.tokens.input = t.input;
    if (usage.cache_read_input_tokens != null) this.tokens.cacheRead = t.cacheRead;
    if (usage.cache_creation_input_tokens != null) this.tokens.cacheWrite = t.cacheWrite;
    if (t.reasoning !== undefined) this.tokens.reasoning = t.reasoning;
  }

  private blockStart(json: Json): Buffer[] {
    const index = Number(json.index);
    const block = isObject(json.content_block) ? json.content_block : {};
    const out = this.start();
    if (block.type === 'text') {
      this.blocks.set(index, { kind: 'text' });
      if (typeof block.text === 'string' && block.text) out.push(this.chunk({ content: block.text }));
    } else if (block.type === 'tool_use') {
      const target: BlockTarget = { kind: 'tool', index: this.toolCount++, argumentsSent: false };
      this.blocks.set(index, target);
      // Anthropic starts a tool_use block with input {} and streams the input as JSON text;
      // should a server send the input whole here instead, it goes out as the arguments.
      const input = isObject(block.input) && Object.keys(block.input).length ? JSON.stringify(block.input) : '';
      if (input) target.argumentsSent = true;
      out.push(this.chunk({ tool_calls: [{ index: target.index, id: block.id, type: 'function', function: { name: block.name, arguments: input } }] }));
    } else {
      this.blocks.set(index, { kind: 'ignored' });
    }
    return out;
  }

  private blockDelta(json: Json): Buffer[] {
    const target = this.blocks.get(Number(json.index));
    const delta = isObject(json.delta) ? json.delta : {};
    if (!target || target.kind === 'ignored') return [];
    if (delta.type === 'text_delta' && target.kind === 'text' && typeof delta.text === 'string' && delta.text) {
      return [this.chunk({ content: delta.text })];
    }
    if (delta.type === 'input_json_delta' && target.kind === 'tool' && typeof delta.partial_json === 'string' && delta.partial_json) {
      target.argumentsSent = true;
      return [this.chunk({ tool_calls: [{ index: target.index, function: { arguments: delta.partial_json } }] })];
    }
    return []; // citations, thinking and signature deltas have no counterpart
  }

  private chunk(delta: Json, finishReason: string | null = null): Buffer {
    const chunk: Json = {
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.clientModel,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    };
    if (this.includeUsage) chunk.usage = null;
    return dataEvent(chunk);
  }
}

interface ToolState {
  /** Anthropic content block index, once the block was started. */
  block: number | null;
  id: string;
  name: string;
  /** Argument text received before the block could start (no name yet). */
  pending: string;
}

function anthropicEvent(type: string, data: Json): Buffer {
  return Buffer.from(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
}

/**
 * An OpenAI Chat Completions stream as an Anthropic Messages stream. The first chunk opens the
 * message (message_start); content opens a text block, each tool call (by its OpenAI index) a
 * tool_use block whose argument fragments become input_json_delta; a block is stopped when the
 * next one starts. OpenAI reports usage only at the end, so message_start says 0 input tokens and
 * message_delta carries the real counts: message_delta's usage is cumulative, and the SDK's
 * MessageStream overwrites input_tokens and the cache counts with message_delta's when present.
 * [DONE] (or end(), when finish_reason came but [DONE] did not) closes the open block and sends
 * message_delta and message_stop. A stream cut before finish_reason gets nothing from end().
 */
export class OpenAiStreamToAnthropic {
  private readonly clientModel: string;
  private started = false;
  private closed = false;
  private nextBlock = 0;
  /** The open content block and what it is. */
  private open: { index: number; kind: 'text' } | { index: number; kind: 'tool'; tool: ToolState } | null = null;
  private readonly tools = new Map<number, ToolState>();
  private stopReason: string | null = null;
  private refused = false;
  private tokens: Tokens = { input: 0, cacheRead: 0, cacheWrite: 0, output: 0 };

  constructor(options: { clientModel: string }) {
    this.clientModel = options.clientModel;
  }

  /** True once the stream was finished or ended with an error event: nothing more is owed. */
  get done(): boolean {
    return this.closed;
  }

  onEvent(event: Buffer): Buffer[] {
    if (this.closed) return [];
    const { data, json } = parseData(event);
    if (data === null) return []; // comments (keep-alives)
    if (data.trim() === '[DONE]') return this.finish();
    if (!json) return [];
    if (json.error !== undefined && json.error !== null) {
      this.closed = true;
      return [anthropicEvent('error', { error: anthropicErrorObject(JSON.stringify(json)) })];
    }
    const out = this.start(json.id);
    if (isObject(json.usage)) this.tokens = tokensFromOpenAi(json.usage);
    const choice = Array.isArray(json.choices) ? json.choices.find((c: unknown) => isObject(c) && (c.index ?? 0) === 0) : undefined;
    if (!isObject(choice)) return out;
    const delta = isObject(choice.delta) ? choice.delta : {};
    if (typeof delta.content === 'string' && delta.content) out.push(...this.text(delta.content));
    if (typeof delta.refusal === 'string' && delta.refusal) {
      this.refused = true;
      out.push(...this.text(delta.refusal));
    }
    if (Array.isArray(delta.tool_calls)) {
      for (const call of delta.tool_calls) {
        if (!isObject(call)) continue;
        const fn = isObject(call.function) ? call.function : {};
        out.push(...this.toolCall(typeof call.index === 'number' ? call.index : 0, call.id, fn.name, fn.arguments));
      }
    } else if (isObject(delta.function_call)) {
      // The deprecated function_call streams like one tool call.
      out.push(...this.toolCall(0, undefined, delta.function_call.name, delta.function_call.arguments));
    }
    if (typeof choice.finish_reason === 'string' && choice.finish_reason) {
      this.stopReason = this.refused ? 'refusal' : stopReasonFor(choice.finish_reason);
    }
    return out;
  }

  end(): Buffer[] {
    if (this.closed || this.stopReason === null) return [];
    return this.finish();
  }

  private start(openAiId: unknown): Buffer[] {
    if (this.started) return [];
    this.started = true;
    const message = {
      id: anthropicIdFor(openAiId),
      type: 'message',
      role: 'assistant',
      model: this.clientModel,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: anthropicUsageOf(this.tokens),
    };
    return [anthropicEvent('message_start', { message })];
  }

  private stopOpen(): Buffer[] {
    if (!this.open) return [];
    const index = this.open.index;
    this.open = null;
    return [anthropicEvent('content_block_stop', { index })];
  }

  private text(text: string): Buffer[] {
    const out: Buffer[] = [];
    if (this.open?.kind !== 'text') {
      out.push(...this.stopOpen());
      this.open = { index: this.nextBlock++, kind: 'text' };
      out.push(anthropicEvent('content_block_start', { index: this.open.index, content_block: { type: 'text', text: '' } }));
    }
    out.push(anthropicEvent('content_block_delta', { index: this.open.index, delta: { type: 'text_delta', text } }));
    return out;
  }

  private toolCall(index: number, id: unknown, name: unknown, args: unknown): Buffer[] {
    let tool = this.tools.get(index);
    if (!tool) {
      tool = { block: null, id: '', name: '', pending: '' };
      this.tools.set(index, tool);
    }
    if (typeof id === 'string' && id && !tool.id) tool.id = id;
    // The name comes whole (the OpenAI SDK replaces rather than appends it).
    if (typeof name === 'string' && name && !tool.name) tool.name = name;
    const fragment = typeof args === 'string' ? args : '';
    const out: Buffer[] = [];
    if (tool.block === null) {
      // The block can start once the name is known (OpenAI sends it on the first fragment).
      if (!tool.name) {
        tool.pending += fragment;
        return out;
      }
      out.push(...this.startTool(tool));
      if (tool.pending) out.push(this.inputDelta(tool, tool.pending));
      tool.pending = '';
    }
    if (fragment) {
      // Fragments of a call whose block is no longer open (a server interleaving calls) keep
      // their block index: the SDK accumulates deltas by index.
      out.push(this.inputDelta(tool, fragment));
    }
    return out;
  }

  private startTool(tool: ToolState): Buffer[] {
    const out = this.stopOpen();
    tool.block = this.nextBlock++;
    this.open = { index: tool.block, kind: 'tool', tool };
    const id = tool.id ? anthropicToolId(tool.id) : `toolu_${anthropicIdFor(undefined).slice(4)}`;
    out.push(anthropicEvent('content_block_start', { index: tool.block, content_block: { type: 'tool_use', id, name: tool.name, input: {} } }));
    return out;
  }

  private inputDelta(tool: ToolState, partial: string): Buffer {
    return anthropicEvent('content_block_delta', { index: tool.block, delta: { type: 'input_json_delta', partial_json: partial } });
  }

  private finish(): Buffer[] {
    if (this.closed) return [];
    const out = this.start(undefined);
    // Calls that never got a name still become blocks, so their results can be matched.
    for (const tool of this.tools.values()) {
      if (tool.block !== null) continue;
      tool.name ||= 'unknown';
      out.push(...this.startTool(tool));
      if (tool.pending) out.push(this.inputDelta(tool, tool.pending));
    }
    out.push(...this.stopOpen());
    this.closed = true;
    out.push(
      anthropicEvent('message_delta', {
        delta: { stop_reason: this.stopReason ?? (this.refused ? 'refusal' : 'end_turn'), stop_sequence: null },
        usage: anthropicUsageOf(this.tokens),
      }),
    );
    out.push(anthropicEvent('message_stop', {}));
    return out;
  }
}
