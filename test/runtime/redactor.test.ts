/**
 * The text-level redactor: secrets and PII are replaced whether the text comes whole or in
 * pieces split anywhere; a streamed secret never gets out in part; and only the tail that
 * could still become a match is held back.
 */
import fc from 'fast-check';
import { GuardrailsSchema } from '../../lib/spec/policy';
import { ibanValid, luhnValid, MAX_MATCH_CHARS, outputRules, type OutputRule } from '../../lib/runtime/guardrails/rules';
import { JsonTextRedactor, redactJsonText, redactText, StreamRedactor, type TextRedactor } from '../../lib/runtime/guardrails/redactor';
import { splitAt, splits, type Split } from '../support/splits';

const secretsOnly = outputRules(GuardrailsSchema.parse({}));
const withPii = outputRules(GuardrailsSchema.parse({ output: { pii: true, phone: true } }));

// Fake credentials, assembled so the file itself holds none verbatim.
const AWS_KEY = 'AKIA' + 'IOSFODNN7EXAMPLE';
const ANTHROPIC_KEY = 'sk-ant-' + 'api03-' + 'Xy7kQ2mN8pR4tV6wZ1bC3dF5gH9jK0lM2nP4qS6uW8yA1cE3gI5kO7sU9_-AA';
const OPENAI_KEY = 'sk-' + 'proj-' + 'Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12Wx34';
const GITHUB_TOKEN = 'gh' + 'p_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8';
const JWT =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9' + '.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUgRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ' + '.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
const PRIVATE_KEY = [
  '-----BEGIN RSA PRIVATE KEY-----',
  'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun',
  'VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK',
  'LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo',
  '-----END RSA PRIVATE KEY-----',
].join('\n');
const VISA = '4111 1111 1111 1111';
const IBAN = 'GB29 NWBK 6016 1331 9268 19';

const SECRETS = [AWS_KEY, ANTHROPIC_KEY, OPENAI_KEY, GITHUB_TOKEN, JWT, PRIVATE_KEY];

function stream(redactor: TextRedactor, pieces: readonly string[]): string {
  let out = '';
  for (const p of pieces) out += redactor.push(p);
  return out + redactor.flush();
}

function piecesOf(text: string, split: Parameters<typeof splitAt>[1]): string[] {
  // ASCII only: byte positions are character positions.
  return splitAt(Buffer.from(text, 'latin1'), split).map((b) => b.toString('latin1'));
}

/** Cuts any text (not only ASCII) into pieces the way `split` says. */
function charPieces(text: string, split: Split): string[] {
  if ('every' in split) return text.match(new RegExp(`[^]{1,${split.every}}`, 'g')) ?? [];
  const cuts = [...new Set(split.at.map((p) => p % (text.length + 1)))].sort((x, y) => x - y);
  const pieces: string[] = [];
  let from = 0;
  for (const c of [...cuts, text.length]) {
    if (c > from) pieces.push(text.slice(from, c));
    from = Math.max(from, c);
  }
  return pieces;
}

/** Distinctive pieces of a secret: none of them may reach the client. */
function fragments(secret: string, size = 10): string[] {
  const body = secret.replace(/^-----BEGIN[^\n]*\n/, '');
  const out: string[] = [];
  for (let i = 0; i + size <= body.length; i += size) {
    const piece = body.slice(i, i + size);
    if (/[0-9]/.test(piece) || /[A-Z].*[A-Z]/.test(piece)) out.push(piece);
  }
  return out;
}

const words = fc.constantFrom('the', 'key', 'is', 'here:', 'and', 'then,', 'use', 'it', 'carefully.', '\n', 'ok', 'value', '(see', 'docs)');
const filler = fc.array(words, { maxLength: 8 }).map((w) => w.join(' '));

