/**
 * Byte-level lookups in JSON text, for the few fields the proxy reads from responses it
 * otherwise forwards untouched (parsing a whole completion to read its usage would cost more
 * than the proxying).
 */

const QUOTE = 34;
const BACKSLASH = 92;

/**
 * Parses the object value of the last occurrence of `"key"` in `buf`, or returns undefined.
 * Inside JSON strings a quote is escaped, so `"key"` followed by a colon can only be a key.
 */
export function lastObjectValue(buf: Buffer, key: string): Record<string, unknown> | undefined {
  const needle = `"${key}"`;
  let at = buf.lastIndexOf(needle);
  while (at >= 0) {
    const value = objectAt(buf, at + needle.length);
    if (value !== undefined) return value;
    if (at === 0) break;
    at = buf.lastIndexOf(needle, at - 1);
  }
  return undefined;
}

function objectAt(buf: Buffer, from: number): Record<string, unknown> | undefined {
  let i = skipSpace(buf, from);
  if (buf[i] !== 58 /* : */) return undefined;
  i = skipSpace(buf, i + 1);
  if (buf[i] !== 123 /* { */) return undefined;
  const end = matchBrace(buf, i);
  if (end < 0) return undefined;
  try {
    return JSON.parse(buf.toString('utf8', i, end + 1)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function skipSpace(buf: Buffer, i: number): number {
  while (i < buf.length && (buf[i] === 32 || buf[i] === 10 || buf[i] === 13 || buf[i] === 9)) i++;
  return i;
}

/** Index of the brace closing the one at `open`, skipping strings; -1 if unbalanced. */
function matchBrace(buf: Buffer, open: number): number {
  let depth = 0;
  for (let i = open; i < buf.length; i++) {
    const c = buf[i];
    if (c === QUOTE) {
      i++;
      while (i < buf.length && buf[i] !== QUOTE) i += buf[i] === BACKSLASH ? 2 : 1;
    } else if (c === 123) depth++;
    else if (c === 125 && --depth === 0) return i;
  }
  return -1;
}

/**
 * Length in bytes of the string value following `"key":"` (escapes counted as written), summed
 * over every occurrence; 0 when there is none. Used to estimate streamed output tokens.
 */
export function stringValueBytes(buf: Buffer, keyColonQuote: Buffer): number {
  let total = 0;
  let at = buf.indexOf(keyColonQuote);
  while (at >= 0) {
    let i = at + keyColonQuote.length;
    const start = i;
    while (i < buf.length && buf[i] !== QUOTE) i += buf[i] === BACKSLASH ? 2 : 1;
    total += i - start;
    at = buf.indexOf(keyColonQuote, i);
  }
  return total;
}

/** Reads a non-negative integer field of a parsed usage object; anything else counts as 0. */
export function count(obj: Record<string, unknown> | undefined, field: string): number {
  const v = obj?.[field];
  return typeof v === 'number' && v > 0 && Number.isFinite(v) ? Math.floor(v) : 0;
}
