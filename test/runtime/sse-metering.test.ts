/**
 * Streamed answers, split at any byte: the SSE splitter hands on whole events exactly as sent,
 * and the OpenAI and Anthropic stream meters report the provider's usage exactly once.
 * Also the byte-level JSON lookups the meters rely on, and the dialects' request checks and
 * error shapes.
 */
import fc from 'fast-check';
import { splitAt, splits as splitsOf, type Split } from '../support/splits';
import { anthropicDialect } from '../../lib/runtime/api/anthropic';
import type { ApiDialect, StreamMeter } from '../../lib/runtime/api/dialect';
import { count, lastObjectValue, stringValueBytes } from '../../lib/runtime/api/json-scan';
import { openAiDialect, withStreamUsage } from '../../lib/runtime/api/openai';
import { eventData, eventName, SseSplitter } from '../../lib/runtime/sse';
import type { TokenUsage } from '../../lib/spec/prices';
import {
  anthropicEvents,
  anthropicMessage,
  openAiCompletion,
  openAiEvents,
  type FakeToolCall,
  type FakeUsage,
  type Step,
} from '../support/fake-llm';

// ---- generators ---------------------------------------------------------------------------------

/** Text a model might stream, salted with bytes that could confuse a byte-level scanner. */
const tricky = fc.constantFrom(
  '{',
  '}',
  '"',
  '\\',
  '\\"',
  '"usage"',
  'x "usage',
  '"usage":{"prompt_tokens":999,"completion_tokens":999}',
  '"usage": null',
  '"content":"',
  '"text":"',
  '"arguments":"',
  '"type":"message_delta"',
  'data: [DONE]\n\n',
  'event: message_delta\ndata: {}\n\n',
  '\r\n\r\n',
  '\n\n',
  ' ',
  'é',
  '日本語',
  '😀',
  '\u2028',
);
const textArb = fc
  .array(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 12 }), tricky), { minLength: 1, maxLength: 16 })
  .map((parts) => parts.join(''))
  .filter((t) => t.length > 0);

const toolCallArb: fc.Arbitrary<FakeToolCall> = fc.record({
  id: fc.stringMatching(/^call_[A-Za-z0-9]{1,12}$/),
  name: fc.stringMatching(/^[a-z_][a-z0-9_]{0,20}$/),
  arguments: fc.dictionary(fc.string({ maxLength: 10 }), fc.oneof(fc.jsonValue({ maxDepth: 2 }), textArb), { maxKeys: 4 }),
});

const usageArb: fc.Arbitrary<FakeUsage> = fc.record({
  input: fc.nat(2_000_000),
  output: fc.nat(200_000),
  cacheRead: fc.nat(2_000_000),
  cacheWrite: fc.nat(2_000_000),
});

/** A step for the fake's stream generators: text or tool calls, with usage. */
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ text: textArb, usage: usageArb }),
  fc.record({ toolCalls: fc.array(toolCallArb, { minLength: 1, maxLength: 3 }), usage: usageArb }),
);

// ---- helpers ------------------------------------------------------------------------------------

const splitsArb: fc.Arbitrary<Split> = splitsOf(30);

interface Run {
  /** Events the meter let through, in order. */
  passed: Buffer[];
  /** Every event the splitter produced. */
  all: Buffer[];
  meter: StreamMeter;
  remainder: Buffer | null;
}

/** Pushes `pieces` through a splitter into a meter, the way the exchange forwards a stream. */
function run(dialect: ApiDialect, dropInjectedUsage: boolean, pieces: Buffer[]): Run {
  const splitter = new SseSplitter();
  const meter = dialect.newStreamMeter(dropInjectedUsage);
  const passed: Buffer[] = [];
  const all: Buffer[] = [];
  for (const piece of pieces) {
    splitter.push(piece, (event) => {
      const copy = Buffer.from(event);
      all.push(copy);
      if (meter.onEvent(event)) passed.push(copy);
    });
  }
  return { passed, all, meter, remainder: splitter.takeRemainder() };
}

const strings = (buffers: Buffer[]) => buffers.map((b) => b.toString('utf8'));
const crlf = (events: string[]) => events.map((e) => e.replace(/\n/g, '\r\n'));

