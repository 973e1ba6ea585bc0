/**
 * Output guardrails on whole answers and on streams as the providers send them: secrets are
 * redacted by default and PII on request, in text and in tool-call arguments; a secret split
 * across events at any point never reaches the client; events without text pass through as
 * they are; per-rule actions (block, warn, off) are honoured.
 */
import fc from 'fast-check';
import { GuardrailsSchema, type GuardrailsConfig } from '../../lib/spec/policy';
import { OutputGuard, type StreamGuard } from '../../lib/runtime/guardrails/output-guard';
import { redactJsonText, redactText } from '../../lib/runtime/guardrails/redactor';
import { outputRules } from '../../lib/runtime/guardrails/rules';
import { eventData, eventName } from '../../lib/runtime/sse';
import { anthropicEvents, anthropicMessage, openAiCompletion, openAiEvents } from '../support/fake-llm';
import { splitAt, splits, type Split } from '../support/splits';

const config = (c: Record<string, unknown> = {}): GuardrailsConfig => GuardrailsSchema.parse(c);

// Fake credentials, assembled so the file itself holds none verbatim.
const AWS_KEY = 'AKIA' + 'IOSFODNN7EXAMPLE';
const ANTHROPIC_KEY = 'sk-ant-' + 'api03-' + 'Xy7kQ2mN8pR4tV6wZ1bC3dF5gH9jK0lM2nP4qS6uW8yA1cE3gI5kO7sU9_-AA';
const GITHUB_TOKEN = 'gh' + 'p_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8';
const JWT =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9' + '.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUgRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ' + '.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
const PRIVATE_KEY = [
  '-----BEGIN OPENSSH PRIVATE KEY-----',
  'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
  'QyNTUxOQAAACDH2wY7VtWJ8pQZ9s3hN5kXr4mPq2LbT8cF1gE6dA0oYwAAAJgqN7pUKje6',
  '-----END OPENSSH PRIVATE KEY-----',
].join('\n');
const SECRETS = [AWS_KEY, ANTHROPIC_KEY, JWT, PRIVATE_KEY];
/** Pieces of the secrets distinctive enough that finding one in the output means a leak. */
const LEAK_MARKERS = ['IOSFODNN', 'Xy7kQ2mN', 'uW8yA1cE', 'eyJhbGci', 'SflKxwRJ', 'Q4fwpMeJ', 'b3BlbnNz', 'QyNTUxOQ', 'H2wY7VtW'];

const OPENAI_REQUEST = { model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true } };
const ANTHROPIC_REQUEST = { model: 'claude-sonnet-4-5', max_tokens: 100, stream: true };

function piecesOf(text: string, split: Split): string[] {
  return splitAt(Buffer.from(text, 'latin1'), split).map((b) => b.toString('latin1'));
}

/** The fake provider's OpenAI stream for `text`, its content cut into the given pieces. */
function openAiStream(pieces: readonly string[]): Buffer[] {
  const events = openAiEvents(OPENAI_REQUEST, { text: 'PLACEHOLDER' }, 1);
  const [role, content, ...rest] = events;
  return [role, ...pieces.map((p) => content.replace('"PLACEHOLDER"', JSON.stringify(p))), ...rest].map((e) => Buffer.from(e));
}

/** The fake provider's Anthropic stream for `text`, its text cut into the given pieces. */
function anthropicStream(pieces: readonly string[]): Buffer[] {
  const events = anthropicEvents(ANTHROPIC_REQUEST, { text: 'PLACEHOLDER' }, 1);
  const at = events.findIndex((e) => e.includes('PLACEHOLDER'));
  const delta = events[at];
  return [...events.slice(0, at), ...pieces.map((p) => delta.replace('"PLACEHOLDER"', JSON.stringify(p))), ...events.slice(at + 1)].map((e) => Buffer.from(e));
}

function run(guard: StreamGuard, events: readonly Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const e of events) out.push(...guard.onEvent(e));
  out.push(...guard.end());
  return out;
}

interface OpenAiView {
  text: Map<number, string>;
  args: Map<string, string>;
  /** Position (in events) of each choice's finish_reason, and of [DONE]. */
  finishAt: Map<number, number>;
  doneAt: number;
  lastTextAt: Map<number, number>;
}

/** What an OpenAI client makes of the events. */
function openAiView(events: readonly Buffer[]): OpenAiView {
  const view: OpenAiView = { text: new Map(), args: new Map(), finishAt: new Map(), doneAt: -1, lastTextAt: new Map() };
  events.forEach((e, i) => {
    const data = eventData(e)!;
    if (data === '[DONE]') {
      view.doneAt = i;
      return;
    }
    for (const c of JSON.parse(data).choices) {
      if (typeof c.delta?.content === 'string' && c.delta.content) {
        view.text.set(c.index, (view.text.get(c.index) ?? '') + c.delta.content);
        view.lastTextAt.set(c.index, i);
      }
      for (const t of c.delta?.tool_calls ?? []) {
        const key = `${c.index}/${t.index}`;
        if (t.function?.arguments) {
          view.args.set(key, (view.args.get(key) ?? '') + t.function.arguments);
          view.lastTextAt.set(c.index, i);
        }
      }
      if (c.finish_reason) view.finishAt.set(c.index, i);
    }
  });
  return view;
}

