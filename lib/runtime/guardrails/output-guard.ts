/**
 * Output guardrails: secrets (on by default) and PII (opt-in) in answers, whole or streamed,
 * including tool-call arguments. Matches are redacted, blocked or only reported, per rule.
 *
 * A whole answer without a secret costs one scan of its raw bytes for the secrets' literal
 * prefixes; only a hit (or PII rules being on) leads to parsing and rewriting it. Streamed
 * text goes through a redactor per choice (OpenAI) or content block (Anthropic), and per tool
 * call. A stream in which nothing is replaced reaches the client as the provider's own event
 * Buffers, in order: an event carrying text that may still be part of a match is held back
 * whole (with the events after it) until its redactor has released past its end. With the
 * secret rules that is only an event ending in what may begin a secret ("AK", "sk-", "eyJ",
 * "-----BEGIN ...", a key block not closed yet): ordinary words go out in the call that brings
 * them. With PII rules on, any partial word or number may still become an email address or a
 * card number, so an event is typically held until the next text event. Only an event whose
 * text a replacement changed is rewritten.
 */
import type { GuardrailsConfig } from '../../spec/policy';
import type { ApiShape } from '../../spec/providers';
import { eventData, eventName } from '../sse';
import { ASCII_ESCAPE, JsonTextRedactor, redactJsonText, redactText, StreamRedactor, type RedactionFinding, type TextRedactor } from './redactor';
import { outputRules, type OutputRule } from './rules';
import type { GuardDecision } from './types';

export interface StreamGuard {
  /**
   * One whole SSE event as the provider sent it (already metered by the caller). Returns the
   * events to send now, in the provider's order: events held back before, then this one unless
   * it is held back too. Each is the provider's Buffer, or a rewritten copy when a replacement
   * changed its text (an event left with no text and nothing else is dropped).
   */
  onEvent(event: Buffer): Buffer[];
  /** End of the stream (or a cut): the events still held back, their text redacted. */
  end(): Buffer[];
  /** Decisions made since the last call (the caller counts and audits each once). */
  takeDecisions(): GuardDecision[];
  /** Set once a block rule fired: the caller ends the stream with an error event. */
  readonly blocked: GuardDecision | null;
}

export class OutputGuard {
  /** false when no output rule is on: the caller skips all output work. */
  readonly active: boolean;
  private readonly rules: OutputRule[];
  /** The secrets' literal prefixes, for a whole body's raw bytes. */
  private readonly prefilter: RegExp | null;
  /** PII rules match digits and '@', which every JSON answer has: parse whenever they are on. */
  private readonly alwaysParse: boolean;

  constructor(config: GuardrailsConfig) {
    this.rules = outputRules(config);
    this.active = this.rules.length > 0;
    const secrets = this.rules.filter((r) => r.kind === 'secret');
    // A JSON escape of an ASCII character could spell a prefix, so it counts as a hit.
    this.prefilter = secrets.length ? new RegExp([...secrets.map((r) => r.trigger.source), ASCII_ESCAPE.source].join('|')) : null;
    this.alwaysParse = this.rules.some((r) => r.kind === 'pii');
  }

  /** A whole JSON response: returns the same Buffer object when nothing changed. */
  inspectBody(shape: ApiShape, body: Buffer): { body: Buffer; decisions: GuardDecision[]; blocked: GuardDecision | null } {
    if (!this.active || (!this.alwaysParse && !this.prefilter!.test(body.toString('latin1')))) {
      return { body, decisions: [], blocked: null };
    }
    const tally = new Tally();
    const text = body.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    let changed = false;
    if (parsed && typeof parsed === 'object') {
      changed = shape === 'openai' ? this.redactOpenAiBody(parsed as OpenAiBody, tally) : this.redactAnthropicBody(parsed as AnthropicBody, tally);
    } else {
      // Not JSON (an error page, a proxy's text): redact it as text.
      const r = redactText(text, this.rules);
      tally.add(r.findings);
      if (r.text !== text) return tally.result(Buffer.from(r.text));
      return tally.result(body);
    }
    return tally.result(changed ? Buffer.from(JSON.stringify(parsed)) : body);
  }