const openAiBody = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } };
const anthropicBody = { model: 'claude-sonnet-4-5', max_tokens: 1024, messages: [{ role: 'user', content: 'hi' }], stream: true };

function expectedOpenAiUsage(u: FakeUsage): TokenUsage {
  return { input: u.input, output: u.output, cacheRead: u.cacheRead ?? 0, cacheWrite: 0 };
}

function expectedAnthropicUsage(u: FakeUsage): TokenUsage {
  return { input: u.input, output: u.output, cacheRead: u.cacheRead ?? 0, cacheWrite: u.cacheWrite ?? 0 };
}

/** Index of OpenAI's usage-only chunk (`choices: []`) in a generated stream. */
function openAiUsageIndex(events: string[]): number {
  return events.findIndex((e) => {
    const data = eventData(Buffer.from(e));
    if (!data || data === '[DONE]') return false;
    const chunk = JSON.parse(data);
    return Array.isArray(chunk.choices) && chunk.choices.length === 0;
  });
}

/** Byte offset at which event `index` starts in the joined stream. */
function offsetOf(events: string[], index: number): number {
  return Buffer.byteLength(events.slice(0, index).join(''));
}

// ---- SseSplitter --------------------------------------------------------------------------------

describe('SseSplitter', () => {
  test('arbitrary events with \\n, \\r\\n or mixed line endings come out whole, however split', () => {
    const line = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).filter((s) => !/[\r\n]/.test(s));
    const eol = fc.constantFrom('\n', '\r\n');
    const event = fc
      .tuple(fc.array(fc.tuple(line, eol), { minLength: 1, maxLength: 5 }), eol)
      .map(([lines, end]) => lines.map(([l, e]) => l + e).join('') + end);
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 12 }), splitsArb, (events, split) => {
        const bytes = Buffer.from(events.join(''));
        const splitter = new SseSplitter();
        const out: string[] = [];
        for (const piece of splitAt(bytes, split)) splitter.push(piece, (e) => out.push(e.toString('utf8')));
        expect(out).toEqual(events);
        expect(splitter.takeRemainder()).toBeNull();
      }),
      { numRuns: 300 },
    );
  });

  test('an unfinished event is held back and returned as the remainder', () => {
    const splitter = new SseSplitter();
    const out: string[] = [];
    splitter.push(Buffer.from('data: one\n\ndata: tw'), (e) => out.push(e.toString()));
    splitter.push(Buffer.from('o\n'), (e) => out.push(e.toString()));
    expect(out).toEqual(['data: one\n\n']);
    expect(splitter.takeRemainder()?.toString()).toBe('data: two\n');
    expect(splitter.takeRemainder()).toBeNull();
  });

  test('a boundary split across three pushes is found (\\r\\n | \\r | \\n)', () => {
    const splitter = new SseSplitter();
    const out: string[] = [];
    for (const piece of ['data: a\r\n', '\r', '\ndata: b\r\n\r', '\n']) splitter.push(Buffer.from(piece), (e) => out.push(e.toString()));
    expect(out).toEqual(['data: a\r\n\r\n', 'data: b\r\n\r\n']);
  });

  test('eventData joins data lines and strips one leading space; eventName reads the event line', () => {
    expect(eventData(Buffer.from('event: x\r\ndata: {"a":1}\r\ndata:second\r\n\r\n'))).toBe('{"a":1}\nsecond');
    expect(eventData(Buffer.from(': comment\n\n'))).toBeNull();
    expect(eventData(Buffer.from('data:  two spaces\n\n'))).toBe(' two spaces');
    expect(eventName(Buffer.from('event: message_delta\r\ndata: {}\r\n\r\n'))).toBe('message_delta');
    expect(eventName(Buffer.from('data: {}\n\n'))).toBeUndefined();
  });
});

// ---- OpenAI stream meter ------------------------------------------------------------------------