describe('whole text', () => {
  const cases: Array<[string, string, string]> = [
    ['aws_access_key', `id ${AWS_KEY} and`, 'id [REDACTED:aws_access_key] and'],
    ['aws_access_key (ASIA)', 'ASIA' + 'Y34FZKBOKMUTVV7A.', '[REDACTED:aws_access_key].'],
    ['github_token', `token=${GITHUB_TOKEN}`, 'token=[REDACTED:github_token]'],
    ['github_token (fine-grained)', 'github_pat_' + '11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ', '[REDACTED:github_token]'],
    ['openai_key', `"${OPENAI_KEY}"`, '"[REDACTED:openai_key]"'],
    ['openai_key (legacy)', 'sk-' + 'T3BlbkFJ' + 'a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0', '[REDACTED:openai_key]'],
    ['anthropic_key', `ANTHROPIC_API_KEY=${ANTHROPIC_KEY}\n`, 'ANTHROPIC_API_KEY=[REDACTED:anthropic_key]\n'],
    ['jwt', `Bearer ${JWT}`, 'Bearer [REDACTED:jwt]'],
    ['private_key', `key:\n${PRIVATE_KEY}\ndone`, 'key:\n[REDACTED:private_key]\ndone'],
    ['private_key cut off', `${PRIVATE_KEY.slice(0, 120)}`, '[REDACTED:private_key]'],
  ];
  it.each(cases)('%s', (_name, input, expected) => {
    const r = redactText(input, secretsOnly);
    expect(r.text).toBe(expected);
    expect(r.findings.map((f) => f.count)).toEqual([1]);
  });

  it('leaves look-alikes alone', () => {
    const benign = [
      'AKIA is a prefix; AKIAshort is not a key',
      'sk-learn and sk-some-long-hyphenated-identifier-name are words',
      'ghp_tooShort123',
      'eyJ alone, or eyJhbGciOi.notajwt',
      '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----',
      'task-0123456789abcdefghijkl is an id', // "sk-" inside a word
    ];
    for (const text of benign) {
      const r = redactText(text, secretsOnly);
      expect(r.text).toBe(text);
      expect(r.findings).toEqual([]);
    }
  });

  it('redacts PII only with the PII rules', () => {
    const text = `Mail jane.doe@example.com or call +1 (555) 123-4567; card ${VISA}; IBAN ${IBAN}; SSN 123-45-6789; host 10.20.30.40.`;
    expect(redactText(text, secretsOnly).text).toBe(text);
    expect(redactText(text, withPii).text).toBe(
      'Mail [REDACTED:email] or call [REDACTED:phone]; card [REDACTED:credit_card]; IBAN [REDACTED:iban]; SSN [REDACTED:us_ssn]; host [REDACTED:ipv4].',
    );
  });

  it('checks card numbers with Luhn and IBANs with mod 97', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(ibanValid('GB29NWBK60161331926819')).toBe(true);
    expect(ibanValid('GB28NWBK60161331926819')).toBe(false);
    const text = 'order 4111111111111112, ref 4111 1111 1111 1121, id ORD-2024-000123, GB28 NWBK 6016 1331 9268 19, v1.2.3, 000-12-3456';
    expect(redactText(text, withPii).text).toBe(text);
    expect(redactText('paid with 5555555555554444 and 378282246310005', withPii).text).toBe('paid with [REDACTED:credit_card] and [REDACTED:credit_card]');
  });
});