/** What an Anthropic client makes of the events: text or JSON per block, and where each block stopped. */
function anthropicView(events: readonly Buffer[]): { blocks: Map<number, string>; stopAt: Map<number, number>; lastDeltaAt: Map<number, number>; names: string[] } {
  const blocks = new Map<number, string>();
  const stopAt = new Map<number, number>();
  const lastDeltaAt = new Map<number, number>();
  const names: string[] = [];
  events.forEach((e, i) => {
    const name = eventName(e)!;
    names.push(name);
    const data = JSON.parse(eventData(e)!);
    if (name === 'content_block_delta') {
      const piece = data.delta.text ?? data.delta.partial_json;
      blocks.set(data.index, (blocks.get(data.index) ?? '') + piece);
      lastDeltaAt.set(data.index, i);
    } else if (name === 'content_block_stop') {
      stopAt.set(data.index, i);
    }
  });
  return { blocks, stopAt, lastDeltaAt, names };
}


/** The text an event carries (content, arguments, text or partial_json), '' for none; null when it carries none at all. */
function textOf(event: Buffer, api: 'openai' | 'anthropic'): string | null {
  const data = eventData(event);
  if (data === null || data === '[DONE]') return null;
  const parsed = JSON.parse(data);
  if (api === 'anthropic') {
    if (parsed.type !== 'content_block_delta') return null;
    const piece = parsed.delta.text ?? parsed.delta.partial_json;
    return typeof piece === 'string' ? piece : null;
  }
  let text: string | null = null;
  for (const c of parsed.choices ?? []) {
    if (typeof c.delta?.content === 'string') text = (text ?? '') + c.delta.content;
    for (const t of c.delta?.tool_calls ?? []) if (typeof t.function?.arguments === 'string') text = (text ?? '') + t.function.arguments;
  }
  return text;
}

/**
 * What the guard may do to a stream: events carrying no text go out as the same Buffers, in
 * the same order; no event is added; an event is rewritten only to change its text, and an
 * Anthropic delta or a bare OpenAI text chunk is never sent with empty text.
 */
function expectShape(input: readonly Buffer[], output: readonly Buffer[], api: 'openai' | 'anthropic'): void {
  expect(output.length).toBeLessThanOrEqual(input.length);
  const textFree = (events: readonly Buffer[]) => events.filter((e) => !textOf(e, api));
  const kept = textFree(input);
  const sent = output.filter((e) => input.includes(e) && !textOf(e, api));
  expect(sent).toHaveLength(kept.length);
  sent.forEach((e, i) => expect(e).toBe(kept[i]));
  for (const e of output) {
    if (input.includes(e)) continue;
    const text = textOf(e, api);
    expect(text).not.toBeNull();
    if (text === '') {
      // Only an event that carries something else (a role, a tool call's id, a finish) may lose all its text.
      expect(api).toBe('openai');
      expect(eventData(e)).toMatch(/"finish_reason":"|"role":|"id":|"name":|"usage":\{/);
    }
  }
}

/** Cuts text at the given positions (modulo its length) into non-empty pieces. */
function cut(text: string, at: readonly number[]): string[] {
  const cuts = [...new Set(at.map((p) => p % (text.length + 1)))].sort((a, b) => a - b);
  const pieces: string[] = [];
  let from = 0;
  for (const c of [...cuts, text.length]) {
    if (c > from) pieces.push(text.slice(from, c));
    from = Math.max(from, c);
  }
  return pieces;
}

/** Writes JSON the way some servers do: every non-ASCII character, and '/', escaped. */
function escapedJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    .replace(/\//g, '\\/');
}

interface ToolCallPlan {
  name: string;
  fragments: string[];
}

/** What one OpenAI choice writes: content pieces, then tool calls (their arguments in fragments). */
interface ChoicePlan {
  content: string[];
  calls: ToolCallPlan[];
}

const CHUNK_BASE = { id: 'chatcmpl-p', object: 'chat.completion.chunk', created: 1_760_000_000, model: 'gpt-4o-mini', system_fingerprint: 'fp_p' };

/** An OpenAI stream for the choices, interleaved in the order `picks` says (each choice's events stay in order). */
function openAiPlanStream(choices: readonly ChoicePlan[], picks: readonly number[]): Buffer[] {
  const chunk = (index: number, delta: Record<string, unknown>, finish: string | null = null) =>
    `data: ${JSON.stringify({ ...CHUNK_BASE, choices: [{ index, delta, logprobs: null, finish_reason: finish }], usage: null })}\n\n`;
  const perChoice = choices.map((c, index) => {
    const events = [chunk(index, { role: 'assistant', content: '', refusal: null })];
    for (const p of c.content) events.push(chunk(index, { content: p }));
    c.calls.forEach((call, k) => {
      events.push(chunk(index, { tool_calls: [{ index: k, id: `call_${index}_${k}`, type: 'function', function: { name: call.name, arguments: '' } }] }));
      for (const f of call.fragments) events.push(chunk(index, { tool_calls: [{ index: k, function: { arguments: f } }] }));
    });
    events.push(chunk(index, {}, c.calls.length ? 'tool_calls' : 'stop'));
    return events;
  });
  const out: string[] = [];
  const next = perChoice.map(() => 0);
  for (let i = 0; out.length < perChoice.reduce((n, e) => n + e.length, 0); i++) {
    // Each pick names a choice; exhausted choices and used-up picks fall through to the next one with events left.
    let c = (picks[i % Math.max(1, picks.length)] ?? 0) % perChoice.length;
    while (next[c] >= perChoice[c].length) c = (c + 1) % perChoice.length;
    out.push(perChoice[c][next[c]++]);
  }
  out.push(`data: ${JSON.stringify({ ...CHUNK_BASE, choices: [], usage: { prompt_tokens: 9, completion_tokens: 7, total_tokens: 16 } })}\n\n`);
  out.push('data: [DONE]\n\n');
  return out.map((e) => Buffer.from(e));
}

type BlockPlan = { type: 'text' | 'thinking'; pieces: string[] } | { type: 'tool_use'; name: string; fragments: string[] };

/** An Anthropic stream of the blocks, with a ping after the events whose positions `pings` names. */
function anthropicPlanStream(blocks: readonly BlockPlan[], pings: readonly number[]): Buffer[] {
  const ev = (name: string, data: Record<string, unknown>) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;
  const events = [
    ev('message_start', { message: { id: 'msg_p', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 5, output_tokens: 1 } } }),
  ];
  blocks.forEach((b, index) => {
    if (b.type === 'tool_use') {
      events.push(ev('content_block_start', { index, content_block: { type: 'tool_use', id: `toolu_${index}`, name: b.name, input: {} } }));
      for (const f of b.fragments) events.push(ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: f } }));
    } else if (b.type === 'thinking') {
      events.push(ev('content_block_start', { index, content_block: { type: 'thinking', thinking: '', signature: '' } }));
      for (const p of b.pieces) events.push(ev('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: p } }));
      events.push(ev('content_block_delta', { index, delta: { type: 'signature_delta', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3h' } }));
    } else {
      events.push(ev('content_block_start', { index, content_block: { type: 'text', text: '' } }));
      for (const p of b.pieces) events.push(ev('content_block_delta', { index, delta: { type: 'text_delta', text: p } }));
    }
    events.push(ev('content_block_stop', { index }));
  });
  events.push(ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 7 } }));
  events.push(ev('message_stop', {}));
  const withPings: string[] = [];
  events.forEach((e, i) => {
    withPings.push(e);
    if (i < events.length - 2 && pings.includes(i)) withPings.push(ev('ping', {}));
  });
  return withPings.map((e) => Buffer.from(e));
}