describe('OpenAI stream meter', () => {
  test.each([true, false])(
    'generated streams split anywhere: events intact, usage exact (dropInjectedUsage=%s)',
    (drop) => {
      fc.assert(
        fc.property(stepArb, fc.boolean(), splitsArb, (step, useCrlf, split) => {
          const raw = openAiEvents(openAiBody, step, 1);
          const events = useCrlf ? crlf(raw) : raw;
          const usageIndex = openAiUsageIndex(events);
          expect(usageIndex).toBeGreaterThan(0);
          const r = run(openAiDialect, drop, splitAt(Buffer.from(events.join('')), split));

          expect(strings(r.all)).toEqual(events);
          const expected = drop ? events.filter((_, i) => i !== usageIndex) : events;
          expect(strings(r.passed)).toEqual(expected);
          expect(Buffer.concat(r.passed).equals(Buffer.from(expected.join('')))).toBe(true);
          expect(r.remainder).toBeNull();

          expect(r.meter.reported).toEqual(expectedOpenAiUsage(step.usage!));
          expect(r.meter.complete).toBe(true);
          expect(r.meter.firstToken).toBe(true);
          expect(r.meter.outputEstimate).toBeGreaterThan(0);
        }),
        { numRuns: 150 },
      );
    },
  );

  test('a stream cut anywhere before its usage is complete=false, with a bounded estimate', () => {
    fc.assert(
      fc.property(stepArb, fc.boolean(), splitsArb, fc.double({ min: 0, max: 1, noNaN: true }), (step, drop, split, where) => {
        const events = openAiEvents(openAiBody, step, 1);
        const bytes = Buffer.from(events.join(''));
        const whole = run(openAiDialect, drop, [bytes]);
        const usageIndex = openAiUsageIndex(events);
        // The usage event's closing brace: a cut at or before it leaves the usage unreadable.
        const lastBrace = offsetOf(events, usageIndex) + Buffer.byteLength(events[usageIndex]) - 3;
        const cut = Math.floor(where * lastBrace);
        const r = run(openAiDialect, drop, splitAt(bytes.subarray(0, cut), split));
        expect(r.meter.complete).toBe(false);
        // The exchange hands the unfinished event to the meter at the end of a stream.
        if (r.remainder) r.meter.onEvent(r.remainder);
        expect(r.meter.complete).toBe(false);
        expect(r.meter.outputEstimate).toBeGreaterThanOrEqual(0);
        expect(r.meter.outputEstimate).toBeLessThanOrEqual(whole.meter.outputEstimate);
        // Whole events only, and in order: a prefix of the original stream.
        expect(strings(r.all)).toEqual(events.slice(0, r.all.length));
      }),
      { numRuns: 200 },
    );
  });

  test('usage: null in content chunks is not usage; a stream without usage reports none', () => {
    const events = openAiEvents({ ...openAiBody }, { text: 'one two three', noUsage: true }, 1);
    const r = run(openAiDialect, true, [Buffer.from(events.join(''))]);
    expect(r.meter.reported).toBeNull();
    expect(r.meter.complete).toBe(false);
    expect(r.meter.firstToken).toBe(true);
    expect(r.meter.outputEstimate).toBeGreaterThanOrEqual(3);
    expect(strings(r.passed)).toEqual(events);

    const withNulls = openAiEvents(openAiBody, { text: 'a b' }, 1);
    const meter = openAiDialect.newStreamMeter(true);
    for (const e of withNulls.slice(0, openAiUsageIndex(withNulls))) {
      expect(e).toContain('"usage":null');
      expect(meter.onEvent(Buffer.from(e))).toBe(true);
    }
    expect(meter.reported).toBeNull();
  });

  test('the role-only first chunk is not a first token', () => {
    const events = openAiEvents(openAiBody, { text: 'hello' }, 1);
    const meter = openAiDialect.newStreamMeter(false);
    meter.onEvent(Buffer.from(events[0]));
    expect(meter.firstToken).toBe(false);
    meter.onEvent(Buffer.from(events[1]));
    expect(meter.firstToken).toBe(true);
  });

  test('cached tokens are taken out of input', () => {
    const events = openAiEvents(openAiBody, { text: 'x', usage: { input: 10, output: 3, cacheRead: 90 } }, 1);
    const r = run(openAiDialect, false, [Buffer.from(events.join(''))]);
    expect(r.meter.reported).toEqual({ input: 10, output: 3, cacheRead: 90, cacheWrite: 0 });
  });

  test('withStreamUsage asks for usage only when the client did not', () => {
    expect(withStreamUsage({ model: 'm', stream: true })).toEqual({
      body: { model: 'm', stream: true, stream_options: { include_usage: true } },
      injected: true,
    });
    const asked = { model: 'm', stream: true, stream_options: { include_usage: true } };
    expect(withStreamUsage(asked)).toEqual({ body: asked, injected: false });
    expect(withStreamUsage({ model: 'm', stream: true, stream_options: { include_usage: false, x: 1 } })).toEqual({
      body: { model: 'm', stream: true, stream_options: { include_usage: true, x: 1 } },
      injected: true,
    });
    expect(withStreamUsage({ model: 'm' })).toEqual({ body: { model: 'm' }, injected: false });
  });
});

