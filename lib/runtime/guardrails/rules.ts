/**
 * The guardrail rule catalog: every rule id with its default action, the patterns the output
 * rules look for (with their validators), and the phrases the injection heuristics score.
 * `GuardrailsConfig.actions` overrides a default per rule id; 'off' disables the rule.
 */
import type { GuardrailsConfig } from '../../spec/policy';
import type { RuleAction } from './types';

export const INPUT_MAX_BYTES = 'input.max_bytes';
export const INPUT_MAX_MESSAGES = 'input.max_messages';
export const INPUT_MAX_PROMPT_TOKENS = 'input.max_prompt_tokens';
export const INPUT_UNICODE_INVISIBLE = 'input.unicode.invisible';
export const INPUT_UNICODE_BIDI = 'input.unicode.bidi';
export const INPUT_UNICODE_TAG = 'input.unicode.tag';
export const INPUT_INJECTION = 'input.injection';
export const INPUT_DENY_PREFIX = 'input.deny.';

/** Default actions of the fixed input rules. input.deny.<id> takes its pattern's action. */
export const INPUT_DEFAULTS: Readonly<Record<string, RuleAction>> = {
  [INPUT_MAX_BYTES]: 'block',
  [INPUT_MAX_MESSAGES]: 'block',
  [INPUT_MAX_PROMPT_TOKENS]: 'block',
  [INPUT_UNICODE_INVISIBLE]: 'warn',
  [INPUT_UNICODE_BIDI]: 'warn',
  [INPUT_UNICODE_TAG]: 'warn',
  // Blocking is honoured only at or above injectionBlockScore; below it a 'block' rule warns.
  [INPUT_INJECTION]: 'warn',
};

/** The configured action of a rule, or null when it is off (or all guardrails are). */
export function actionFor(config: GuardrailsConfig, rule: string, fallback: RuleAction): RuleAction | null {
  if (!config.enabled) return null;
  const action = config.actions[rule] ?? fallback;
  return action === 'off' ? null : action;
}

// ---------------------------------------------------------------------------------------------
// Output rules

export type OutputKind = 'secret' | 'pii';

interface OutputPattern {
  readonly kind: OutputKind;
  /** The rule id's last part, also the replacement's label. */
  readonly name: string;
  /** Global; at most 2 characters of lookbehind and 2 of lookahead (the stream redactor keeps that much context). */
  readonly pattern: RegExp;
  /** Cheap test run before the pattern; a text it rejects cannot contain a match. */
  readonly trigger: RegExp;
  /** Rejects pattern matches that are not the real thing (checksums, reserved values). */
  readonly valid?: (match: string) => boolean;
  /** Matches may contain single spaces between short groups (cards, IBANs, phones). */
  readonly spaced?: boolean;
  /**
   * Matches (anchored at the end of the text, with the pattern's left boundary) a non-empty
   * text that may still grow into a match: every proper prefix of a possible match, and more.
   * Must be closed under prefixes. Without one, any trailing word may grow into a match (PII).
   */
  readonly tail?: RegExp;
}

/**
 * A regular expression source matching every non-empty prefix of the sequence of `atoms`
 * (each a single character, class or escape, or a quantified one `[..]{0,n}` that accepts any
 * of its own prefixes): `a(?:b(?:c)?)?`.
 */
function prefixes(atoms: readonly string[]): string {
  let source = '';
  for (let i = atoms.length - 1; i > 0; i--) source = `(?:${atoms[i]}${source})?`;
  return atoms[0] + source;
}

/** The characters of a literal as atoms for prefixes(). */
function chars(literal: string): string[] {
  return [...literal].map((c) => c.replace(/[-\\^$.*+?()[\]{}|]/g, '\\$&'));
}

/** A tail expression: any of the alternatives' prefixes after the left boundary, up to the end of the text. */
function tail(boundary: string, ...alternatives: string[][]): RegExp {
  return new RegExp(`${boundary}(?:${alternatives.map(prefixes).join('|')})$`);
}