  newStream(shape: ApiShape): StreamGuard {
    return shape === 'openai' ? new OpenAiStreamGuard(this.rules) : new AnthropicStreamGuard(this.rules);
  }

  private redactOpenAiBody(body: OpenAiBody, tally: Tally): boolean {
    let changed = false;
    if (!Array.isArray(body.choices)) return false;
    for (const choice of body.choices) {
      const message = choice?.message;
      if (!message || typeof message !== 'object') continue;
      if (typeof message.content === 'string') {
        const r = redactText(message.content, this.rules);
        tally.add(r.findings);
        if (r.text !== message.content) {
          message.content = r.text;
          changed = true;
        }
      } else if (Array.isArray(message.content)) {
        for (const part of message.content) changed = this.redactField(part, 'text', tally, false) || changed;
      }
      if (Array.isArray(message.tool_calls)) {
        for (const call of message.tool_calls) changed = this.redactField(call?.function, 'arguments', tally, true) || changed;
      }
      changed = this.redactField(message.function_call, 'arguments', tally, true) || changed;
    }
    return changed;
  }

  private redactAnthropicBody(body: AnthropicBody, tally: Tally): boolean {
    let changed = false;
    if (!Array.isArray(body.content)) return false;
    for (const block of body.content) {
      if (!block || typeof block !== 'object') continue;
      // Thinking blocks are signed: changing them would make the API reject the next turn.
      if (block.type === 'text') changed = this.redactField(block, 'text', tally, false) || changed;
      else if (block.type === 'tool_use' && block.input !== undefined) {
        const json = JSON.stringify(block.input);
        const r = redactJsonText(json, this.rules);
        tally.add(r.findings);
        if (r.text !== json) {
          block.input = JSON.parse(r.text);
          changed = true;
        }
      }
    }
    return changed;
  }

  /** Redacts obj[key] if it is a string; true when it changed. */
  private redactField(obj: unknown, key: string, tally: Tally, json: boolean): boolean {
    if (!obj || typeof obj !== 'object') return false;
    const record = obj as Record<string, unknown>;
    const value = record[key];
    if (typeof value !== 'string') return false;
    const r = json ? redactJsonText(value, this.rules) : redactText(value, this.rules);
    tally.add(r.findings);
    if (r.text === value) return false;
    record[key] = r.text;
    return true;
  }
}

interface OpenAiBody {
  choices?: Array<{ message?: { content?: unknown; tool_calls?: Array<{ function?: unknown }>; function_call?: unknown } } | null>;
}

interface AnthropicBody {
  content?: Array<{ type?: string; text?: unknown; input?: unknown } | null>;
}

/** Turns redactor findings into decisions, one per rule per call. */
class Tally {
  private readonly counts = new Map<OutputRule, number>();

  add(findings: readonly RedactionFinding[]): void {
    for (const f of findings) this.counts.set(f.rule, (this.counts.get(f.rule) ?? 0) + f.count);
  }

  get size(): number {
    return this.counts.size;
  }

  take(): GuardDecision[] {
    const out = [...this.counts].map(([rule, count]) => outputDecision(rule, count));
    this.counts.clear();
    return out;
  }

  result(body: Buffer): { body: Buffer; decisions: GuardDecision[]; blocked: GuardDecision | null } {
    const decisions = this.take();
    return { body, decisions, blocked: decisions.find((d) => d.action === 'block') ?? null };
  }
}

function outputDecision(rule: OutputRule, count: number): GuardDecision {
  const what = rule.action === 'redact' ? 'redacted' : rule.action === 'block' ? 'answer blocked' : 'let through';
  return { direction: 'output', rule: rule.id, action: rule.action, reason: `${rule.name} found in the answer ${count === 1 ? 'once' : `${count} times`} (${what})`, count };
}

/** Parsed provider JSON, read defensively. */
type Json = Record<string, any>;

/**
 * Output of a text not sent yet: its original characters [from, to) and, when the redactor
 * changed them, what replaces them (null: the original characters themselves).
 */
interface Run {
  from: number;
  to: number;
  text: string | null;
}

