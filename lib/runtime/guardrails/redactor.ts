/**
 * Text-level redaction of secrets and PII, whole or streamed.
 *
 * Streamed text is released as it comes except for the tail that could still become (part of)
 * a match: from the earliest position where the text left could be the beginning of a match
 * of a rule (each rule's `tail`: "AK", "sk-ant-api0", "eyJhbGc", "-----BEGIN RSA PRIV"), so
 * with the secret rules an ordinary word is released at once. A PII rule has no such tail (an
 * email address can start with any word, digits can grow into a card number): when one is on,
 * the trailing run of non-whitespace is held too and, when card, IBAN or phone rules are on,
 * that run extended backwards over short digit/letter groups separated by single spaces (when
 * the groups hold a digit). A match seen so far that reaches into that tail is held whole,
 * since it may still grow (a private key block stays held until its END line). So a match can
 * never straddle what was released and what is held, however the text is split.
 * Every pattern but the private key block is bounded (MAX_MATCH_CHARS), so one run of text is
 * never held longer than that; a private key block longer than that is redacted as far as it
 * came and the rest of it dropped up to its END line.
 *
 * For callers that keep the original text of what they push (the stream guard sends the
 * provider's own bytes when nothing was replaced), a redactor also tells how far its output
 * is final in original characters (`consumed`) and whether the output differs from that
 * original text other than in JSON escapes (`edits`).
 */
import { MAX_MATCH_CHARS, type OutputRule } from './rules';

export interface RedactionFinding {
  readonly rule: OutputRule;
  readonly count: number;
}

/** What StreamRedactor and JsonTextRedactor have in common. */
export interface TextRedactor {
  /** Adds text; returns what can be released now, redacted. */
  push(text: string): string;
  /** End of the text (after `last`, if given): everything still held, redacted. The redactor can be reused afterwards. */
  flush(last?: string): string;
  /** Matches released since the last call, per rule. */
  takeFindings(): RedactionFinding[];
  /** Characters held back right now. */
  readonly held: number;
  /**
   * Original characters pushed so far (since construction, across flushes) whose output has
   * been returned: the output returned so far stands for exactly the first `consumed` of them.
   * Never inside a match, an escape sequence or a dropped key block.
   */
  readonly consumed: number;
  /**
   * Grows whenever returned output is not the original text it stands for (a replacement, or
   * text of an over-long key block dropped); a JSON redactor's re-encoding of string escapes
   * does not count. Unchanged across a push or flush: its output is the original text.
   */
  readonly edits: number;
  /** The first rule with action 'block' that matched, or null. */
  readonly blockedBy: OutputRule | null;
}

interface Match {
  start: number;
  end: number;
  rule: OutputRule;
  order: number;
}