/**
 * Upper bound on the length of a match of every pattern except the private key block: the
 * stream redactor never holds back more than this in one run of text.
 */
export const MAX_MATCH_CHARS = 8_192;

const DIGIT = /[0-9]/;

const OUTPUT_PATTERNS: readonly OutputPattern[] = [
  {
    kind: 'secret',
    name: 'aws_access_key',
    pattern: /(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])/g,
    trigger: /AKIA|ASIA/,
    tail: tail('(?<![A-Z0-9])', ['A', '[KS]', 'I', 'A', '[A-Z0-9]{0,16}']),
  },
  {
    // Classic tokens are 36 characters after the prefix; longer runs are redacted whole.
    kind: 'secret',
    name: 'github_token',
    pattern: /(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,251})/g,
    trigger: /gh[pousr]_|github_pat_/,
    tail: tail('(?<![A-Za-z0-9_])', ['g', 'h', '[pousr]', '_', '[A-Za-z0-9]{0,251}'], [...chars('github_pat_'), '[A-Za-z0-9_]{0,251}']),
  },
  {
    // sk-..., sk-proj-..., sk-svcacct-..., sk-admin-...; not sk-ant- (Anthropic's, below).
    kind: 'secret',
    name: 'openai_key',
    pattern: /(?<![A-Za-z0-9_-])sk-(?!ant-)[A-Za-z0-9_-]{20,300}/g,
    trigger: /sk-/,
    tail: tail('(?<![A-Za-z0-9_-])', [...chars('sk-'), '[A-Za-z0-9_-]{0,300}']),
    // Keys are random: a hyphenated word like sk-some-long-identifier-name is not one.
    valid: (m) => DIGIT.test(m) && /[A-Za-z]/.test(m.slice(3)),
  },
  {
    kind: 'secret',
    name: 'anthropic_key',
    pattern: /(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{20,300}/g,
    trigger: /sk-ant-/,
    tail: tail('(?<![A-Za-z0-9_-])', [...chars('sk-ant-'), '[A-Za-z0-9_-]{0,300}']),
  },
  {
    // Up to the END line, or to the end of the text when the block is cut off.
    kind: 'secret',
    name: 'private_key',
    pattern: /-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----[\s\S]*?(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----|$)/g,
    trigger: /-----BEGIN/,
    // The header being written, up to "-----BEGIN RSA PRIVATE KEY----"; from a whole header
    // on, the pattern itself matches (up to the end of the text while the block is open).
    tail: tail('', [...chars('-----BEGIN'), '[A-Z0-9 ]{0,61}', '-{0,4}']),
  },
  {
    // header.payload.signature, both JSON parts base64url of '{"'.
    kind: 'secret',
    name: 'jwt',
    pattern: /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,2000}\.eyJ[A-Za-z0-9_-]{5,4000}\.[A-Za-z0-9_-]{0,1000}/g,
    trigger: /eyJ/,
    tail: tail('(?<![A-Za-z0-9_-])', [...chars('eyJ'), '[A-Za-z0-9_-]{0,2000}', '\\.', ...chars('eyJ'), '[A-Za-z0-9_-]{0,4000}', '\\.', '[A-Za-z0-9_-]{0,1000}']),
  },
  {
    kind: 'pii',
    name: 'email',
    pattern: /(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])/g,
    trigger: /@/,
  },
  {
    // 13-19 digits, plain or grouped 4-4-4-4(-1..3) or 4-6-4/5 (Amex, Diners) with one separator kind.
    kind: 'pii',
    name: 'credit_card',
    pattern: /(?<![0-9])(?<![0-9][ -])(?:[2-6][0-9]{12,18}|[2-6][0-9]{3}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?:\1[0-9]{1,3})?|3[0-9]{3}([ -])[0-9]{6}\2[0-9]{4,5})(?![0-9])/g,
    trigger: DIGIT,
    valid: (m) => luhnValid(m.replace(/[ -]/g, '')),
    spaced: true,
  },
  {
    // Country code, check digits, then groups of four, unspaced or single-spaced.
    kind: 'pii',
    name: 'iban',
    pattern: /(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}( ?)[A-Z0-9]{4}(?:\1[A-Z0-9]{4}){1,6}(?:\1[A-Z0-9]{1,3})?(?![A-Za-z0-9])/g,
    trigger: DIGIT,
    valid: (m) => ibanValid(m.replace(/ /g, '')),
    spaced: true,
  },
  {
    // AAA-GG-SSSS, without the never-issued area numbers 000, 666, 9xx, group 00 and serial 0000.
    kind: 'pii',
    name: 'us_ssn',
    pattern: /(?<![0-9-])(?!000|666|9[0-9]{2})[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![0-9-])/g,
    trigger: DIGIT,
  },
  {
    kind: 'pii',
    name: 'ipv4',
    pattern: /(?<![0-9A-Za-z.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?![0-9]|\.[0-9])/g,
    trigger: DIGIT,
  },
  {
    // NANP-style numbers with an optional country code.
    kind: 'pii',
    name: 'phone',
    pattern: /(?<![0-9+])(?:\+?[0-9]{1,3}[ .-]?)?(?:\([0-9]{3}\)|[0-9]{3})[ .-]?[0-9]{3}[ .-]?[0-9]{4}(?![0-9])/g,
    trigger: DIGIT,
    // A bare run of digits is an id or a timestamp far more often than a phone number.
    valid: (m) => /[ .()+-]/.test(m),
    spaced: true,
  },
];