/** The part of one text an event carries: characters [start, end) of the lane, at holder[key]. */
interface Piece {
  readonly lane: TextLane;
  readonly start: number;
  readonly end: number;
  readonly holder: Json;
  readonly key: string;
}

/**
 * One text of a stream (a choice's content, a tool call's arguments, a content block) through
 * its redactor. Positions count the text's original characters.
 */
class TextLane {
  /** Original characters pushed. */
  private pushed = 0;
  /** Original characters whose output is final: the redactor released past them. */
  resolved = 0;
  /** Output for [what the pieces taken so far covered, resolved), in order. */
  private readonly runs: Run[] = [];

  constructor(readonly redactor: TextRedactor) {}

  /** Pushes holder[key], a non-empty string; returns the piece the event carries. */
  push(holder: Json, key: string): Piece {
    const start = this.pushed;
    const text: string = holder[key];
    this.pushed += text.length;
    const edits = this.redactor.edits;
    this.record(this.redactor.push(text), this.redactor.edits !== edits);
    return { lane: this, start, end: this.pushed, holder, key };
  }

  /** End of the text: all of it is resolved. */
  flush(): void {
    const edits = this.redactor.edits;
    this.record(this.redactor.flush(), this.redactor.edits !== edits);
  }

  private record(out: string, changed: boolean): void {
    const from = this.resolved;
    const to = this.redactor.consumed;
    if (to === from) return;
    this.resolved = to;
    const runs = this.runs;
    const last = runs.length ? runs[runs.length - 1] : undefined;
    if (changed) runs.push({ from, to, text: out });
    else if (last && last.text === null) last.to = to;
    else runs.push({ from, to, text: null });
  }

  /**
   * What to send for a piece [start, end) (its original text `original`; the lane resolved past
   * `end`): null when that is the original text. Otherwise the output that falls in the piece;
   * a replacement goes out with the piece where the text it replaces ends.
   */
  take(start: number, end: number, original: string): string | null {
    const runs = this.runs;
    let out = '';
    let clean = true;
    while (runs.length) {
      const r = runs[0];
      if (r.from >= end) break;
      if (r.text === null) {
        // An unchanged run never starts before the piece: runs are cut where pieces end.
        out += original.slice(r.from - start, (r.to < end ? r.to : end) - start);
        if (r.to > end) {
          r.from = end;
          break;
        }
      } else {
        clean = false;
        if (r.to > end) break;
        out += r.text;
      }
      runs.shift();
    }
    return clean ? null : out;
  }
}

/** An event not sent yet, with the texts it carries and its parsed data (to rewrite it). */
interface Held {
  readonly event: Buffer;
  readonly pieces: Piece[] | null;
  readonly data?: Json;
  readonly name?: string;
}

/**
 * What the stream guards share: the redactors of one stream, their decisions, the block, and
 * the events held back. An event is held while text it carries may still be part of a match
 * (its lane has not resolved past it), and every event after it waits for it, so events go
 * out in the provider's order. An event goes out as the provider's own Buffer unless the
 * redactor changed text it carries; then it is rewritten with the output, and dropped if no
 * text is left in it and it carries nothing else.
 */
abstract class BaseStreamGuard implements StreamGuard {
  blocked: GuardDecision | null = null;
  private readonly tally = new Tally();
  private readonly decisions: GuardDecision[] = [];
  /** Every redactor of the stream, to collect findings from (including finished ones). */
  private readonly redactors: TextRedactor[] = [];
  /** Events not sent yet, in the provider's order, from queue[head]; that one waits for its text. */
  private queue: Held[] = [];
  private head = 0;

  constructor(protected readonly rules: readonly OutputRule[]) {}

  abstract onEvent(event: Buffer): Buffer[];

  /** Closes every text still open (the stream ends). */
  protected abstract closeAll(): void;
  /** The event's data, with text changed, as an event. */
  protected abstract rewrite(held: Held): Buffer;
  /** True when the event, its text gone, carries nothing a client needs. */
  protected abstract bare(held: Held): boolean;

  end(): Buffer[] {
    if (this.blocked) return [];
    this.closeAll();
    return this.settle(this.drain());
  }

  takeDecisions(): GuardDecision[] {
    return this.decisions.splice(0);
  }