/** Words of answers without a secret, with near misses of secrets' prefixes, escapes to be and non-ASCII text. */
const cleanWords = fc.constantFrom(
  'Sure,', 'here', 'is', 'the', 'plan:', 'step', 'one', 'two.', '\n', '\n\n', '- item', '`code`', 'café', '中文', 'naïve', '12', '3.5%',
  'AKIA', 'ASIA?', 'sk-', 'sk-ant', 'ghp_', 'eyJ', 'eyJhbGciOi.', '-----BEGIN', 'CERTIFICATE-----', '"quoted"', 'back\\slash', 'a/b', 'tab\t',
);
const cleanText = fc.array(cleanWords, { minLength: 1, maxLength: 24 }).map((w) => w.join(' '));
/** Prose (no "-----BEGIN", which is held while a private key header may follow). */
const prose = fc
  .array(fc.constantFrom('Sure,', 'here', 'is', 'the', 'plan:', 'step', '\n', '- item', '`code`', 'café', '中文', '12', 'AKIA', 'sk-ant', 'ghp_', 'eyJ', '"quoted"', 'a/b'), { minLength: 1, maxLength: 24 })
  .map((w) => w.join(' '));
const cuts = fc.array(fc.nat(), { maxLength: 12 });
/** Cut text: at random points, or as " word" tokens. */
const cutText = fc.tuple(cleanText, cuts, fc.boolean()).map(([text, at, tokens]) => (tokens ? text.match(/\s*\S+|\s+$/g)! : cut(text, at)));
/** Tool-call arguments without a secret, as JSON fragments cut anywhere, escapes included. */
const cleanArgs = fc
  .tuple(
    fc.dictionary(fc.constantFrom('city', 'unit', 'query', 'path', 'note', 'n'), fc.oneof(cleanText, fc.integer(), fc.boolean(), fc.constant(null), fc.array(cleanText, { maxLength: 3 })), { maxKeys: 4 }),
    fc.boolean(),
    cuts,
  )
  .map(([value, escaped, at]) => cut(escaped ? escapedJson(value) : JSON.stringify(value), at));

const words = fc.constantFrom('Sure,', 'here', 'is', 'the', 'config', 'you', 'asked', 'for:', '\n', 'use', 'it', 'well.', 'Token', '`x`', '(note)');
const filler = fc.array(words, { maxLength: 6 }).map((w) => w.join(' '));
/** An answer with every kind of secret somewhere in it, among ordinary words. */
const answer = fc
  .tuple(fc.shuffledSubarray(SECRETS, { minLength: SECRETS.length }), fc.array(filler, { minLength: SECRETS.length + 1, maxLength: SECRETS.length + 1 }))
  .map(([secrets, fill]) => fill[0] + secrets.map((s, i) => ` ${s} ${fill[i + 1]}`).join(''));