/** Lookbehind context kept from released text (the longest lookbehind in the patterns). */
const CONTEXT_CHARS = 2;
/** Longest token of a spaced match (a phone's "+1-555-123") before a single space. */
const MAX_GROUP_CHARS = 12;
/** Longest spaced match: an IBAN of 34 characters in groups of four (42), with room to spare. */
const MAX_SPACED_MATCH = 48;
const BEGIN_MARKER = '-----BEGIN';
const PEM_END = /-----END[A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----/;
/** Kept while dropping an over-long key block, so an END line split across pushes is still found. */
const PEM_END_TAIL = 80;

export interface StreamRedactorOptions {
  /** Wrap replacements in double quotes (for matches outside the strings of a JSON text). */
  readonly quote?: boolean;
}

export class StreamRedactor implements TextRedactor {
  private pending = '';
  /** Characters pushed since construction. */
  private pushed = 0;
  private changes = 0;
  /** The last released characters of the original text, for lookbehinds. */
  private context = '';
  /** Inside a private key block too long to hold: dropped until its END line. */
  private dropping = false;
  private readonly found = new Map<OutputRule, number>();
  private firstBlock: OutputRule | null = null;
  private readonly spaced: boolean;
  /** A rule without a tail expression is on: any trailing word is held. */
  private readonly words: boolean;
  /** The rules' tail expressions in one (global, searched from the new text on), or null. */
  private readonly tail: RegExp | null;
  private readonly privateKey: OutputRule | undefined;
  private readonly replacements: Map<OutputRule, string>;

  constructor(
    private readonly rules: readonly OutputRule[],
    options: StreamRedactorOptions = {},
  ) {
    this.spaced = rules.some((r) => r.spaced);
    this.words = rules.some((r) => r.tail === null);
    this.tail = tailExpression(rules);
    this.privateKey = rules.find((r) => r.name === 'private_key');
    this.replacements = new Map(rules.map((r) => [r, options.quote ? `"${r.replacement}"` : r.replacement]));
  }

  get held(): number {
    return this.pending.length;
  }

  /** Pushed characters whose output is not final yet (a dropped key block's tail is final: dropped). */
  get unresolved(): number {
    return this.dropping ? 0 : this.pending.length;
  }

  get consumed(): number {
    return this.pushed - this.unresolved;
  }

  get edits(): number {
    return this.changes;
  }

  get blockedBy(): OutputRule | null {
    return this.firstBlock;
  }

  push(text: string): string {
    this.pushed += text.length;
    if (text.length === 0 || this.rules.length === 0) return text;
    this.pending += text;
    return this.release(false);
  }

  flush(last = ''): string {
    this.pushed += last.length;
    this.pending += last;
    const out = this.release(true);
    this.context = '';
    this.dropping = false;
    return out;
  }

  takeFindings(): RedactionFinding[] {
    if (this.found.size === 0) return [];
    const out = [...this.found].map(([rule, count]) => ({ rule, count }));
    this.found.clear();
    return out;
  }

  private release(final: boolean): string {
    if (this.dropping) {
      // What came since the last call is dropped, at least in part.
      this.changes++;
      if (!this.skipDroppedKey(final)) return '';
    }
    const text = this.context + this.pending;
    const base = this.context.length;
    const n = text.length;
    if (n === base) return '';
    const matches = this.rules.length === 0 ? [] : scan(this.rules, text, base);
    let hold = final ? n : this.holdStart(text, base);
    let overflow: Match | null = null;
    if (!final) {
      if (n - hold > MAX_MATCH_CHARS && !text.startsWith(BEGIN_MARKER, hold)) hold = n - MAX_MATCH_CHARS;
      // A match reaching into the held tail may still grow: hold it whole.
      for (let moved = true; moved; ) {
        moved = false;
        for (const m of matches) {
          if (m.start < hold && m.end >= hold) {
            hold = m.start;
            moved = true;
          }
        }
      }
      if (this.privateKey && n - hold > MAX_MATCH_CHARS && text.startsWith(BEGIN_MARKER, hold)) {
        // An unclosed key block too long to hold: redact what came, drop the rest of it.
        overflow = { start: hold, end: n, rule: this.privateKey, order: -1 };
        hold = n;
      }
    }
    let out = '';
    let at = base;
    const chosen = overflow ? [...matches.filter((m) => m.end <= overflow!.start), overflow] : matches;
    for (const m of chosen) {
      if (m.start < at) continue; // overlaps one already taken (sorted by start, longest first)
      if (m.end > hold) break;
      out += text.slice(at, m.start);
      out += this.apply(m, text);
      at = m.end;
    }
    out += text.slice(at, hold);
    this.pending = text.slice(hold);
    this.context = text.slice(Math.max(0, hold - CONTEXT_CHARS), hold);
    if (overflow && overflow.rule.action !== 'warn') {
      this.changes++;
      this.dropping = true;
      this.pending = '';
      this.context = '';
    }
    return out;
  }

  private apply(m: Match, text: string): string {
    const rule = m.rule;
    this.found.set(rule, (this.found.get(rule) ?? 0) + 1);
    if (rule.action === 'block' && !this.firstBlock) this.firstBlock = rule;
    if (rule.action === 'warn') return text.slice(m.start, m.end);
    this.changes++;
    return this.replacements.get(rule)!;
  }

  /** While dropping a key block: false if its END line has not come yet (pending then holds only a tail). */
  private skipDroppedKey(final: boolean): boolean {
    const end = PEM_END.exec(this.pending);
    if (!end) {
      this.pending = final ? '' : this.pending.slice(-PEM_END_TAIL);
      return false;
    }
    this.dropping = false;
    this.pending = this.pending.slice(end.index + end[0].length);
    this.context = '--';
    return true;
  }

  /**
   * Where the tail that could still become a match starts (see the file comment), not counting
   * matches seen so far that reach the end (the caller holds those).
   */
  private holdStart(text: string, base: number): number {
    const n = text.length;
    let hold = n;
    if (this.words) {
      while (hold > base && !isSpace(text.charCodeAt(hold - 1))) hold--;
      if (this.spaced && allGroupChars(text, hold, n)) hold = spacedGroupsStart(text, hold, base);
    }
    const tail = this.tail;
    if (tail) {
      // Released text cannot start a match still growing: look from the new text on (its
      // lookbehinds see the context). The leftmost tail that reaches the end is the earliest.
      tail.lastIndex = base;
      const m = tail.exec(text);
      if (m && m.index < hold) hold = m.index;
    }
    return hold;
  }
}

/**
 * Redacts string values (and bare numbers) inside a JSON text that arrives in fragments, such
 * as streamed tool-call arguments; strings are decoded before scanning, so escapes cannot hide
 * a match, and re-encoded after. A text that does not start with '{' or '[' is redacted as
 * plain text.
 */
export class JsonTextRedactor implements TextRedactor {
  private mode: 'start' | 'json' | 'text' = 'start';
  private inString = false;
  /** An escape sequence split across fragments: "\\" or "\\u00". */
  private escape = '';
  private readonly strings: StreamRedactor;
  private readonly outside: StreamRedactor;
  /** Original characters pushed since construction. */
  private pushed = 0;
  /** Decoded characters of the string being read pushed into `strings` so far. */
  private decodedInString = 0;
  /**
   * Escapes of the string being read not known to be released yet, as pairs (index of the
   * decoded character, original characters beyond one): maps what `strings` holds back to
   * original characters.
   */
  private escapes: number[] = [];

  constructor(rules: readonly OutputRule[]) {
    this.strings = new StreamRedactor(rules);
    // A number replaced outside a string must become a string to keep the JSON valid.
    this.outside = new StreamRedactor(rules, { quote: true });
  }

  get held(): number {
    return this.strings.held + this.outside.held + this.escape.length;
  }

  get blockedBy(): OutputRule | null {
    return this.strings.blockedBy ?? this.outside.blockedBy;
  }

  get consumed(): number {
    return this.pushed - this.heldOriginal();
  }

  get edits(): number {
    return this.strings.edits + this.outside.edits;
  }

  /** Original characters not released yet. Outside strings (and in text mode) they are held one for one. */
  private heldOriginal(): number {
    if (this.mode === 'text') return this.strings.unresolved;
    if (this.mode === 'start') return 0;
    if (!this.inString) return this.outside.unresolved;
    const held = this.strings.unresolved;
    const from = this.decodedInString - held;
    let extra = 0;
    const escapes = this.escapes;
    if (escapes.length) {
      let keep = 0;
      for (let i = 0; i < escapes.length; i += 2) {
        if (escapes[i] < from) continue;
        extra += escapes[i + 1];
        escapes[keep++] = escapes[i];
        escapes[keep++] = escapes[i + 1];
      }
      escapes.length = keep;
    }
    return held + extra + this.escape.length;
  }

  takeFindings(): RedactionFinding[] {
    const a = this.strings.takeFindings();
    const b = this.outside.takeFindings();
    if (b.length === 0) return a;
    const merged = new Map<OutputRule, number>();
    for (const f of [...a, ...b]) merged.set(f.rule, (merged.get(f.rule) ?? 0) + f.count);
    return [...merged].map(([rule, count]) => ({ rule, count }));
  }

  push(fragment: string): string {
    this.pushed += fragment.length;
    if (this.mode === 'start') {
      const first = fragment.search(/\S/);
      if (first < 0) return fragment;
      const c = fragment[first];
      this.mode = c === '{' || c === '[' ? 'json' : 'text';
    }
    if (this.mode === 'text') return this.strings.push(fragment);
    let out = '';
    let i = 0;
    const len = fragment.length;
    while (i < len) {
      if (!this.inString) {
        const q = fragment.indexOf('"', i);
        if (q < 0) {
          out += this.outside.push(fragment.slice(i));
          break;
        }
        out += this.outside.push(fragment.slice(i, q)) + this.outside.flush() + '"';
        this.inString = true;
        i = q + 1;
        continue;
      }
      // Inside a string: decode up to the closing quote or the end of the fragment.
      let decoded = '';
      let closed = false;
      while (i < len) {
        if (this.escape) {
          this.escape += fragment[i++];
          const done = this.escape[1] === 'u' ? this.escape.length === 6 : this.escape.length === 2;
          if (done) {
            const d = decodeEscape(this.escape);
            if (d.length < this.escape.length) this.escapes.push(this.decodedInString + decoded.length + d.length - 1, this.escape.length - d.length);
            decoded += d;
            this.escape = '';
          }
          continue;
        }
        const q = fragment.indexOf('"', i);
        const b = fragment.indexOf('\\', i);
        const stop = q < 0 ? b : b < 0 ? q : Math.min(q, b);
        if (stop < 0) {
          decoded += fragment.slice(i);
          i = len;
          break;
        }
        decoded += fragment.slice(i, stop);
        i = stop + 1;
        if (stop === q) {
          closed = true;
          break;
        }
        this.escape = '\\';
      }
      if (closed) {
        out += encodeJsonChars(this.strings.push(decoded) + this.strings.flush()) + '"';
        this.inString = false;
        this.decodedInString = 0;
        this.escapes.length = 0;
      } else {
        out += encodeJsonChars(this.strings.push(decoded));
        this.decodedInString += decoded.length;
      }
    }
    return out;
  }

  flush(last = ''): string {
    let out = last ? this.push(last) : '';
    if (this.mode === 'text') out += this.strings.flush();
    else if (this.inString) out += encodeJsonChars(this.strings.flush()) + this.escape;
    else out += this.outside.flush();
    this.mode = 'start';
    this.inString = false;
    this.escape = '';
    this.decodedInString = 0;
    this.escapes.length = 0;
    return out;
  }
}

/** Redacts a whole text at once. Returns the same string when nothing matched. */
export function redactText(text: string, rules: readonly OutputRule[]): { text: string; findings: RedactionFinding[]; blockedBy: OutputRule | null } {
  if (!rules.some((r) => r.trigger.test(text))) return { text, findings: [], blockedBy: null };
  const r = new StreamRedactor(rules);
  const out = r.flush(text);
  const findings = r.takeFindings();
  return { text: findings.length ? out : text, findings, blockedBy: r.blockedBy };
}

/** Redacts the strings of a whole JSON text (tool-call arguments). Returns the same string when nothing matched. */
export function redactJsonText(json: string, rules: readonly OutputRule[]): { text: string; findings: RedactionFinding[]; blockedBy: OutputRule | null } {
  if (!ASCII_ESCAPE.test(json) && !rules.some((r) => r.trigger.test(json))) return { text: json, findings: [], blockedBy: null };
  const r = new JsonTextRedactor(rules);
  const out = r.flush(json);
  const findings = r.takeFindings();
  // Re-encoding may write escapes differently: keep the original unless something was replaced.
  const replaced = findings.some((f) => f.rule.action !== 'warn');
  return { text: replaced ? out : json, findings, blockedBy: r.blockedBy };
}

/** A JSON escape of a printable ASCII character, which could spell a secret's prefix. */
export const ASCII_ESCAPE = /\\u00[2-7]/;

const tailExpressions = new WeakMap<readonly OutputRule[], RegExp | null>();

/** One expression for the tails of the rules that have one (cached per rule list). */
function tailExpression(rules: readonly OutputRule[]): RegExp | null {
  let re = tailExpressions.get(rules);
  if (re === undefined) {
    const sources = rules.filter((r) => r.tail !== null).map((r) => `(?:${r.tail!.source})`);
    re = sources.length ? new RegExp(sources.join('|'), 'g') : null;
    tailExpressions.set(rules, re);
  }
  return re;
}

/** Every validated match of every rule in text[from..], sorted by start, longest first. */
function scan(rules: readonly OutputRule[], text: string, from: number): Match[] {
  const matches: Match[] = [];
  for (let order = 0; order < rules.length; order++) {
    const rule = rules[order];
    if (!rule.trigger.test(text)) continue;
    const re = rule.pattern;
    re.lastIndex = from;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      if (m[0].length === 0) {
        re.lastIndex++;
        continue;
      }
      if (rule.valid && !rule.valid(m[0])) {
        // A rejected match may hide a valid one starting inside it (a card within a longer number).
        re.lastIndex = m.index + 1;
        continue;
      }
      matches.push({ start: m.index, end: m.index + m[0].length, rule, order });
    }
  }
  if (matches.length > 1) matches.sort((a, b) => a.start - b.start || b.end - a.end || a.order - b.order);
  return matches;
}