  protected newLane(json: boolean): TextLane {
    const r = json ? new JsonTextRedactor(this.rules) : new StreamRedactor(this.rules);
    this.redactors.push(r);
    return new TextLane(r);
  }

  /** An event without text to redact: sent now unless events before it are held. */
  protected pass(event: Buffer): Buffer[] {
    if (this.head === this.queue.length) return [event];
    this.queue.push({ event, pieces: null });
    return [];
  }

  /** An event whose text went to its lanes (and the lanes it ends flushed): what can be sent now. */
  protected hold(held: Held): Buffer[] {
    this.queue.push(held);
    return this.settle(this.drain());
  }

  /** Sends the events from the head of the queue whose text is resolved. */
  private drain(): Buffer[] {
    const out: Buffer[] = [];
    const queue = this.queue;
    let head = this.head;
    while (head < queue.length) {
      const held = queue[head];
      if (held.pieces) {
        let ready = true;
        for (const p of held.pieces) if (p.lane.resolved < p.end) ready = false;
        if (!ready) break;
      }
      head++;
      const event = held.pieces ? this.resolve(held, held.pieces) : held.event;
      if (event) out.push(event);
    }
    if (head === queue.length) {
      queue.length = 0;
      head = 0;
    } else if (head > 64 && head * 2 > queue.length) {
      this.queue = queue.slice(head);
      head = 0;
    }
    this.head = head;
    return out;
  }

  /** The event as it goes out: its own Buffer, rewritten, or null (nothing left in it). */
  private resolve(held: Held, pieces: Piece[]): Buffer | null {
    let changed = false;
    let empty = true;
    for (const p of pieces) {
      const text = p.lane.take(p.start, p.end, p.holder[p.key]);
      if (text !== null) {
        p.holder[p.key] = text;
        changed = true;
      }
      if (p.holder[p.key] !== '') empty = false;
    }
    if (!changed) return held.event;
    return empty && this.bare(held) ? null : this.rewrite(held);
  }

  /** Records what the redactors found; returns `events`, or nothing once blocked. */
  private settle(events: Buffer[]): Buffer[] {
    for (const r of this.redactors) this.tally.add(r.takeFindings());
    if (this.tally.size > 0) {
      for (const d of this.tally.take()) {
        this.decisions.push(d);
        if (d.action === 'block' && !this.blocked) this.blocked = d;
      }
    }
    return this.blocked ? [] : events;
  }