describe('whole answers', () => {
  const guard = new OutputGuard(config());

  it('returns the same Buffer, without parsing it, when there is nothing to find', () => {
    const body = Buffer.from(JSON.stringify(openAiCompletion({ model: 'gpt-4o-mini' }, { text: 'A task-based plan: step one, step two.' }, 1)));
    const r = guard.inspectBody('openai', body);
    expect(r.body).toBe(body);
    expect(r.decisions).toEqual([]);
    expect(r.blocked).toBeNull();
    const anthropic = Buffer.from(JSON.stringify(anthropicMessage({}, { text: 'Nothing secret here.' }, 1)));
    expect(guard.inspectBody('anthropic', anthropic).body).toBe(anthropic);
  });

  it('redacts secrets in OpenAI message content and tool-call arguments', () => {
    const body = openAiCompletion({ model: 'gpt-4o-mini' }, { text: `Your key is ${AWS_KEY}.` }, 1) as any;
    body.choices[0].message.tool_calls = [{ id: 'call_1', type: 'function', function: { name: 'deploy', arguments: JSON.stringify({ token: GITHUB_TOKEN, env: 'prod' }) } }];
    const r = guard.inspectBody('openai', Buffer.from(JSON.stringify(body)));
    const out = JSON.parse(r.body.toString());
    expect(out.choices[0].message.content).toBe('Your key is [REDACTED:aws_access_key].');
    expect(JSON.parse(out.choices[0].message.tool_calls[0].function.arguments)).toEqual({ token: '[REDACTED:github_token]', env: 'prod' });
    expect(out.usage).toEqual(body.usage);
    expect(r.decisions).toEqual([
      { direction: 'output', rule: 'output.secret.aws_access_key', action: 'redact', reason: expect.any(String), count: 1 },
      { direction: 'output', rule: 'output.secret.github_token', action: 'redact', reason: expect.any(String), count: 1 },
    ]);
    expect(r.decisions[0].reason).not.toContain(AWS_KEY);
    expect(r.blocked).toBeNull();
  });

  it('redacts secrets in Anthropic text blocks and tool_use input', () => {
    const body = anthropicMessage({}, { text: `Two of them: ${JWT} and ${JWT}` }, 1) as any;
    body.content.push({ type: 'tool_use', id: 'toolu_1', name: 'store', input: { secret: { value: ANTHROPIC_KEY }, list: [PRIVATE_KEY, 'plain'] } });
    const r = guard.inspectBody('anthropic', Buffer.from(JSON.stringify(body)));
    const out = JSON.parse(r.body.toString());
    expect(out.content[0].text).toBe('Two of them: [REDACTED:jwt] and [REDACTED:jwt]');
    expect(out.content[1].input).toEqual({ secret: { value: '[REDACTED:anthropic_key]' }, list: ['[REDACTED:private_key]', 'plain'] });
    expect(r.decisions.map((d) => [d.rule, d.count])).toEqual([
      ['output.secret.jwt', 2],
      ['output.secret.anthropic_key', 1],
      ['output.secret.private_key', 1],
    ]);
  });

  it('redacts PII only when output.pii is on, with checksums against false positives', () => {
    const text = 'Reach jane.doe@example.com; Visa 4111 1111 1111 1111 (Luhn-invalid: 4111 1111 1111 1112); order 1234567812345670; ' +
      'IBAN DE89 3704 0044 0532 0130 00 (bad check digits: DE88 3704 0044 0532 0130 00); SSN 078-05-1120; server 203.0.113.7; phone (555) 123-4567.';
    const body = Buffer.from(JSON.stringify(openAiCompletion({}, { text }, 1)));
    expect(guard.inspectBody('openai', body).body).toBe(body);
    const pii = new OutputGuard(config({ output: { pii: true } })).inspectBody('openai', body);
    expect(JSON.parse(pii.body.toString()).choices[0].message.content).toBe(
      'Reach [REDACTED:email]; Visa [REDACTED:credit_card] (Luhn-invalid: 4111 1111 1111 1112); order 1234567812345670; ' +
        'IBAN [REDACTED:iban] (bad check digits: DE88 3704 0044 0532 0130 00); SSN [REDACTED:us_ssn]; server [REDACTED:ipv4]; phone (555) 123-4567.',
    );
    expect(pii.decisions.map((d) => d.rule)).toEqual(['output.pii.email', 'output.pii.credit_card', 'output.pii.iban', 'output.pii.us_ssn', 'output.pii.ipv4']);
    const phone = new OutputGuard(config({ output: { pii: true, phone: true } })).inspectBody('openai', body);
    expect(JSON.parse(phone.body.toString()).choices[0].message.content).toContain('phone [REDACTED:phone].');
  });

  it('blocks, warns or ignores a rule as the actions say', () => {
    const body = Buffer.from(JSON.stringify(openAiCompletion({}, { text: `k=${AWS_KEY} t=${JWT}` }, 1)));
    const tuned = new OutputGuard(config({ actions: { 'output.secret.aws_access_key': 'block', 'output.secret.jwt': 'warn' } })).inspectBody('openai', body);
    expect(tuned.blocked).toMatchObject({ direction: 'output', rule: 'output.secret.aws_access_key', action: 'block' });
    expect(tuned.decisions.map((d) => [d.rule, d.action])).toEqual([
      ['output.secret.aws_access_key', 'block'],
      ['output.secret.jwt', 'warn'],
    ]);
    expect(JSON.parse(tuned.body.toString()).choices[0].message.content).toBe(`k=[REDACTED:aws_access_key] t=${JWT}`);
    const warnOnly = new OutputGuard(config({ actions: { 'output.secret.aws_access_key': 'warn', 'output.secret.jwt': 'off' } })).inspectBody('openai', body);
    expect(warnOnly.body).toBe(body);
    expect(warnOnly.decisions.map((d) => [d.rule, d.action])).toEqual([['output.secret.aws_access_key', 'warn']]);
  });

  it('is inactive when disabled or when every output rule is off', () => {
    expect(new OutputGuard(config({ enabled: false })).active).toBe(false);
    const allOff = Object.fromEntries(outputRules(config()).map((r) => [r.id, 'off']));
    expect(new OutputGuard(config({ actions: allOff })).active).toBe(false);
    expect(new OutputGuard(config()).active).toBe(true);
  });

  it('finds a secret written with JSON escapes', () => {
    const body = Buffer.from(`{"choices":[{"index":0,"message":{"role":"assistant","content":"key \\u0041KIA${AWS_KEY.slice(4)}"}}]}`);
    expect(JSON.parse(new OutputGuard(config()).inspectBody('openai', body).body.toString()).choices[0].message.content).toBe('key [REDACTED:aws_access_key]');
  });
});

