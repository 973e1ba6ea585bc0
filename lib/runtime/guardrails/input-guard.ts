/**
 * Input guardrails: size limits, suspicious Unicode, deny patterns and prompt-injection
 * heuristics, on the new turn of a request (the messages after the last assistant message),
 * with tool results sent back to the model scanned as their own direction (indirect injection).
 * The system prompt is the operator's: it counts toward the size limits but is not scanned.
 *
 * Text is scanned NFKC-normalized with invisible and bidi controls removed, and with any tag
 * characters decoded to the ASCII they spell, so "ｉｇｎｏｒｅ" or "ig\u200Bnore" read as "ignore".
 * Pure ASCII text (the common case) skips normalization altogether.
 */
import type { GuardrailsConfig } from '../../spec/policy';
import type { ApiShape } from '../../spec/providers';
import {
  actionFor,
  BIDI_CHARS,
  EXTRACTION_PHRASE,
  HEX_ONLY,
  INPUT_DEFAULTS,
  INPUT_DENY_PREFIX,
  INPUT_INJECTION,
  INPUT_MAX_BYTES,
  INPUT_MAX_MESSAGES,
  INPUT_MAX_PROMPT_TOKENS,
  INPUT_UNICODE_BIDI,
  INPUT_UNICODE_INVISIBLE,
  INPUT_UNICODE_TAG,
  INVISIBLE_CHARS,
  OVERRIDE_PHRASE,
  OVERRIDE_SCOPE,
  ROLE_MARKER,
  TAG_CHARS,
} from './rules';
import type { Direction, GuardDecision, RuleAction } from './types';

/**
 * Injection signal weights, combined as independent evidence: score = 1 - prod(1 - w) over the
 * distinct signals present (a signal counts once however often it occurs). Every weight lies
 * in [0.5, 0.7], so with the default thresholds (warn 0.4, block 0.75) one signal alone warns
 * and never blocks, while any two together reach at least 1 - 0.5 * 0.45 = 0.775 and block.
 */
export const INJECTION_WEIGHTS = {
  /** "ignore/disregard/forget all previous instructions": the classic explicit override. */
  override: 0.6,
  /** "reveal/print your system prompt / initial instructions". */
  extraction: 0.55,
  /** Chat-template markers (<|im_start|>system, [INST], ### System:, </user>, a "system:" line). */
  role_marker: 0.5,
  /** A base64/hex blob that decodes to an override, extraction or role marker: deliberate evasion. */
  encoded: 0.7,
} as const;

export type InjectionSignal = keyof typeof INJECTION_WEIGHTS;

const SIGNAL_NAMES: Record<InjectionSignal, string> = {
  override: 'instruction override',
  extraction: 'system prompt extraction',
  role_marker: 'role marker',
  encoded: 'encoded instructions',
};

const NON_ASCII = /[^\x00-\x7f]/;
/** Blobs decoded per text, and the largest decoded: enough for real payloads, bounded for hostile ones. */
const MAX_BLOBS = 16;
const MAX_BLOB_CHARS = 65_536;
/** Shortest run taken for an encoded payload: 40 characters, 30 bytes of base64 or 20 of hex. */
const MIN_RUN = 40;

interface DenyRule {
  readonly rule: string;
  readonly action: RuleAction;
  readonly pattern: RegExp;
}

export class InputGuard {
  private readonly actions: Readonly<Record<string, RuleAction | null>>;
  private readonly deny: readonly DenyRule[];

  constructor(private readonly config: GuardrailsConfig) {
    const actions: Record<string, RuleAction | null> = {};
    for (const [rule, fallback] of Object.entries(INPUT_DEFAULTS)) actions[rule] = inputAction(config, rule, fallback);
    this.actions = actions;
    this.deny = config.input.denyPatterns.flatMap((p) => {
      const rule = INPUT_DENY_PREFIX + p.id;
      const action = inputAction(config, rule, p.action);
      return action ? [{ rule, action, pattern: new RegExp(p.pattern, p.flags.replace(/[gy]/g, '')) }] : [];
    });
  }

  /** promptTokens: the caller's estimate (lib/runtime/metering/estimate.ts estimateInputTokens). blocked = first decision with action 'block', else null. */
  inspect(shape: ApiShape, body: Record<string, unknown>, bodyBytes: number, promptTokens: number): { decisions: GuardDecision[]; blocked: GuardDecision | null } {
    const decisions: GuardDecision[] = [];
    if (!this.config.enabled) return { decisions, blocked: null };
    const limits = this.config.input;
    const messages = Array.isArray(body.messages) ? (body.messages as unknown[]) : [];
    this.limit(decisions, INPUT_MAX_BYTES, bodyBytes, limits.maxBytes, 'request body', 'bytes');
    this.limit(decisions, INPUT_MAX_MESSAGES, messages.length, limits.maxMessages, 'request', 'messages');
    this.limit(decisions, INPUT_MAX_PROMPT_TOKENS, promptTokens, limits.maxPromptTokens, 'prompt', 'tokens (estimated)');
    // An oversized request is refused as it is: scanning it would only cost time.
    if (!decisions.some((d) => d.action === 'block')) {
      const turn = newTurn(shape, messages, limits.scanToolResults);
      if (turn.input.length) this.scan('input', turn.input.join('\n'), decisions);
      if (turn.tool_result.length) this.scan('tool_result', turn.tool_result.join('\n'), decisions);
    }
    return { decisions, blocked: decisions.find((d) => d.action === 'block') ?? null };
  }