  /** Flushes lanes whose text ended and forgets their redactors (their findings are collected first). */
  protected close(lanes: Iterable<TextLane>): void {
    for (const lane of lanes) {
      lane.flush();
      const r = lane.redactor;
      this.tally.add(r.takeFindings());
      const at = this.redactors.indexOf(r);
      if (at >= 0) this.redactors.splice(at, 1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// OpenAI: `data: {"choices":[{"index":0,"delta":{"content":"..."}}]}`

interface OpenAiChoiceState {
  content: TextLane | null;
  /** Per tool call index: the arguments' JSON text. */
  tools: Map<number, TextLane>;
}

const CONTENT_KEY = Buffer.from('"content"');
const ARGUMENTS_KEY = Buffer.from('"arguments"');
const FINISH_KEY = Buffer.from('"finish_reason"');
const TOOL_CALLS_KEY = Buffer.from('"tool_calls"');
const DONE = Buffer.from('[DONE]');

class OpenAiStreamGuard extends BaseStreamGuard {
  private readonly choices = new Map<number, OpenAiChoiceState>();

  onEvent(event: Buffer): Buffer[] {
    if (this.blocked) return [];
    const text = hasStringValue(event, CONTENT_KEY) || hasStringValue(event, ARGUMENTS_KEY);
    // A tool call's header (its arguments still "") may end a text that is held.
    const opens = !text && this.choices.size > 0 && event.indexOf(TOOL_CALLS_KEY) >= 0;
    if (!text && !opens && !hasNonNullValue(event, FINISH_KEY) && event.indexOf(DONE) < 0) return this.pass(event);
    const data = eventData(event);
    if (data === null) return this.pass(event);
    if (data.trim() === '[DONE]') {
      this.closeAll();
      return this.hold({ event, pieces: null });
    }
    let chunk: Json;
    try {
      chunk = JSON.parse(data);
    } catch {
      return this.pass(event);
    }
    if (!chunk || !Array.isArray(chunk.choices)) return this.pass(event);
    let pieces: Piece[] | null = null;
    for (const choice of chunk.choices as Json[]) {
      if (!choice || typeof choice !== 'object') continue;
      const index = typeof choice.index === 'number' ? choice.index : 0;
      const delta: Json | undefined = choice.delta && typeof choice.delta === 'object' ? choice.delta : undefined;
      let state = this.choices.get(index);
      if (delta && typeof delta.content === 'string' && delta.content !== '') {
        state ??= this.newChoice(index);
        state.content ??= this.newLane(false);
        (pieces ??= []).push(state.content.push(delta, 'content'));
      }
      if (delta && Array.isArray(delta.tool_calls)) {
        for (const call of delta.tool_calls as Json[]) {
          if (!call || typeof call !== 'object') continue;
          const k = typeof call.index === 'number' ? call.index : 0;
          const fn = call.function;
          // A choice writes its content, then its tool calls one after the other, each opened by
          // a header with its id: a text that is over is closed, so what it holds goes out now
          // rather than holding every later event of the choice until the finish.
          if (state) this.moveOn(state, k, typeof call.id === 'string' && call.id !== '');
          if (!fn || typeof fn !== 'object' || typeof fn.arguments !== 'string' || fn.arguments === '') continue;
          state ??= this.newChoice(index);
          let lane = state.tools.get(k);
          if (!lane) state.tools.set(k, (lane = this.newLane(true)));
          (pieces ??= []).push(lane.push(fn, 'arguments'));
        }
      }
      if (choice.finish_reason != null && state) {
        // The choice is done: what it held goes out before the event that says so.
        this.closeChoice(state);
        this.choices.delete(index);
      }
    }
    return this.hold({ event, pieces, data: chunk });
  }

  protected closeAll(): void {
    for (const index of [...this.choices.keys()].sort((a, b) => a - b)) this.closeChoice(this.choices.get(index)!);
    this.choices.clear();
  }

  protected rewrite(held: Held): Buffer {
    return Buffer.from(`data: ${JSON.stringify(held.data)}\n\n`);
  }

  protected bare(held: Held): boolean {
    return isBareTextChunk(held.data!);
  }

  private newChoice(index: number): OpenAiChoiceState {
    const state: OpenAiChoiceState = { content: null, tools: new Map() };
    this.choices.set(index, state);
    return state;
  }

  /** Tool call `call` is being written (`opened`: its header came): closes the content, and the other calls if it opened. */
  private moveOn(state: OpenAiChoiceState, call: number, opened: boolean): void {
    if (state.content) {
      this.close([state.content]);
      state.content = null;
    }
    if (!opened) return;
    for (const [k, lane] of state.tools) {
      if (k === call) continue;
      this.close([lane]);
      state.tools.delete(k);
    }
  }

  private closeChoice(state: OpenAiChoiceState): void {
    if (state.content) this.close([state.content]);
    this.close(state.tools.values());
  }
}

/** A chunk that, its text emptied, says nothing: no role, tool call id or name, finish, logprobs or usage. */
function isBareTextChunk(chunk: Json): boolean {
  if (chunk.usage != null) return false;
  for (const choice of chunk.choices as Json[]) {
    if (!choice || typeof choice !== 'object') continue;
    if (choice.finish_reason != null || choice.logprobs != null) return false;
    const delta = choice.delta;
    if (delta == null) continue;
    if (typeof delta !== 'object') return false;
    for (const key of Object.keys(delta)) {
      const value = delta[key];
      if (key !== 'tool_calls' || !Array.isArray(value)) {
        if (!isEmpty(value)) return false;
        continue;
      }
      for (const call of value) {
        if (!call || typeof call !== 'object') return false;
        for (const k of Object.keys(call)) {
          const v = call[k];
          if (k === 'index' || k === 'type') continue;
          if (k === 'function' && v && typeof v === 'object') {
            for (const f of Object.keys(v)) if (!isEmpty(v[f])) return false;
          } else if (!isEmpty(v)) return false;
        }
      }
    }
  }
  return true;
}

function isEmpty(value: unknown): boolean {
  return value === null || value === undefined || value === '';
}

// ---------------------------------------------------------------------------------------------
// Anthropic: `event: content_block_delta` with text_delta.text or input_json_delta.partial_json

interface AnthropicBlockState {
  lane: TextLane;
  json: boolean;
}

class AnthropicStreamGuard extends BaseStreamGuard {
  private readonly blocks = new Map<number, AnthropicBlockState>();

  onEvent(event: Buffer): Buffer[] {
    if (this.blocked) return [];
    const named = eventName(event);
    if (named !== undefined && named !== 'content_block_delta' && named !== 'content_block_stop' && named !== 'message_delta' && named !== 'message_stop') {
      return this.pass(event);
    }
    const data = eventData(event);
    if (data === null) return this.pass(event);
    let parsed: Json;
    try {
      parsed = JSON.parse(data);
    } catch {
      return this.pass(event);
    }
    if (!parsed || typeof parsed !== 'object') return this.pass(event);
    const type = named ?? (typeof parsed.type === 'string' ? parsed.type : undefined);
    const index = typeof parsed.index === 'number' ? parsed.index : 0;
    if (type === 'content_block_delta') {
      const delta: Json | undefined = parsed.delta && typeof parsed.delta === 'object' ? parsed.delta : undefined;
      let field: 'text' | 'partial_json' | null = null;
      if (delta?.type === 'text_delta' && typeof delta.text === 'string') field = 'text';
      else if (delta?.type === 'input_json_delta' && typeof delta.partial_json === 'string') field = 'partial_json';
      if (!field || delta![field] === '') return this.pass(event);
      const json = field === 'partial_json';
      let state = this.blocks.get(index);
      if (!state || state.json !== json) {
        if (state) this.close([state.lane]);
        state = { lane: this.newLane(json), json };
        this.blocks.set(index, state);
      }
      return this.hold({ event, pieces: [state.lane.push(delta!, field)], data: parsed, name: named });
    }
    if (type === 'content_block_stop') {
      const state = this.blocks.get(index);
      if (!state) return this.pass(event);
      this.blocks.delete(index);
      this.close([state.lane]);
      return this.hold({ event, pieces: null });
    }
    if (type === 'message_delta' || type === 'message_stop') {
      this.closeAll();
      return this.hold({ event, pieces: null });
    }
    return this.pass(event);
  }

  protected closeAll(): void {
    for (const index of [...this.blocks.keys()].sort((a, b) => a - b)) this.close([this.blocks.get(index)!.lane]);
    this.blocks.clear();
  }

  protected rewrite(held: Held): Buffer {
    return Buffer.from(`${held.name !== undefined ? `event: ${held.name}\n` : ''}data: ${JSON.stringify(held.data)}\n\n`);
  }

  /** A content_block_delta carries only its text. */
  protected bare(): boolean {
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Byte-level checks, so events without text are not parsed

/** True when `"key"` is followed (after optional spaces and a colon) by a non-empty string. */
function hasStringValue(buf: Buffer, key: Buffer): boolean {
  for (let at = buf.indexOf(key); at >= 0; at = buf.indexOf(key, at + key.length)) {
    let i = skipSpaces(buf, at + key.length);
    if (buf[i] !== 58 /* : */) continue;
    i = skipSpaces(buf, i + 1);
    if (buf[i] === 34 /* " */ && buf[i + 1] !== 34) return true;
  }
  return false;
}

/** True when `"key"` has a value other than null. */
function hasNonNullValue(buf: Buffer, key: Buffer): boolean {
  for (let at = buf.indexOf(key); at >= 0; at = buf.indexOf(key, at + key.length)) {
    let i = skipSpaces(buf, at + key.length);
    if (buf[i] !== 58) continue;
    i = skipSpaces(buf, i + 1);
    if (i < buf.length && buf[i] !== 110 /* n(ull) */) return true;
  }
  return false;
}

function skipSpaces(buf: Buffer, i: number): number {
  while (buf[i] === 32 || buf[i] === 9) i++;
  return i;
}