describe('streamed text', () => {
  const secretArb = fc.constantFrom(...SECRETS);
  const document = fc.array(fc.tuple(filler, secretArb), { minLength: 1, maxLength: 4 }).chain((parts) =>
    filler.map((tail) => parts.map(([f, s]) => `${f} ${s} `).join('') + tail),
  );

  it('a secret split at any point never gets out, and the rest arrives intact and in order', () => {
    fc.assert(
      fc.property(document, splits(30), (text, split) => {
        const out = stream(new StreamRedactor(secretsOnly), piecesOf(text, split));
        expect(out).toBe(redactText(text, secretsOnly).text);
        for (const secret of SECRETS) for (const piece of fragments(secret)) expect(out).not.toContain(piece);
        // Nothing but the secrets changed.
        const expected = SECRETS.reduce((t, s) => t.split(s).join('\u0000'), text).split('\u0000');
        expect(out.split(/\[REDACTED:[a-z_]+\]/)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('cards, IBANs and phone numbers split inside their groups do not get out either', () => {
    const pii = fc.constantFrom(VISA, '4111-1111-1111-1111', '4111111111111111', IBAN, 'GB29NWBK60161331926819', '+1 (555) 123-4567', 'jane.doe@example.com', '123-45-6789', '192.168.10.1');
    const doc = fc.array(fc.tuple(filler, pii), { minLength: 1, maxLength: 4 }).chain((parts) => filler.map((tail) => parts.map(([f, s]) => `${f} ${s} `).join('') + tail));
    fc.assert(
      fc.property(doc, splits(30), (text, split) => {
        const out = stream(new StreamRedactor(withPii), piecesOf(text, split));
        expect(out).toBe(redactText(text, withPii).text);
        for (const digits of ['1111 1111', '1111-1111', '11111111', 'NWBK', '123-4567', 'jane.doe', '45-6789', '168.10']) expect(out).not.toContain(digits);
      }),
      { numRuns: 300 },
    );
  });

  it('gives the same result as the whole text for any mix of groups, separators and splits', () => {
    const token = fc.constantFrom(
      '4111', '1111', '5555', '4444', '378282', '246310005', 'GB29', 'NWBK', '6016', '1331', '9268', '19', 'DE89', '3704', '0044', '0532', '0130', '00',
      '+1', '(555)', '123', '4567', '192.168.1.1', 'a@b.co', 'word', 'OK', AWS_KEY, '-----BEGIN PRIVATE KEY-----', '-----END PRIVATE KEY-----',
    );
    const separator = fc.constantFrom(' ', ' ', ' ', '-', '', '\n', ', ', '  ');
    const soup = fc.array(fc.tuple(token, separator), { maxLength: 40 }).map((parts) => parts.map(([t, s]) => t + s).join(''));
    fc.assert(
      fc.property(soup, splits(30), (text, split) => {
        expect(stream(new StreamRedactor(withPii), piecesOf(text, split))).toBe(redactText(text, withPii).text);
      }),
      { numRuns: 1000 },
    );
  });

  it('gives the same result as the whole text for any mix of secrets\' beginnings, bodies and splits (secret rules only)', () => {
    const token = fc.constantFrom(
      'A', 'AKIA', 'ASIA', 'IOSFODNN7EXAMPLE', 'Z9', 's', 'sk', 'sk-', 'sk-ant-', 'sk-proj-', 'api03', 'g', 'gh', 'ghp_', 'gho_', 'github_pat_', '11ABCDEFG0',
      'e', 'eyJ', 'eyJhbGciOiJIUzI1NiJ9', 'SflKxwRJSMeKKF2QT4fw', '.', '-', '--', '-----', '-----BEGIN', ' RSA', ' PRIVATE KEY', '-----END', 'CERTIFICATE',
      'a1B2c3D4e5F6g7H8i9J0', 'k1L2m3N4o5P6q7R8s9T0', '_', 'x', 'word', '0123456789', AWS_KEY, GITHUB_TOKEN, JWT, OPENAI_KEY, ANTHROPIC_KEY, PRIVATE_KEY,
    );
    const separator = fc.constantFrom('', '', '', ' ', '\n', '=', '(', '"', ', ');
    const soup = fc.array(fc.tuple(token, separator), { maxLength: 40 }).map((parts) => parts.map(([t, s]) => t + s).join(''));
    fc.assert(
      fc.property(soup, splits(30), (text, split) => {
        expect(stream(new StreamRedactor(secretsOnly), piecesOf(text, split))).toBe(redactText(text, secretsOnly).text);
      }),
      { numRuns: 2000 },
    );
  });

  it('holds back the partial word of ordinary text with PII rules on; with the secret rules only a secret\'s possible beginning', () => {
    const prose = fc.array(fc.stringMatching(/^[a-z]{1,12}[,.;:!?]?$/), { minLength: 1, maxLength: 40 }).map((w) => w.join(' '));
    // The lower-case words that may begin a secret: sk-, eyJ, gh[pousr]_, github_pat_.
    const secretStarts = new Set(['s', 'sk', 'e', 'ey', 'g', 'gh', 'ghp', 'gho', 'ghu', 'ghs', 'ghr', 'gi', 'git', 'gith', 'githu', 'github']);
    fc.assert(
      fc.property(prose, splits(40), fc.boolean(), (text, split, pii) => {
        const r = new StreamRedactor(pii ? withPii : secretsOnly);
        let seen = '';
        let out = '';
        for (const piece of piecesOf(text, split)) {
          out += r.push(piece);
          seen += piece;
          const partialWord = seen.slice(seen.lastIndexOf(' ') + 1);
          expect(r.held).toBe(pii || secretStarts.has(partialWord) ? partialWord.length : 0);
          expect(out + seen.slice(seen.length - r.held)).toBe(seen);
        }
        expect(out + r.flush()).toBe(text);
      }),
      { numRuns: 200 },
    );
  });

  it('holds a partial word while it could still become a key, and only that', () => {
    const r = new StreamRedactor(secretsOnly);
    expect(r.push('The id is AKIA')).toBe('The id is ');
    expect(r.push('IOSFODNN7')).toBe('');
    expect(r.held).toBe('AKIAIOSFODNN7'.length);
    expect(r.push('EXAMPLE, rotate it')).toBe('[REDACTED:aws_access_key], rotate it');
    expect(r.held).toBe(0);
    expect(r.flush()).toBe('');
    expect(r.takeFindings().map((f) => [f.rule.id, f.count])).toEqual([['output.secret.aws_access_key', 1]]);
    // A whole key is held too: one more character would make it no key.
    expect(r.push(`id ${AWS_KEY}`)).toBe('id ');
    expect(r.push('X')).toBe(`${AWS_KEY}X`);
    // Only from where a secret could begin: "KIA" cannot, "AKIA" after a lower-case letter can.
    expect(r.push(' KIA')).toBe(' KIA');
    expect(r.push(' xAKIA')).toBe(' x');
    expect(r.held).toBe(4);
    expect(r.push('!')).toBe('AKIA!');
    // Words that cannot begin a secret go out at once, "the" and "Asia" included (not "ASIAN": ASIA and 16 more).
    for (const word of ['Hello', ' world', '42', ' the', ' Asia', ' ASIAn', ' Sky', ' eye', ' gHp_', ' ghx', ' sk_', ' ---x', ' ', '\n']) {
      expect(r.push(word)).toBe(word);
      expect(r.held).toBe(0);
    }
  });

  const ALL_SECRETS = [...SECRETS, 'ASIA' + 'Y34FZKBOKMUTVV7A', 'github_pat_' + '11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ', 'sk-' + 'T3BlbkFJ' + 'a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0'];

  it('holds text ending in every proper prefix of every default secret, from where the secret begins', () => {
    for (const secret of ALL_SECRETS) {
      for (const lead of ['', 'Key: ', 'x=', '(', 'Here:\n']) {
        for (let k = 1; k < secret.length; k++) {
          const prefix = secret.slice(0, k);
          const whole = new StreamRedactor(secretsOnly);
          expect(whole.push(lead + prefix)).toBe(lead);
          expect(whole.held).toBe(k);
          // Pushed in two pieces, the rest of the secret after: redacted, and what follows is not held.
          const split = new StreamRedactor(secretsOnly);
          const out = split.push(lead) + split.push(prefix);
          expect(out).toBe(lead);
          expect(split.held).toBe(k);
          expect(out + split.push(secret.slice(k) + ' done.')).toMatch(/^[^]*\[REDACTED:[a-z_]+\] done\.$/);
          expect(split.held).toBe(0);
        }
      }
    }
  });

  it('releases prose that holds no possible beginning of a secret at once, split anywhere', () => {
    // No 'A' (AKIA/ASIA may follow a lower-case letter), no '-' ("-----BEGIN" needs no boundary),
    // and no word starting with e, g or s (eyJ, gh*_, github_pat_, sk-).
    const word = fc.oneof(
      fc.stringMatching(/^[a-dfhi-rt-zB-Z0-9][a-zB-Z0-9]{0,11}$/),
      fc.constantFrom('café', '中文', 'naïve', '3.5%', '$4.2M', '`code`', 'x_y', 'KIA', 'kyJ', 'hp_x'),
    );
    const punctuated = fc.tuple(fc.constantFrom('', '(', '"', '**'), word, fc.constantFrom('', ',', '.', '!', '?', ':', ';', ')', '"')).map((p) => p.join(''));
    const separator = fc.constantFrom(' ', ' ', ' ', '\n', '\n\n', '\t');
    const text = fc.array(fc.tuple(punctuated, separator), { minLength: 1, maxLength: 40 }).map((parts) => parts.map(([w, s]) => w + s).join(''));
    fc.assert(
      fc.property(text, splits(40), (t, split) => {
        const r = new StreamRedactor(secretsOnly);
        let seen = '';
        let out = '';
        for (const piece of charPieces(t, split)) {
          out += r.push(piece);
          seen += piece;
          expect(r.held).toBe(0);
          expect(out).toBe(seen);
        }
        expect(r.flush()).toBe('');
        expect(r.edits).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('holds digit groups that could still become a card number', () => {
    const r = new StreamRedactor(withPii);
    expect(r.push('Card: 4111 1111 1111 ')).toBe('Card: ');
    expect(r.held).toBe('4111 1111 1111 '.length);
    expect(r.push('1111 thanks')).toBe('[REDACTED:credit_card] ');
    // Without the PII rules, digits are released like words.
    const s = new StreamRedactor(secretsOnly);
    expect(s.push('Card: 4111 1111 1111 ')).toBe('Card: 4111 1111 1111 ');
  });

  it('holds a run of numbers no longer than the longest spaced match', () => {
    const r = new StreamRedactor(withPii);
    let out = '';
    for (let i = 0; i < 500; i++) {
      out += r.push(`${i % 10} `);
      expect(r.held).toBeLessThanOrEqual(48);
    }
    expect(out + r.flush()).toBe(Array.from({ length: 500 }, (_, i) => `${i % 10} `).join(''));
  });

  it('holds a private key block from its BEGIN line until it is closed', () => {
    const r = new StreamRedactor(secretsOnly);
    expect(r.push('Here:\n-----BEGIN RSA PRIV')).toBe('Here:\n');
    const [header, ...lines] = PRIVATE_KEY.split('\n');
    expect(r.push(header.slice('-----BEGIN RSA PRIV'.length) + '\n' + lines.slice(0, 2).join('\n'))).toBe('');
    expect(r.push('\n' + lines.slice(2).join('\n') + '\nThat is all.')).toBe('[REDACTED:private_key]\nThat is all.');
    expect(r.flush()).toBe('');
    // Dashes are held while they may begin a header, and no longer.
    expect(r.push('a ---')).toBe('a ');
    expect(r.push('---')).toBe('-');
    expect(r.push('--BEG')).toBe('--');
    expect(r.held).toBe('-----BEG'.length);
    expect(r.push('IN CERTIFICATE----')).toBe('');
    expect(r.push('-\n')).toBe('-----BEGIN CERTIFICATE-----\n');
    // A certificate is not held past its header.
    const c = new StreamRedactor(secretsOnly);
    expect(c.push('-----BEGIN CERTIFICATE-----\nMIIB\n')).toBe('-----BEGIN CERTIFICATE-----\nMIIB\n');
  });

  it('redacts an over-long private key as far as it came and drops the rest up to its END line', () => {
    const r = new StreamRedactor(secretsOnly);
    let out = r.push('before\n-----BEGIN PRIVATE KEY-----\n');
    const line = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\n';
    for (let i = 0; i < 300; i++) {
      out += r.push(line);
      expect(r.held).toBeLessThanOrEqual(MAX_MATCH_CHARS + line.length);
    }
    out += r.push('-----END PRIVATE KEY-----\nafter');
    out += r.flush();
    expect(out).toBe('before\n[REDACTED:private_key]\nafter');
    expect(out).not.toContain('QUJD');
  });

  it('never holds more than the longest bounded match of one run of text', () => {
    // With PII rules any word may still become an email address: capped.
    const r = new StreamRedactor(withPii);
    let out = '';
    for (let i = 0; i < 50; i++) {
      out += r.push('a'.repeat(1000));
      expect(r.held).toBeLessThanOrEqual(MAX_MATCH_CHARS);
    }
    expect(out + r.flush()).toBe('a'.repeat(50_000));
    // With the secret rules, a run is held only as long as it may still be a JWT's header.
    const s = new StreamRedactor(secretsOnly);
    out = s.push('eyJ');
    for (let i = 0; i < 30; i++) {
      out += s.push('a'.repeat(100));
      expect(s.held).toBe(i < 20 ? 3 + (i + 1) * 100 : 0);
    }
    expect(out + s.flush()).toBe('eyJ' + 'a'.repeat(3_000));
  });

  it('lets warn rules through and reports them; block rules are redacted and reported', () => {
    const cfg = GuardrailsSchema.parse({ actions: { 'output.secret.aws_access_key': 'warn', 'output.secret.jwt': 'block' } });
    const rules = outputRules(cfg);
    const r = new StreamRedactor(rules);
    const out = stream(r, [`a ${AWS_KEY} b ${JWT} c`]);
    expect(out).toBe(`a ${AWS_KEY} b [REDACTED:jwt] c`);
    expect(r.blockedBy?.id).toBe('output.secret.jwt');
    expect(r.takeFindings().map((f) => [f.rule.id, f.rule.action, f.count]).sort()).toEqual([
      ['output.secret.aws_access_key', 'warn', 1],
      ['output.secret.jwt', 'block', 1],
    ]);
    expect(r.takeFindings()).toEqual([]);
  });
});

describe('JSON text (tool-call arguments)', () => {
  const args = { query: `use ${AWS_KEY} now`, note: `line1\n${GITHUB_TOKEN}\t"quoted"`, card: 4111111111111111, nested: [{ jwt: JWT }], n: 42, ok: true };

  it('redacts decoded string values and numbers, keeping the JSON valid', () => {
    const r = redactJsonText(JSON.stringify(args), withPii);
    expect(JSON.parse(r.text)).toEqual({
      query: 'use [REDACTED:aws_access_key] now',
      note: 'line1\n[REDACTED:github_token]\t"quoted"',
      card: '[REDACTED:credit_card]',
      nested: [{ jwt: '[REDACTED:jwt]' }],
      n: 42,
      ok: true,
    });
  });

  it('finds a secret hidden behind JSON escapes', () => {
    const escaped = '{"k":"\\u0041KIA' + AWS_KEY.slice(4) + '"}';
    expect(JSON.parse(redactJsonText(escaped, secretsOnly).text)).toEqual({ k: '[REDACTED:aws_access_key]' });
  });

  it('gives the same valid JSON however the fragments are split', () => {
    const json = JSON.stringify(args, null, 1);
    const whole = redactJsonText(json, withPii).text;
    fc.assert(
      fc.property(splits(40), (split) => {
        const out = stream(new JsonTextRedactor(withPii), piecesOf(json, split));
        expect(JSON.parse(out)).toEqual(JSON.parse(whole));
        expect(out).not.toContain('IOSFODNN');
      }),
      { numRuns: 200 },
    );
  });

  it('redacts arguments that are not JSON as plain text', () => {
    expect(stream(new JsonTextRedactor(secretsOnly), ['key ', AWS_KEY.slice(0, 9), AWS_KEY.slice(9), ' end'])).toBe('key [REDACTED:aws_access_key] end');
  });
});

describe('how far the output stands for the original (consumed, edits)', () => {
  /** JSON text with its string escapes decoded: what a JSON text and its re-encoding have in common. */
  function unescaped(json: string): string {
    return json.replace(/\\(?:u([0-9a-fA-F]{4})|(.))/g, (_m, hex: string | undefined, c: string) =>
      hex ? String.fromCharCode(parseInt(hex, 16)) : ({ n: '\n', t: '\t', r: '\r', b: '\b', f: '\f' } as Record<string, string>)[c] ?? c,
    );
  }

  /** Pushes the pieces, checking after each call what consumed and edits say. Returns the output. */
  function checked(r: TextRedactor, pieces: readonly string[], sameText: (out: string, original: string) => void): string {
    const original = pieces.join('');
    let pushed = 0;
    let out = '';
    let consumed = 0;
    const call = (piece: string | null) => {
      const edits = r.edits;
      const before = r.consumed;
      expect(before).toBe(consumed);
      const o = piece === null ? r.flush() : r.push(piece);
      pushed += piece?.length ?? 0;
      out += o;
      consumed = r.consumed;
      expect(consumed).toBeGreaterThanOrEqual(before);
      expect(consumed).toBeLessThanOrEqual(pushed);
      if (consumed === before) expect(o).toBe('');
      // Nothing replaced in this call: its output is (an encoding of) the original it consumed.
      if (r.edits === edits) sameText(o, original.slice(before, consumed));
    };
    for (const p of pieces) call(p);
    call(null);
    expect(consumed).toBe(original.length);
    return out;
  }

  it('plain text: the output of a call without edits is the original text it consumed', () => {
    fc.assert(
      fc.property(fc.tuple(fc.shuffledSubarray(SECRETS), fc.array(filler, { minLength: 7, maxLength: 7 })), splits(30), fc.boolean(), ([secrets, fill], split, pii) => {
        const text = fill[0] + secrets.map((s, i) => ` ${s} ${fill[i + 1]}`).join('') + ` ${VISA} ${IBAN}`;
        const rules = pii ? withPii : secretsOnly;
        const out = checked(new StreamRedactor(rules), piecesOf(text, split), (o, original) => expect(o).toBe(original));
        expect(out).toBe(redactText(text, rules).text);
      }),
      { numRuns: 200 },
    );
  });

  it('an over-long private key: what is dropped counts as consumed, and as edited', () => {
    const line = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\n';
    const pieces = ['before\n-----BEGIN PRIVATE KEY-----\n', ...Array<string>(200).fill(line), '-----END PRI', 'VATE KEY-----\nafter', ' more'];
    const out = checked(new StreamRedactor(secretsOnly), pieces, (o, original) => expect(o).toBe(original));
    expect(out).toBe('before\n[REDACTED:private_key]\nafter more');
    // Once the block is being dropped, nothing pushed waits: it is final, dropped.
    const r = new StreamRedactor(secretsOnly);
    const lines = pieces.slice(0, 201);
    for (const p of lines) r.push(p);
    expect(r.consumed).toBe(lines.join('').length);
  });

  it('JSON: output so far plus the original not consumed yet is the same JSON, escapes split anywhere', () => {
    const value = fc.dictionary(
      fc.constantFrom('q', 'path', 'note', 'n', 'list'),
      fc.oneof(filler, fc.constantFrom('café/中文 "x" \\ \t\n', 'naïve\u2028', '\u0001'), fc.integer(), fc.constant(null), fc.array(filler, { maxLength: 3 })),
    );
    fc.assert(
      fc.property(value, fc.boolean(), splits(30), (v, escaped, split) => {
        let json = JSON.stringify(v, null, escaped ? 1 : undefined);
        if (escaped) json = json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).replace(/\//g, '\\/').replace(/a/g, '\\u0061');
        const r = new JsonTextRedactor(withPii);
        let out = '';
        for (const piece of charPieces(json, split)) {
          out += r.push(piece);
          expect(JSON.parse(out + json.slice(r.consumed))).toEqual(v);
        }
        out += r.flush();
        expect(r.consumed).toBe(json.length);
        expect(r.edits).toBe(0);
        expect(JSON.parse(out)).toEqual(v);
      }),
      { numRuns: 300 },
    );
  });

  it('JSON with secrets: calls without edits consume what they encode', () => {
    const json = JSON.stringify({ a: `x ${AWS_KEY} y`, b: [JWT, 'caf\u00e9 ok'], c: 4111111111111111 }).replace('\u00e9', '\\u00e9');
    fc.assert(
      fc.property(splits(30), (split) => {
        const out = checked(new JsonTextRedactor(withPii), piecesOf(json, split), (o, original) => expect(unescaped(o)).toBe(unescaped(original)));
        expect(JSON.parse(out)).toEqual({ a: 'x [REDACTED:aws_access_key] y', b: ['[REDACTED:jwt]', 'café ok'], c: '[REDACTED:credit_card]' });
      }),
      { numRuns: 200 },
    );
  });
});

describe('rule set', () => {
  const ids = (rules: OutputRule[]) => rules.map((r) => `${r.id}:${r.action}`);

  it('has the secrets on by default, PII on request, and honours per-rule actions', () => {
    expect(ids(secretsOnly)).toEqual([
      'output.secret.aws_access_key:redact',
      'output.secret.github_token:redact',
      'output.secret.openai_key:redact',
      'output.secret.anthropic_key:redact',
      'output.secret.private_key:redact',
      'output.secret.jwt:redact',
    ]);
    expect(ids(outputRules(GuardrailsSchema.parse({ output: { pii: true } }))).filter((id) => id.startsWith('output.pii'))).toEqual([
      'output.pii.email:redact',
      'output.pii.credit_card:redact',
      'output.pii.iban:redact',
      'output.pii.us_ssn:redact',
      'output.pii.ipv4:redact',
    ]);
    const tuned = outputRules(GuardrailsSchema.parse({ actions: { 'output.secret.jwt': 'off', 'output.pii.email': 'block' } }));
    expect(ids(tuned)).not.toContain('output.secret.jwt:redact');
    expect(ids(tuned)).toContain('output.pii.email:block');
    expect(outputRules(GuardrailsSchema.parse({ enabled: false }))).toEqual([]);
  });
});