// ---- Anthropic stream meter ---------------------------------------------------------------------

describe('Anthropic stream meter', () => {
  test('generated streams split anywhere: events intact, usage exact', () => {
    fc.assert(
      fc.property(stepArb, fc.boolean(), fc.boolean(), splitsArb, (step, useCrlf, drop, split) => {
        const raw = anthropicEvents(anthropicBody, step, 1);
        const events = useCrlf ? crlf(raw) : raw;
        const r = run(anthropicDialect, drop, splitAt(Buffer.from(events.join('')), split));
        expect(strings(r.passed)).toEqual(events);
        expect(Buffer.concat(r.passed).equals(Buffer.from(events.join('')))).toBe(true);
        expect(r.remainder).toBeNull();
        expect(r.meter.reported).toEqual(expectedAnthropicUsage(step.usage!));
        expect(r.meter.complete).toBe(true);
        expect(r.meter.firstToken).toBe(true);
        expect(r.meter.outputEstimate).toBeGreaterThanOrEqual(step.usage!.output);
      }),
      { numRuns: 150 },
    );
  });

  test('events without an event: line are typed by their data', () => {
    fc.assert(
      fc.property(stepArb, splitsArb, (step, split) => {
        const events = anthropicEvents(anthropicBody, step, 1).map((e) => e.replace(/^event: [a-z_]+\n/, ''));
        const r = run(anthropicDialect, false, splitAt(Buffer.from(events.join('')), split));
        expect(strings(r.passed)).toEqual(events);
        expect(r.meter.reported).toEqual(expectedAnthropicUsage(step.usage!));
        expect(r.meter.complete).toBe(true);
        expect(r.meter.firstToken).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  test('a stream cut anywhere before message_delta is complete=false, with a bounded estimate', () => {
    fc.assert(
      fc.property(stepArb, splitsArb, fc.double({ min: 0, max: 1, noNaN: true }), (step, split, where) => {
        const events = anthropicEvents(anthropicBody, step, 1);
        const bytes = Buffer.from(events.join(''));
        const whole = run(anthropicDialect, false, [bytes]);
        const deltaIndex = events.findIndex((e) => e.startsWith('event: message_delta'));
        const lastBrace = offsetOf(events, deltaIndex) + Buffer.byteLength(events[deltaIndex]) - 3;
        const cut = Math.floor(where * lastBrace);
        const r = run(anthropicDialect, false, splitAt(bytes.subarray(0, cut), split));
        expect(r.meter.complete).toBe(false);
        if (r.remainder) r.meter.onEvent(r.remainder);
        expect(r.meter.complete).toBe(false);
        expect(r.meter.outputEstimate).toBeGreaterThanOrEqual(0);
        expect(r.meter.outputEstimate).toBeLessThanOrEqual(whole.meter.outputEstimate);
        expect(strings(r.all)).toEqual(events.slice(0, r.all.length));
        // Input arrives with message_start and is kept even though the stream was cut.
        const started = Buffer.byteLength(events[0]) <= cut;
        if (started) expect(r.meter.reported?.input).toBe(step.usage!.input);
      }),
      { numRuns: 200 },
    );
  });

  test('message_delta counts are cumulative and its input fields win when present', () => {
    const meter = anthropicDialect.newStreamMeter(false);
    const ev = (name: string, data: object) => Buffer.from(`event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`);
    meter.onEvent(ev('message_start', { message: { usage: { input_tokens: 100, cache_read_input_tokens: 5, cache_creation_input_tokens: 7, output_tokens: 1 } } }));
    expect(meter.reported).toEqual({ input: 100, output: 1, cacheRead: 5, cacheWrite: 7 });
    expect(meter.complete).toBe(false);
    meter.onEvent(ev('message_delta', { delta: {}, usage: { output_tokens: 20 } }));
    meter.onEvent(ev('message_delta', { delta: {}, usage: { output_tokens: 42, input_tokens: 120, cache_read_input_tokens: 6 } }));
    expect(meter.reported).toEqual({ input: 120, output: 42, cacheRead: 6, cacheWrite: 7 });
    expect(meter.complete).toBe(true);
  });
});

// ---- json-scan ----------------------------------------------------------------------------------

describe('lastObjectValue', () => {
  const usage = { prompt_tokens: 31, completion_tokens: 7, total_tokens: 38, prompt_tokens_details: { cached_tokens: 4 } };

  test('finds the usage object after content full of braces, quotes and the word "usage"', () => {
    const content = 'the "usage": {"prompt_tokens": 1} } { \\" and "usage":{"a":{"b":"}"}} "usage';
    const body = Buffer.from(JSON.stringify({ id: 'x', choices: [{ message: { content } }], usage }));
    expect(lastObjectValue(body, 'usage')).toEqual(usage);
  });

  test('skips a later "usage" that is not a key (a string ending in "usage)', () => {
    const body = Buffer.from(JSON.stringify({ usage, choices: [{ message: { content: 'a "usage' } }], note: '"usage"' }));
    expect(lastObjectValue(body, 'usage')).toEqual(usage);
  });

  test('strings inside the object with braces, escaped quotes and trailing backslashes', () => {
    const tricky = { a: '}}}', b: '{"x":', c: 'ends with a backslash\\', d: 'quote \\" brace }', n: 3 };
    const body = Buffer.from(`{"usage" :  ${JSON.stringify(tricky)}, "z": 1}`);
    expect(lastObjectValue(body, 'usage')).toEqual(tricky);
  });

  test('undefined when absent, null, not an object, or unbalanced', () => {
    expect(lastObjectValue(Buffer.from('{"choices":[]}'), 'usage')).toBeUndefined();
    expect(lastObjectValue(Buffer.from('{"usage":null}'), 'usage')).toBeUndefined();
    expect(lastObjectValue(Buffer.from('{"usage":5}'), 'usage')).toBeUndefined();
    expect(lastObjectValue(Buffer.from('{"usage":{"prompt_tokens":1'), 'usage')).toBeUndefined();
    expect(lastObjectValue(Buffer.from('"usage"'), 'usage')).toBeUndefined();
  });

  test('property: the usage object written last in any JSON is found exactly', () => {
    const usageValue = fc.dictionary(
      fc.string({ maxLength: 8 }).filter((k) => k !== 'usage' && k !== '__proto__'),
      fc.oneof(fc.nat(), fc.string(), fc.dictionary(fc.string({ maxLength: 5 }).filter((k) => k !== 'usage' && k !== '__proto__'), fc.nat(), { maxKeys: 3 })),
      { maxKeys: 5 },
    );
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 3 }), fc.oneof(fc.string(), textArb), usageValue, (before, content, u) => {
        const body = Buffer.from(JSON.stringify({ before, content, usage: u }));
        expect(lastObjectValue(body, 'usage')).toEqual(u);
      }),
      { numRuns: 300 },
    );
  });
});

describe('stringValueBytes', () => {
  const CONTENT = Buffer.from('"content":"');

  test('counts escaped bytes as written, summed over occurrences', () => {
    const a = 'say "hi" {usage}';
    const b = 'back\\slash "content":"x" 😀';
    const event = Buffer.from(`data: ${JSON.stringify({ choices: [{ delta: { content: a } }, { delta: { content: b } }] })}\n\n`);
    const written = (s: string) => Buffer.byteLength(JSON.stringify(s)) - 2;
    expect(stringValueBytes(event, CONTENT)).toBe(written(a) + written(b));
  });

  test('0 when the key is absent or not a string', () => {
    expect(stringValueBytes(Buffer.from('{"content":null}'), CONTENT)).toBe(0);
    expect(stringValueBytes(Buffer.from('{"role":"assistant"}'), CONTENT)).toBe(0);
    expect(stringValueBytes(Buffer.from('{"content":""}'), CONTENT)).toBe(0);
  });

  test('property: equals the written length of every content string, whatever they contain', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), textArb), { maxLength: 5 }), (parts) => {
        const event = Buffer.from(JSON.stringify({ choices: parts.map((content, index) => ({ index, delta: { content, role: 'assistant' } })) }));
        const expected = parts.reduce((sum, s) => sum + Buffer.byteLength(JSON.stringify(s)) - 2, 0);
        expect(stringValueBytes(event, CONTENT)).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });

  test('count reads non-negative integers only', () => {
    const obj = { a: 5, b: -3, c: 'seven', d: 2.9, e: Infinity, f: NaN, g: null };
    expect(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'missing'].map((k) => count(obj, k))).toEqual([5, 0, 0, 2, 0, 0, 0, 0]);
    expect(count(undefined, 'a')).toBe(0);
  });
});