  private limit(decisions: GuardDecision[], rule: string, value: number, max: number, what: string, unit: string): void {
    const action = this.actions[rule];
    if (!action || value <= max) return;
    decisions.push({ direction: 'input', rule, action, reason: `${what} has ${value} ${unit}, over the limit of ${max}` });
  }

  private scan(direction: Direction, raw: string, decisions: GuardDecision[]): void {
    let text = raw;
    if (NON_ASCII.test(raw)) {
      const normalized = raw.normalize('NFKC');
      this.unicode(decisions, direction, INPUT_UNICODE_INVISIBLE, normalized, INVISIBLE_CHARS, 'invisible characters (zero-width, soft hyphen, BOM)');
      this.unicode(decisions, direction, INPUT_UNICODE_BIDI, normalized, BIDI_CHARS, 'bidirectional control characters');
      this.unicode(decisions, direction, INPUT_UNICODE_TAG, normalized, TAG_CHARS, 'Unicode tag characters');
      text = scanText(normalized);
    }
    const where = direction === 'tool_result' ? 'a tool result' : 'the input';
    for (const d of this.deny) {
      if (d.pattern.test(text)) decisions.push({ direction, rule: d.rule, action: d.action, reason: `deny pattern ${d.rule.slice(INPUT_DENY_PREFIX.length)} matched in ${where}` });
    }
    const action = this.actions[INPUT_INJECTION];
    if (!action) return;
    const { score, signals } = injectionScore(text);
    if (score <= 0) return;
    const limits = this.config.input;
    const blocks = action === 'block' && score >= limits.injectionBlockScore;
    if (!blocks && score < limits.injectionWarnScore) return;
    decisions.push({
      direction,
      rule: INPUT_INJECTION,
      action: blocks ? 'block' : 'warn',
      reason: `possible prompt injection in ${where} (score ${score.toFixed(2)}: ${signals.map((s) => SIGNAL_NAMES[s]).join(', ')})`,
      score,
    });
  }

  private unicode(decisions: GuardDecision[], direction: Direction, rule: string, text: string, chars: RegExp, what: string): void {
    const action = this.actions[rule];
    if (!action) return;
    const found = text.match(chars);
    if (!found) return;
    decisions.push({ direction, rule, action, reason: `${found.length} ${what} in ${direction === 'tool_result' ? 'a tool result' : 'the input'}`, count: found.length });
  }
}

/** Input cannot be redacted: a rule set to 'redact' on input warns. */
function inputAction(config: GuardrailsConfig, rule: string, fallback: RuleAction): RuleAction | null {
  const action = actionFor(config, rule, fallback);
  return action === 'redact' ? 'warn' : action;
}

/**
 * The injection score of a (normalized) text in [0,1] and the signals behind it.
 * Exported for tests and tuning.
 */
export function injectionScore(text: string): { score: number; signals: InjectionSignal[] } {
  const lower = text.toLowerCase();
  const signals: InjectionSignal[] = [];
  if (hasOverride(lower)) signals.push('override');
  if (EXTRACTION_PHRASE.test(lower)) signals.push('extraction');
  if (ROLE_MARKER.test(lower)) signals.push('role_marker');
  if (hasEncodedInstructions(text)) signals.push('encoded');
  let keep = 1;
  for (const s of signals) keep *= 1 - INJECTION_WEIGHTS[s];
  return { score: Math.round((1 - keep) * 1000) / 1000, signals };
}

function hasOverride(lower: string): boolean {
  const re = OVERRIDE_PHRASE;
  re.lastIndex = 0;
  for (let m = re.exec(lower); m !== null; m = re.exec(lower)) {
    const between = m[1];
    // The second form ("ignore everything above") needs no scope word.
    if (between === undefined) return true;
    for (const word of between.split(/\s+/)) if (OVERRIDE_SCOPE.has(word)) return true;
  }
  return false;
}

/** A long base64 or hex run that decodes to readable text carrying an override, extraction or role marker. */
function hasEncodedInstructions(text: string): boolean {
  let blobs = 0;
  for (let from = nextRun(text, 0); from >= 0 && blobs < MAX_BLOBS; ) {
    let end = from;
    while (end < text.length && isBase64Char(text.charCodeAt(end))) end++;
    const next = nextRun(text, end);
    if (end - from > MAX_BLOB_CHARS) {
      from = next;
      continue;
    }
    const run = text.slice(from, end);
    from = next;
    // '=' is padding, or a separator as in q=BLOB: decode each piece on its own.
    for (const piece of run.includes('=') ? run.split(/=+/) : [run]) {
      if (piece.length < MIN_RUN || blobs >= MAX_BLOBS) continue;
      blobs++;
      if (decodesToInstructions(piece)) return true;
    }
  }
  return false;
}