/** An output rule that is on, with its effective action. */
export interface OutputRule {
  /** e.g. output.secret.aws_access_key */
  readonly id: string;
  readonly kind: OutputKind;
  readonly name: string;
  readonly action: RuleAction;
  readonly pattern: RegExp;
  readonly trigger: RegExp;
  readonly valid?: (match: string) => boolean;
  readonly spaced: boolean;
  /** See OutputPattern.tail; null: any trailing word may still grow into a match. */
  readonly tail: RegExp | null;
  /** `[REDACTED:<name>]`: no quotes or backslashes, so it is valid inside a JSON string as is. */
  readonly replacement: string;
}

export function outputRuleId(kind: OutputKind, name: string): string {
  return `output.${kind}.${name}`;
}

/**
 * The output rules a config turns on, in precedence order (secrets first). Secrets are on by
 * default; PII rules when `output.pii` is set (phone when `output.phone` is), or when
 * `actions` names the rule with an action other than 'off'.
 */
export function outputRules(config: GuardrailsConfig): OutputRule[] {
  if (!config.enabled) return [];
  const rules: OutputRule[] = [];
  for (const p of OUTPUT_PATTERNS) {
    const id = outputRuleId(p.kind, p.name);
    const optedIn = p.kind === 'secret' || (p.name === 'phone' ? config.output.phone : config.output.pii) || config.actions[id] !== undefined;
    if (!optedIn) continue;
    const action = actionFor(config, id, 'redact');
    if (!action) continue;
    rules.push({
      id,
      kind: p.kind,
      name: p.name,
      action,
      pattern: p.pattern,
      trigger: p.trigger,
      valid: p.valid,
      spaced: p.spaced === true,
      tail: p.tail ?? null,
      replacement: `[REDACTED:${p.name}]`,
    });
  }
  return rules;
}

/** Every output rule id, for documentation and config validation. */
export const OUTPUT_RULE_IDS: readonly string[] = OUTPUT_PATTERNS.map((p) => outputRuleId(p.kind, p.name));

// ---------------------------------------------------------------------------------------------
// Validators