/**
 * Extends the hold backwards from `hold` over groups a card, IBAN or phone number may be
 * written in ("4111 1111 1111 ", "GB29 NWBK 6016"): tokens of up to MAX_GROUP_CHARS of
 * [0-9A-Z()+.-] before single spaces, when they include a digit. Ordinary words end it.
 */
function spacedGroupsStart(text: string, hold: number, base: number): number {
  // A spaced match still growing ends past the text, so it starts within its longest length of the end.
  const floor = Math.max(base, text.length - MAX_SPACED_MATCH);
  let j = hold;
  let digit = hasDigit(text, hold, text.length);
  for (;;) {
    if (j - 2 < floor || text.charCodeAt(j - 1) !== 32 || !isGroupChar(text.charCodeAt(j - 2))) break;
    let k = j - 1;
    while (k > floor && isGroupChar(text.charCodeAt(k - 1)) && j - k <= MAX_GROUP_CHARS) k--;
    const tokenDigit = hasDigit(text, k, j - 1);
    if (!tokenDigit && !isShortUpper(text, k, j - 1)) break;
    digit ||= tokenDigit;
    j = k;
    if (k === floor || !isSpace(text.charCodeAt(k - 1))) break;
  }
  return digit ? j : hold;
}

/** The trailing run could continue a spaced match only if it is made of group characters (or empty). */
function allGroupChars(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (!isGroupChar(text.charCodeAt(i))) return false;
  return true;
}

function isGroupChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || c === 40 || c === 41 || c === 43 || c === 45 || c === 46;
}

function hasDigit(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) return true;
  }
  return false;
}

/** An IBAN's letters-only group such as a bank code: NWBK. */
function isShortUpper(text: string, from: number, to: number): boolean {
  if (to - from > 4) return false;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c < 65 || c > 90) return false;
  }
  return true;
}

function isSpace(c: number): boolean {
  if (c === 32 || (c >= 9 && c <= 13)) return true;
  if (c < 128) return false;
  return c === 0x85 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000;
}

const SIMPLE_ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

function decodeEscape(seq: string): string {
  if (seq[1] === 'u') {
    const code = Number.parseInt(seq.slice(2), 16);
    return Number.isNaN(code) ? seq : String.fromCharCode(code);
  }
  return SIMPLE_ESCAPES[seq[1]] ?? seq.slice(1);
}

/** The characters of a JSON string literal for `s`, without the quotes. */
function encodeJsonChars(s: string): string {
  if (s.length === 0) return '';
  const quoted = JSON.stringify(s);
  return quoted.slice(1, -1);
}