function decodesToInstructions(blob: string): boolean {
  // Buffer's base64 decoder takes the URL-safe alphabet too.
  const decoded = Buffer.from(blob, HEX_ONLY.test(blob) ? 'hex' : 'base64').toString('utf8');
  if (!readable(decoded)) return false;
  const lower = decoded.normalize('NFKC').toLowerCase();
  return hasOverride(lower) || EXTRACTION_PHRASE.test(lower) || ROLE_MARKER.test(lower);
}

/**
 * Start of the next run of at least MIN_RUN base64/base64url characters at or after `from`, or
 * -1. Looks at every MIN_RUN-th character first: if it is not one, no run can cover it, so the
 * search skips ahead; prose costs about one test per word instead of one per character.
 */
function nextRun(text: string, from: number): number {
  let i = from;
  while (i + MIN_RUN <= text.length) {
    const probe = i + MIN_RUN - 1;
    if (!isBase64Char(text.charCodeAt(probe))) {
      i = probe + 1;
      continue;
    }
    // The character before `i` is never one (or `i` is where the search began, after a run).
    let start = probe;
    while (start > i && isBase64Char(text.charCodeAt(start - 1))) start--;
    if (start === i) return i;
    i = start;
  }
  return -1;
}

function isBase64Char(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 43 || c === 47 || c === 95 || c === 45 || c === 61;
}

/** Mostly printable text, not the bytes of an image or a hash. */
function readable(s: string): boolean {
  if (s.length < 20) return false;
  let bad = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 32 && c !== 9 && c !== 10 && c !== 13) || c === 0xfffd || (c >= 127 && c < 160)) bad++;
  }
  return bad <= s.length * 0.05;
}

/** Normalized text as scanned: invisible and bidi controls removed, tag characters decoded to ASCII. */
function scanText(normalized: string): string {
  let text = normalized.replace(INVISIBLE_CHARS, '').replace(BIDI_CHARS, '');
  TAG_CHARS.lastIndex = 0;
  if (TAG_CHARS.test(text)) {
    let spelled = '';
    text = text.replace(TAG_CHARS, (pair) => {
      const code = pair.charCodeAt(1) - 0xdc00;
      if (code >= 0x20 && code < 0x7f) spelled += String.fromCharCode(code);
      return '';
    });
    text += `\n${spelled}`;
  }
  return text;
}

interface Turn {
  input: string[];
  tool_result: string[];
}

/**
 * Text of the new turn: the messages after the last assistant message (an assistant prefill at
 * the very end does not end the turn). System and developer messages are the operator's.
 */
function newTurn(shape: ApiShape, messages: unknown[], toolResults: boolean): Turn {
  const turn: Turn = { input: [], tool_result: [] };
  let end = messages.length;
  while (end > 0 && roleOf(messages[end - 1]) === 'assistant') end--;
  let start = end;
  while (start > 0 && roleOf(messages[start - 1]) !== 'assistant') start--;
  for (let i = start; i < end; i++) {
    const m = messages[i] as Record<string, unknown> | null;
    if (!m || typeof m !== 'object') continue;
    const role = m.role;
    if (shape === 'openai') {
      if (role === 'system' || role === 'developer') continue;
      if (role === 'tool' || role === 'function') {
        if (toolResults) collectText(m.content, turn.tool_result);
      } else {
        collectText(m.content, turn.input);
      }
    } else if (typeof m.content === 'string') {
      turn.input.push(m.content);
    } else if (Array.isArray(m.content)) {
      for (const block of m.content as Array<Record<string, unknown> | null>) {
        if (!block || typeof block !== 'object') continue;
        if (block.type === 'tool_result') {
          if (toolResults) collectText(block.content, turn.tool_result);
        } else if (block.type === 'text' && typeof block.text === 'string') {
          turn.input.push(block.text);
        } else if (block.type === 'document') {
          const source = block.source as Record<string, unknown> | undefined;
          if (source?.type === 'text' && typeof source.data === 'string') turn.input.push(source.data);
        }
      }
    }
  }
  return turn;
}

function roleOf(m: unknown): unknown {
  return m && typeof m === 'object' ? (m as { role?: unknown }).role : undefined;
}

/** A content value's text: a string, or the text of its text parts. */
function collectText(content: unknown, into: string[]): void {
  if (typeof content === 'string') {
    into.push(content);
  } else if (Array.isArray(content)) {
    for (const part of content as Array<Record<string, unknown> | null>) {
      if (part && typeof part === 'object' && typeof part.text === 'string' && (part.type === 'text' || part.type === undefined)) into.push(part.text);
    }
  }
}