describe('OpenAI streams', () => {
  it('never lets a secret split at any point reach the client; the rest arrives intact and in order', () => {
    const guard = new OutputGuard(config());
    fc.assert(
      fc.property(answer, splits(60), (text, split) => {
        const events = openAiStream(piecesOf(text, split));
        const out = run(guard.newStream('openai'), events);
        expectShape(events, out, 'openai');
        const view = openAiView(out);
        const seen = view.text.get(0)!;
        for (const marker of LEAK_MARKERS) expect(seen).not.toContain(marker);
        expect(seen).toBe(redactText(text, outputRules(config())).text);
        expect(seen.split(/\[REDACTED:[a-z_]+\]/)).toEqual(SECRETS.reduce((t, s) => t.split(s).join('\0'), text).split('\0'));
        // All text before the finish event, which comes before the usage chunk and [DONE].
        expect(view.lastTextAt.get(0)!).toBeLessThan(view.finishAt.get(0)!);
        expect(view.doneAt).toBe(out.length - 1);
      }),
      { numRuns: 200 },
    );
  });

  it('passes events without text through as the same Buffer and decides once per finding', () => {
    const events = openAiStream(['Here: ', AWS_KEY.slice(0, 7), AWS_KEY.slice(7), ' done.']);
    const stream = new OutputGuard(config()).newStream('openai');
    const role = stream.onEvent(events[0]);
    expect(role).toHaveLength(1);
    expect(role[0]).toBe(events[0]);
    const out = [...role];
    const decisions = [];
    for (const e of events.slice(1)) {
      out.push(...stream.onEvent(e));
      decisions.push(...stream.takeDecisions());
    }
    expect(openAiView(out).text.get(0)).toBe('Here: [REDACTED:aws_access_key] done.');
    expect(decisions).toEqual([{ direction: 'output', rule: 'output.secret.aws_access_key', action: 'redact', reason: expect.any(String), count: 1 }]);
    const usage = events[events.length - 2];
    expect(out).toContain(usage);
    expect(out[out.length - 1]).toBe(events[events.length - 1]);
    expect(stream.takeDecisions()).toEqual([]);
  });

  it('releases ordinary words one event late at most, as the provider sent them', () => {
    const text = 'The quick brown fox jumps over the lazy dog, then naps under a tree.';
    const pieces = text.match(/ ?[^ ]+/g)!; // tokens the way the API streams them: " word"
    const stream = new OutputGuard(config({ output: { pii: true, phone: true } })).newStream('openai');
    const events = openAiStream(pieces);
    const sent: Buffer[] = [];
    events.forEach((e, i) => {
      sent.push(...stream.onEvent(e));
      // Only the event with the word still being written waits: " fox" until " jumps" comes.
      const isText = i >= 1 && i <= pieces.length;
      expect(sent).toEqual(events.slice(0, isText ? i : i + 1));
      sent.forEach((b, j) => expect(b).toBe(events[j]));
    });
    expect(stream.end()).toEqual([]);
    expect(openAiView(sent).text.get(0)).toBe(text);
  });

  it('redacts streamed tool-call arguments per call, keeping them valid JSON', () => {
    const events = openAiEvents(OPENAI_REQUEST, { toolCalls: [{ name: 'store', arguments: { key: AWS_KEY, note: 'first' } }, { name: 'auth', arguments: { jwt: JWT } }] }, 1).map((e) => Buffer.from(e));
    const out = run(new OutputGuard(config()).newStream('openai'), events);
    const view = openAiView(out);
    expect(JSON.parse(view.args.get('0/0')!)).toEqual({ key: '[REDACTED:aws_access_key]', note: 'first' });
    expect(JSON.parse(view.args.get('0/1')!)).toEqual({ jwt: '[REDACTED:jwt]' });
    expect(view.lastTextAt.get(0)!).toBeLessThan(view.finishAt.get(0)!);
    for (const marker of LEAK_MARKERS) expect(out.join('')).not.toContain(marker);
  });

  it('keeps choices apart and handles JSON written with spaces', () => {
    const chunk = (index: number, content: string | null, finish: string | null = null) =>
      Buffer.from(`data: {"id": "c", "choices": [{"index": ${index}, "delta": {"content": ${JSON.stringify(content)}}, "finish_reason": ${JSON.stringify(finish)}}]}\n\n`);
    const events = [chunk(0, 'a AKIA'), chunk(1, 'b ASIA'), chunk(0, 'IOSFODNN7EXAMPLE x'), chunk(1, 'IOSFODNN7EXAMPLE y'), chunk(0, null, 'stop'), chunk(1, null, 'stop'), Buffer.from('data: [DONE]\n\n')];
    const view = openAiView(run(new OutputGuard(config()).newStream('openai'), events));
    expect(view.text.get(0)).toBe('a [REDACTED:aws_access_key] x');
    expect(view.text.get(1)).toBe('b [REDACTED:aws_access_key] y');
    // Text in the finishing chunk itself: the held rest joins it, in the same event.
    const last = run(new OutputGuard(config()).newStream('openai'), [chunk(0, 'key: AKIA'), chunk(0, 'IOSFODNN7EXAMPLE', 'stop'), Buffer.from('data: [DONE]\n\n')]);
    expect(last).toHaveLength(3);
    expect(JSON.parse(eventData(last[1])!).choices[0]).toMatchObject({ delta: { content: '[REDACTED:aws_access_key]' }, finish_reason: 'stop' });
  });

  it('releases held text at the end of a cut stream, redacted', () => {
    const events = openAiStream(['partial ', AWS_KEY]).slice(0, 3);
    const view = openAiView(run(new OutputGuard(config()).newStream('openai'), events));
    expect(view.text.get(0)).toBe('partial [REDACTED:aws_access_key]');
  });

  it('stops the stream when a block rule fires', () => {
    const stream = new OutputGuard(config({ actions: { 'output.secret.anthropic_key': 'block' } })).newStream('openai');
    const events = openAiStream(['Use ', ANTHROPIC_KEY.slice(0, 20), ANTHROPIC_KEY.slice(20), ' to call the API.', ' More.']);
    const out: Buffer[] = [];
    for (const e of events) out.push(...stream.onEvent(e));
    out.push(...stream.end());
    expect(stream.blocked).toMatchObject({ rule: 'output.secret.anthropic_key', action: 'block', direction: 'output' });
    expect(stream.takeDecisions()).toEqual([stream.blocked]);
    const sent = out.map((b) => b.toString()).join('');
    expect(sent).not.toContain('Xy7kQ2mN');
    expect(sent).not.toContain('More.');
  });
});