// ---- dialects -----------------------------------------------------------------------------------

describe('usage from whole bodies', () => {
  test('OpenAI: input excludes cached tokens', () => {
    const body = Buffer.from(JSON.stringify(openAiCompletion({ model: 'gpt-4o' }, { text: 'a "usage": {} text', usage: { input: 20, output: 7, cacheRead: 100 } }, 1)));
    expect(openAiDialect.usageFromBody(body)).toEqual({ input: 20, output: 7, cacheRead: 100, cacheWrite: 0 });
    expect(openAiDialect.usageFromBody(Buffer.from(JSON.stringify(openAiCompletion({}, { noUsage: true }, 1))))).toBeNull();
  });

  test('Anthropic: the four token types as reported', () => {
    const body = Buffer.from(JSON.stringify(anthropicMessage({}, { text: '"usage":{"input_tokens":1}', usage: { input: 3, output: 4, cacheRead: 5, cacheWrite: 6 } }, 1)));
    expect(anthropicDialect.usageFromBody(body)).toEqual({ input: 3, output: 4, cacheRead: 5, cacheWrite: 6 });
    expect(anthropicDialect.usageFromBody(Buffer.from(JSON.stringify(anthropicMessage({}, { noUsage: true }, 1))))).toBeNull();
  });
});