/** Luhn checksum over a string of digits (payment card numbers). */
export function luhnValid(digits: string): boolean {
  if (digits.length < 13 || digits.length > 19) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** ISO 13616 check: the IBAN with its first four characters moved to the end, letters as 10..35, is 1 mod 97. */
export function ibanValid(iban: string): boolean {
  if (iban.length < 15 || iban.length > 34) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let rest = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const c = rearranged.charCodeAt(i);
    if (c >= 48 && c <= 57) rest = (rest * 10 + (c - 48)) % 97;
    else if (c >= 65 && c <= 90) rest = (rest * 100 + (c - 55)) % 97;
    else return false;
  }
  return rest === 1;
}

// ---------------------------------------------------------------------------------------------
// Input: Unicode classes and injection phrases (matched against NFKC-normalized, lower-cased text)

/** Zero-width space/non-joiner/joiner, word joiner, BOM, soft hyphen, Mongolian vowel separator. */
export const INVISIBLE_CHARS = /[\u200B-\u200D\u2060\uFEFF\u00AD\u180E]/g;
/** Embeddings and overrides (LRE RLE PDF LRO RLO), isolates (LRI RLI FSI PDI), LRM and RLM. */
export const BIDI_CHARS = /[\u202A-\u202E\u2066-\u2069\u200E\u200F]/g;
/** Tag characters U+E0000-U+E007F (as UTF-16 surrogate pairs); they can spell ASCII invisibly. */
export const TAG_CHARS = /\uDB40[\uDC00-\uDC7F]/g;

/** "ignore/disregard/forget ... previous instructions": verb, up to four words, an instruction noun. */
export const OVERRIDE_PHRASE =
  /\b(?:ignore|disregard|forget|override|bypass|abandon|discard|neglect)\s+((?:[a-z'-]+\s+){0,4}?)(?:instructions?|prompts?|rules|directions|directives|guidelines|guidance|constraints|commands|programming|context)\b|\b(?:ignore|disregard|forget)\s+(?:everything|anything|all)\s+(?:above|before|prior|previously|earlier|you (?:were|have been) told)\b/g;
/** One of these among the words between verb and noun makes it an override (not "ignore the rules of chess"). */
export const OVERRIDE_SCOPE = new Set([
  'all', 'any', 'every', 'previous', 'prior', 'preceding', 'above', 'earlier', 'former', 'old', 'original', 'initial',
  'your', 'system', 'developer', 'safety',
]);

/**
 * "reveal/print/repeat your system prompt / initial instructions", "what are your instructions".
 * A question about system prompts in general ("tell me about the system prompt of ...", "what
 * is the system prompt for") is not one.
 */
export const EXTRACTION_PHRASE =
  /\b(?:reveal|print|show|display|output|repeat|tell|give|share|leak|dump|expose|disclose|recite|echo|write out|spell out|provide)(?:\s+(?:me|us))?\s+(?:(?!about\b|how\b|of\b|for\b)[a-z'-]+\s+){0,4}?(?:(?:system|developer) (?:prompt|message|instructions)|pre-?prompt|(?:initial|original|hidden|secret|internal|first|full|exact|verbatim) (?:system )?(?:prompt|instructions)|your (?:instructions|prompt|rules|guidelines|directives)|(?:instructions|prompt) (?:above|you were given)|(?:text|words|everything) above)\b|\bwhat(?:'s| is| are| were| was)\s+(?:in\s+)?your\s+(?:(?:full|exact|initial|original|hidden|secret|system)\s+)*(?:prompt|instructions|system prompt|rules|guidelines|directives)\b/;

/** Chat-template role markers and role lines that have no business inside user text. */
export const ROLE_MARKER =
  /<\|(?:im_start|im_end|system|user|assistant|endoftext|start_header_id|end_header_id|eot_id)\|>|\[\/?inst\]|<<\/?sys>>|<\/?(?:system|user|assistant)>|^[ \t]*#{1,6}[ \t]*system[ \t]*:|^[ \t]*system[ \t]*:/m;

/** A run of base64 characters that is hex only is decoded as hex. */
export const HEX_ONLY = /^(?:[0-9a-fA-F]{2})+$/;