describe('streams without a secret', () => {
  const guard = new OutputGuard(config());
  const withPii = new OutputGuard(config({ output: { pii: true, phone: true } }));
  const choicePlan: fc.Arbitrary<ChoicePlan> = fc.record({
    content: fc.oneof(fc.constant<string[]>([]), cutText),
    calls: fc.array(fc.record({ name: fc.constantFrom('get_weather', 'search'), fragments: cleanArgs }), { maxLength: 2 }),
  });

  it('reach an OpenAI client byte for byte: the same Buffers, in order, whatever the choices, tool calls and cuts', () => {
    fc.assert(
      fc.property(fc.array(choicePlan, { minLength: 1, maxLength: 3 }), fc.array(fc.nat(), { maxLength: 40 }), fc.boolean(), (choices, picks, pii) => {
        const events = openAiPlanStream(choices, picks);
        const out = run((pii ? withPii : guard).newStream('openai'), events);
        expect(Buffer.concat(out).toString()).toBe(Buffer.concat(events).toString());
        out.forEach((e, i) => expect(e).toBe(events[i]));
      }),
      { numRuns: 300 },
    );
  });

  it('reach an Anthropic client byte for byte: the same Buffers, in order, pings and thinking blocks included', () => {
    const block: fc.Arbitrary<BlockPlan> = fc.oneof(
      fc.record({ type: fc.constant('text' as const), pieces: cutText }),
      fc.record({ type: fc.constant('thinking' as const), pieces: cutText }),
      fc.record({ type: fc.constant('tool_use' as const), name: fc.constantFrom('get_weather', 'search'), fragments: cleanArgs }),
    );
    fc.assert(
      fc.property(fc.array(block, { minLength: 1, maxLength: 3 }), fc.array(fc.nat({ max: 40 }), { maxLength: 6 }), fc.boolean(), (blocks, pings, pii) => {
        const events = anthropicPlanStream(blocks, pings);
        const out = run((pii ? withPii : guard).newStream('anthropic'), events);
        expect(Buffer.concat(out).toString()).toBe(Buffer.concat(events).toString());
        out.forEach((e, i) => expect(e).toBe(events[i]));
      }),
      { numRuns: 300 },
    );
  });

  it('hold back no more than the event with the word being written; nothing overtakes it', () => {
    fc.assert(
      fc.property(prose, fc.constantFrom('leading', 'trailing'), fc.array(fc.nat({ max: 30 }), { maxLength: 4 }), (text, style, pings) => {
        // " word" tokens, as OpenAI and Anthropic stream prose, or "word " ones.
        const pieces = style === 'leading' ? text.match(/\s*\S+|\s+$/g)! : text.match(/\S+\s*|^\s+/g)!;
        for (const [api, events] of [
          ['openai', openAiStream(pieces)],
          ['anthropic', anthropicPlanStream([{ type: 'text', pieces }], pings)],
        ] as const) {
          const stream = guard.newStream(api);
          const sent: Buffer[] = [];
          events.forEach((e, i) => {
            sent.push(...stream.onEvent(e));
            sent.forEach((b, j) => expect(b).toBe(events[j]));
            const waiting = events.slice(sent.length, i + 1);
            const held = waiting.filter((w) => textOf(w, api));
            expect(held.length).toBeLessThanOrEqual(1);
            // A word followed by a space is known not to be a secret's beginning: nothing waits for it.
            if (held.length && style === 'trailing') expect(textOf(held[0], api)).not.toMatch(/\s$/);
            if (held.length) expect(waiting[0]).toBe(held[0]);
          });
          sent.push(...stream.end());
          expect(sent).toEqual(events);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('time to first token with the default rules', () => {
  const guard = new OutputGuard(config());
  // No 'A' (AKIA/ASIA may follow a lower-case letter), no '-' ("-----BEGIN" needs no boundary),
  // and no word starting with e, g or s (eyJ, gh*_, github_pat_, sk-): nothing can begin a secret.
  const word = fc.oneof(
    fc.stringMatching(/^[a-dfhi-rt-zB-Z0-9][a-zB-Z0-9]{0,11}$/),
    fc.constantFrom('café', '中文', 'naïve', '3.5%', '$4.2M', '`code`', 'x_y', 'KIA', 'kyJ', 'hp_x', '"quoted"', 'back\\path', 'a/b'),
  );
  const punctuated = fc.tuple(fc.constantFrom('', '(', '"', '**'), word, fc.constantFrom('', ',', '.', '!', '?', ':', ')')).map((p) => p.join(''));
  const secretFreeProse = fc
    .array(fc.tuple(punctuated, fc.constantFrom(' ', ' ', ' ', '\n', '\n\n')), { minLength: 1, maxLength: 30 })
    .map((parts) => parts.map(([w, sep]) => w + sep).join(''));
  /** Cut text: at random points, or as " word" tokens. */
  const pieces = fc.tuple(secretFreeProse, cuts, fc.boolean()).map(([text, at, tokens]) => (tokens ? text.match(/\s*\S+|\s+$/g)! : cut(text, at)));

  /** Feeds the events one by one, expecting each to go out in the call that brings it, as the same Buffer. */
  function expectNothingHeld(stream: StreamGuard, events: readonly Buffer[]): void {
    for (const e of events) {
      const out = stream.onEvent(e);
      expect(out).toHaveLength(1);
      expect(out[0]).toBe(e);
    }
    expect(stream.end()).toEqual([]);
    expect(stream.takeDecisions()).toEqual([]);
  }

  it('sends every event of the bench\'s answer at once, none held for the next one', () => {
    const pieces = 'Hello! How can I help you today?'.match(/ ?[^ ]+/g)!;
    expectNothingHeld(guard.newStream('openai'), openAiStream(pieces));
    expectNothingHeld(guard.newStream('anthropic'), anthropicStream(pieces));
  });

  it('sends every event of prose that cannot begin a secret at once, cut anywhere (OpenAI and Anthropic)', () => {
    fc.assert(
      fc.property(pieces, (p) => {
        expectNothingHeld(guard.newStream('openai'), openAiStream(p));
        expectNothingHeld(guard.newStream('anthropic'), anthropicStream(p));
      }),
      { numRuns: 300 },
    );
  });

  it('holds an event ending in any proper prefix of a secret until the secret is known, which never gets out', () => {
    for (const secret of [...SECRETS, GITHUB_TOKEN]) {
      for (let k = 1; k < secret.length; k++) {
        for (const api of ['openai', 'anthropic'] as const) {
          const events = (api === 'openai' ? openAiStream : anthropicStream)(['Here it is: ', secret.slice(0, k), secret.slice(k), ' Done.']);
          const first = events.findIndex((e) => textOf(e, api) === 'Here it is: ');
          const stream = guard.newStream(api);
          const out: Buffer[] = [];
          for (let i = 0; i < first; i++) out.push(...stream.onEvent(events[i]));
          expect(stream.onEvent(events[first])).toEqual([events[first]]);
          expect(stream.onEvent(events[first + 1])).toEqual([]);
          // The held event goes out emptied or rewritten, with no part of the secret.
          out.push(events[first]);
          for (let i = first + 2; i < events.length; i++) out.push(...stream.onEvent(events[i]));
          out.push(...stream.end());
          expectShape(events, out, api);
          const text = api === 'openai' ? openAiView(out).text.get(0) : anthropicView(out).blocks.get(0);
          expect(text).toMatch(/^Here it is: \[REDACTED:[a-z_]+\] Done\.$/);
        }
      }
    }
  });
});

describe('secrets in streamed tool-call arguments', () => {
  const guard = new OutputGuard(config());
  const SECRET_ARGS = fc
    .tuple(fc.shuffledSubarray(SECRETS, { minLength: 1 }), fc.array(filler, { minLength: 4, maxLength: 4 }), fc.boolean(), cuts)
    .map(([secrets, fill, escaped, at]) => {
      const args = { note: fill[0], key: secrets[0], list: [fill[1], ...secrets.slice(1).map((s, i) => `${fill[i % 4]} ${s} ${fill[(i + 2) % 4]}`)], n: 42 };
      // A secret's first letter written as a JSON escape must not hide it.
      const json = escaped ? escapedJson(args).replace(/"(AKIA|sk-ant|eyJ)/g, (_m, p: string) => `"\\u00${p.charCodeAt(0).toString(16)}${p.slice(1)}`) : JSON.stringify(args);
      return { json, fragments: cut(json, at) };
    });

  it('never lets one split at any point reach the client (OpenAI), and the arguments stay the JSON they were, redacted', () => {
    fc.assert(
      fc.property(SECRET_ARGS, SECRET_ARGS, ({ json, fragments }, second) => {
        const events = openAiPlanStream([{ content: ['Calling', ' tools.'], calls: [{ name: 'store', fragments }, { name: 'auth', fragments: second.fragments }] }], []);
        const out = run(guard.newStream('openai'), events);
        expectShape(events, out, 'openai');
        const view = openAiView(out);
        const sent = out.map((b) => b.toString()).join('');
        for (const marker of LEAK_MARKERS) expect(sent).not.toContain(marker);
        expect(JSON.parse(view.args.get('0/0')!)).toEqual(JSON.parse(redactJsonText(json, outputRules(config())).text));
        expect(JSON.parse(view.args.get('0/1')!)).toEqual(JSON.parse(redactJsonText(second.json, outputRules(config())).text));
        expect(view.text.get(0)).toBe('Calling tools.');
        expect(view.lastTextAt.get(0)!).toBeLessThan(view.finishAt.get(0)!);
      }),
      { numRuns: 200 },
    );
  });

  it('never lets one split at any point reach the client (Anthropic)', () => {
    fc.assert(
      fc.property(SECRET_ARGS, fc.array(fc.nat({ max: 40 }), { maxLength: 4 }), ({ json, fragments }, pings) => {
        const events = anthropicPlanStream([{ type: 'text', pieces: ['Calling', ' a tool.'] }, { type: 'tool_use', name: 'store', fragments }], pings);
        const out = run(guard.newStream('anthropic'), events);
        expectShape(events, out, 'anthropic');
        const view = anthropicView(out.filter((e) => eventName(e) !== 'ping'));
        const sent = out.map((b) => b.toString()).join('');
        for (const marker of LEAK_MARKERS) expect(sent).not.toContain(marker);
        expect(JSON.parse(view.blocks.get(1)!)).toEqual(JSON.parse(redactJsonText(json, outputRules(config())).text));
        expect(view.lastDeltaAt.get(1)!).toBeLessThan(view.stopAt.get(1)!);
      }),
      { numRuns: 200 },
    );
  });

  it('sends the text before a tool call, and each call, as soon as the next one starts', () => {
    const events = openAiPlanStream([{ content: ['Let', ' me', ' check.'], calls: [{ name: 'a', fragments: ['{"q":', '"x"}'] }, { name: 'b', fragments: ['{"q":', '"y"}'] }] }], []);
    const stream = guard.newStream('openai');
    const sent: Buffer[] = [];
    const header = (k: number) => events.findIndex((e) => e.includes(`"id":"call_0_${k}"`));
    events.forEach((e, i) => {
      sent.push(...stream.onEvent(e));
      // The first call's header closes the content; the second's closes the first call.
      if (i === header(0)) expect(sent).toEqual(events.slice(0, i + 1));
      if (i === header(1)) expect(sent).toEqual(events.slice(0, i + 1));
    });
    sent.push(...stream.end());
    expect(sent).toEqual(events);
  });
});

describe('Anthropic streams', () => {
  it('never lets a secret split at any point reach the client; held text goes out before content_block_stop', () => {
    const guard = new OutputGuard(config());
    fc.assert(
      fc.property(answer, splits(60), (text, split) => {
        const events = anthropicStream(piecesOf(text, split));
        const out = run(guard.newStream('anthropic'), events);
        expectShape(events, out, 'anthropic');
        const view = anthropicView(out);
        const seen = view.blocks.get(0)!;
        for (const marker of LEAK_MARKERS) expect(seen).not.toContain(marker);
        expect(seen).toBe(redactText(text, outputRules(config())).text);
        expect(view.lastDeltaAt.get(0)!).toBeLessThan(view.stopAt.get(0)!);
        expect(view.names.slice(-2)).toEqual(['message_delta', 'message_stop']);
      }),
      { numRuns: 200 },
    );
  });

  it('redacts input_json_delta per content block and passes other events through untouched', () => {
    const events = anthropicEvents(ANTHROPIC_REQUEST, { toolCalls: [{ name: 'store', arguments: { key: AWS_KEY, n: 1 } }, { name: 'keep', arguments: { pem: PRIVATE_KEY } }] }, 1).map((e) => Buffer.from(e));
    const stream = new OutputGuard(config()).newStream('anthropic');
    const out = run(stream, events);
    const view = anthropicView(out);
    expect(JSON.parse(view.blocks.get(0)!)).toEqual({ key: '[REDACTED:aws_access_key]', n: 1 });
    expect(JSON.parse(view.blocks.get(1)!)).toEqual({ pem: '[REDACTED:private_key]' });
    expect(view.lastDeltaAt.get(1)!).toBeLessThan(view.stopAt.get(1)!);
    const untouched = events.filter((e) => !['content_block_delta', 'content_block_stop'].includes(eventName(e)!));
    for (const e of untouched) expect(out).toContain(e);
    for (const marker of LEAK_MARKERS) expect(out.join('')).not.toContain(marker);
  });
});