describe('OpenAI checkRequest', () => {
  const ok = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

  test('a valid request passes', () => {
    expect(openAiDialect.checkRequest(ok)).toBeNull();
    expect(openAiDialect.checkRequest({ ...ok, stream: true, stream_options: { include_usage: true }, max_tokens: 5, n: 1 })).toBeNull();
    expect(openAiDialect.checkRequest({ ...ok, stream: null, max_completion_tokens: null })).toBeNull();
  });

  test.each<[string, Record<string, unknown>, string]>([
    ['no model', { messages: ok.messages }, 'model'],
    ['empty model', { ...ok, model: '' }, 'model'],
    ['messages missing', { model: 'm' }, 'messages'],
    ['messages empty', { ...ok, messages: [] }, 'messages'],
    ['messages not an array', { ...ok, messages: 'hi' }, 'messages'],
    ['a message without role', { ...ok, messages: [{ role: 'user', content: 'a' }, { content: 'b' }] }, 'messages[1]'],
    ['a null message', { ...ok, messages: [null] }, 'messages[0]'],
    ['stream not a boolean', { ...ok, stream: 'yes' }, 'stream'],
    ['stream_options without stream', { ...ok, stream_options: { include_usage: true } }, 'stream_options'],
    ['max_tokens 0', { ...ok, max_tokens: 0 }, 'max_tokens'],
    ['max_completion_tokens fractional', { ...ok, max_completion_tokens: 1.5 }, 'max_completion_tokens'],
    ['n negative', { ...ok, n: -1 }, 'n'],
  ])('%s is rejected with param %s', (_name, body, param) => {
    const problem = openAiDialect.checkRequest(body);
    expect(problem).not.toBeNull();
    expect(problem!.param).toBe(param);
    expect(problem!.message.length).toBeGreaterThan(0);
  });
});

describe('Anthropic checkRequest', () => {
  const ok = { model: 'claude-sonnet-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] };

  test('a valid request passes', () => {
    expect(anthropicDialect.checkRequest(ok)).toBeNull();
    expect(anthropicDialect.checkRequest({ ...ok, stream: true, messages: [...ok.messages, { role: 'assistant', content: 'x' }] })).toBeNull();
  });

  test.each<[string, Record<string, unknown>, string]>([
    ['no model', { max_tokens: 1, messages: ok.messages }, 'model'],
    ['no max_tokens', { model: 'm', messages: ok.messages }, 'max_tokens'],
    ['max_tokens 0', { ...ok, max_tokens: 0 }, 'max_tokens'],
    ['max_tokens fractional', { ...ok, max_tokens: 2.5 }, 'max_tokens'],
    ['messages empty', { ...ok, messages: [] }, 'messages'],
    ['system role in messages', { ...ok, messages: [{ role: 'system', content: 'x' }] }, 'messages.0.role'],
    ['second message without role', { ...ok, messages: [ok.messages[0], {}] }, 'messages.1.role'],
    ['stream not a boolean', { ...ok, stream: 1 }, 'stream'],
  ])('%s is rejected with param %s', (_name, body, param) => {
    const problem = anthropicDialect.checkRequest(body);
    expect(problem).not.toBeNull();
    expect(problem!.param).toBe(param);
    expect(problem!.message).toContain(param.split('.')[0]);
  });
});

describe('error shapes', () => {
  test('OpenAI errorBody: type and code both set to our code, param or null', () => {
    expect(JSON.parse(openAiDialect.errorBody(502, 'upstream_unavailable', 'no provider answered'))).toEqual({
      error: { message: 'no provider answered', type: 'upstream_unavailable', param: null, code: 'upstream_unavailable' },
    });
    expect(JSON.parse(openAiDialect.errorBody(400, 'invalid_request_error', 'bad', 'messages'))).toEqual({
      error: { message: 'bad', type: 'invalid_request_error', param: 'messages', code: 'invalid_request_error' },
    });
    expect(JSON.parse(openAiDialect.errorBody(400, 'model_not_priced', 'no price', 'model'))).toEqual({
      error: { message: 'no price', type: 'model_not_priced', param: 'model', code: 'model_not_priced' },
    });
  });

  test('Anthropic errorBody: {"type":"error","error":{"type":code,"message"}}', () => {
    expect(JSON.parse(anthropicDialect.errorBody(504, 'upstream_timeout', 'too slow', 'ignored'))).toEqual({
      type: 'error',
      error: { type: 'upstream_timeout', message: 'too slow' },
    });
  });

  test('error events are whole SSE events in the API shape', () => {
    const split = (text: string) => {
      const out: Buffer[] = [];
      const splitter = new SseSplitter();
      splitter.push(Buffer.from(text), (e) => out.push(Buffer.from(e)));
      expect(splitter.takeRemainder()).toBeNull();
      return out;
    };
    const [openai] = split(openAiDialect.errorEvent('upstream_unavailable', 'cut'));
    expect(eventName(openai)).toBeUndefined();
    expect(JSON.parse(eventData(openai)!)).toEqual({ error: { message: 'cut', type: 'upstream_unavailable', param: null, code: 'upstream_unavailable' } });

    const [anthropic] = split(anthropicDialect.errorEvent('upstream_timeout', 'stalled'));
    expect(eventName(anthropic)).toBe('error');
    expect(JSON.parse(eventData(anthropic)!)).toEqual({ type: 'error', error: { type: 'upstream_timeout', message: 'stalled' } });
  });

  test('messages with quotes and newlines stay valid JSON', () => {
    const message = 'line1\nline2 "quoted" \\ done';
    expect(JSON.parse(openAiDialect.errorBody(502, 'x', message)).error.message).toBe(message);
    expect(JSON.parse(anthropicDialect.errorBody(502, 'x', message)).error.message).toBe(message);
    const [event] = (() => {
      const out: Buffer[] = [];
      new SseSplitter().push(Buffer.from(anthropicDialect.errorEvent('x', message)), (e) => out.push(Buffer.from(e)));
      return out;
    })();
    expect(JSON.parse(eventData(event)!).error.message).toBe(message);
  });
});
