/**
 * The upstream response parser: whatever way the bytes are split on the wire, it reports the
 * same status, headers, body and keep-alive verdict; malformed responses throw.
 */
import fc from 'fast-check';
import { splitAt, splits as splitsOf, type Split } from '../support/splits';
import { ResponseParseError, ResponseParser, type ResponseHeaders } from '../../lib/runtime/http/response-parser';

interface Parsed {
  heads: Array<{ status: number; headers: ResponseHeaders }>;
  body: Buffer;
  bodyChunks: number;
  /** onEnd's argument, or undefined if the response never ended. */
  keepAlive: boolean | undefined;
  ends: number;
  /** closed()'s return, when the connection was closed after the last byte. */
  closedResult?: boolean;
}

/** Feeds `pieces` to a fresh parser, then (optionally) reports the connection closed. */
function parse(pieces: Buffer[], options: { head?: boolean; close?: boolean } = {}): Parsed {
  const out: Parsed = { heads: [], body: Buffer.alloc(0), bodyChunks: 0, keepAlive: undefined, ends: 0 };
  const bodies: Buffer[] = [];
  const parser = new ResponseParser(
    {
      onHead: (status, headers) => out.heads.push({ status, headers }),
      onBody: (chunk) => {
        // Copy: the parser hands out views of its input, which must stay valid only for the call.
        bodies.push(Buffer.from(chunk));
        out.bodyChunks++;
      },
      onEnd: (keepAlive) => {
        out.keepAlive = keepAlive;
        out.ends++;
      },
    },
    options.head === true,
  );
  for (const piece of pieces) parser.execute(piece);
  if (options.close) out.closedResult = parser.closed();
  out.body = Buffer.concat(bodies);
  return out;
}

const splits: fc.Arbitrary<Split> = splitsOf(40);

interface Case {
  name: string;
  raw: string | Buffer;
  head?: boolean;
  /** The body is delimited by the connection closing. */
  close?: boolean;
  status: number;
  headers: ResponseHeaders;
  body: string | Buffer;
  keepAlive: boolean;
}

const json = '{"id":"chatcmpl-1","choices":[{"message":{"content":"héllo wörld"}}]}';
const jsonBytes = Buffer.byteLength(json);
const binary = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 37) & 0xff));

const cases: Case[] = [
  {
    name: 'content-length, keep-alive by default in HTTP/1.1',
    raw: `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${jsonBytes}\r\nX-Request-Id: req_1\r\n\r\n${json}`,
    status: 200,
    headers: { 'content-type': 'application/json', 'content-length': String(jsonBytes), 'x-request-id': 'req_1' },
    body: json,
    keepAlive: true,
  },
  {
    name: 'binary body with content-length',
    raw: Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${binary.length}\r\n\r\n`), binary]),
    status: 200,
    headers: { 'content-length': String(binary.length) },
    body: binary,
    keepAlive: true,
  },
  {
    name: 'content-length with connection: close',
    raw: `HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello`,
    status: 201,
    headers: { connection: 'close', 'content-length': '5' },
    body: 'hello',
    keepAlive: false,
  },
  {
    name: 'content-length 0',
    raw: `HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n`,
    status: 200,
    headers: { 'content-length': '0' },
    body: '',
    keepAlive: true,
  },
  {
    name: 'chunked with chunk extensions and trailers',
    raw:
      'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n' +
      '5;foo=bar\r\nhello\r\n' +
      '1A ; name="quoted;value"\r\n' + 'abcdefghijklmnopqrstuvwxyz' + '\r\n' +
      '3\r\n\r\n\r\n' + // a chunk whose data is itself a CRLF and a byte
      '0;final\r\nX-Checksum: abc123\r\nX-Other: yes\r\n\r\n',
    status: 200,
    headers: { 'content-type': 'text/event-stream', 'transfer-encoding': 'chunked', trailer: 'X-Checksum' },
    body: 'helloabcdefghijklmnopqrstuvwxyz\r\n\r',
    keepAlive: true,
  },
  {
    name: 'chunked, upper-case hex sizes, no trailers',
    raw: `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nA\r\n0123456789\r\nc\r\nabcdefghijkl\r\n0\r\n\r\n`,
    status: 200,
    headers: { 'transfer-encoding': 'chunked' },
    body: '0123456789abcdefghijkl',
    keepAlive: true,
  },
  {
    name: 'chunked with connection: close',
    raw: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n`,
    status: 200,
    headers: { 'transfer-encoding': 'chunked', connection: 'close' },
    body: 'abcd',
    keepAlive: false,
  },
  {
    name: 'chunked and content-length together: read as chunked, connection not reused',
    raw: `HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n`,
    status: 200,
    headers: { 'content-length': '100', 'transfer-encoding': 'chunked' },
    body: 'abcd',
    keepAlive: false,
  },
  {
    name: '100-continue before the real head',
    raw: `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok`,
    status: 200,
    headers: { 'content-length': '2' },
    body: 'ok',
    keepAlive: true,
  },
  {
    name: '103 Early Hints with headers, then a chunked answer',
    raw:
      `HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n` +
      `HTTP/1.1 100 Continue\r\n\r\n` +
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n`,
    status: 200,
    headers: { 'transfer-encoding': 'chunked' },
    body: 'hi',
    keepAlive: true,
  },
  {
    name: '204 No Content has no body',
    raw: `HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n`,
    status: 204,
    headers: { 'x-a': '1' },
    body: '',
    keepAlive: true,
  },
  {
    name: '304 has no body even with a content-length',
    raw: `HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: "abc"\r\n\r\n`,
    status: 304,
    headers: { 'content-length': '1234', etag: '"abc"' },
    body: '',
    keepAlive: true,
  },
  {
    name: 'HEAD response has no body despite its content-length',
    raw: `HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nContent-Type: application/json\r\n\r\n`,
    head: true,
    status: 200,
    headers: { 'content-length': '5000', 'content-type': 'application/json' },
    body: '',
    keepAlive: true,
  },
  {
    name: 'HEAD response to a chunked resource has no body',
    raw: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n`,
    head: true,
    status: 200,
    headers: { 'transfer-encoding': 'chunked' },
    body: '',
    keepAlive: true,
  },
  {
    name: 'HTTP/1.0 body delimited by the connection closing',
    raw: `HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this until the close\r\n\r\nand more`,
    close: true,
    status: 200,
    headers: { 'content-type': 'text/plain' },
    body: 'all of this until the close\r\n\r\nand more',
    keepAlive: false,
  },
  {
    name: 'HTTP/1.1 without length: body until close, even with keep-alive asked',
    raw: `HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n` + 'x'.repeat(1000),
    close: true,
    status: 200,
    headers: { connection: 'keep-alive' },
    body: 'x'.repeat(1000),
    keepAlive: false,
  },
  {
    name: 'HTTP/1.0 with content-length and no connection header is not kept alive',
    raw: `HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc`,
    status: 200,
    headers: { 'content-length': '3' },
    body: 'abc',
    keepAlive: false,
  },
  {
    name: 'HTTP/1.0 with connection: keep-alive and content-length is kept alive',
    raw: `HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\nabc`,
    status: 200,
    headers: { connection: 'Keep-Alive', 'content-length': '3' },
    body: 'abc',
    keepAlive: true,
  },
  {
    name: 'repeated headers are joined, set-cookie kept as a list, values trimmed',
    raw:
      `HTTP/1.1 429 Too Many Requests\r\nRetry-After:   7  \r\nVary: Accept\r\nvary: Origin\r\n` +
      `Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nslow`,
    status: 429,
    headers: { 'retry-after': '7', vary: 'Accept, Origin', 'set-cookie': ['a=1', 'b=2'], 'content-length': '4, 4' },
    body: 'slow',
    keepAlive: true,
  },
];

function bytesOf(raw: string | Buffer): Buffer {
  return typeof raw === 'string' ? Buffer.from(raw) : raw;
}

describe('well-formed responses', () => {
  test.each(cases.map((c) => [c.name, c] as const))('%s: parsed whole', (_name, c) => {
    const result = parse([bytesOf(c.raw)], { head: c.head, close: c.close });
    expect(result.heads).toEqual([{ status: c.status, headers: c.headers }]);
    expect(result.body.equals(bytesOf(c.body))).toBe(true);
    expect(result.ends).toBe(1);
    expect(result.keepAlive).toBe(c.keepAlive);
    if (c.close) expect(result.closedResult).toBe(true);
  });

  test.each(cases.map((c) => [c.name, c] as const))('%s: same result however the bytes are split', (_name, c) => {
    const bytes = bytesOf(c.raw);
    const whole = parse([bytes], { head: c.head, close: c.close });
    fc.assert(
      fc.property(splits, (split) => {
        const result = parse(splitAt(bytes, split), { head: c.head, close: c.close });
        expect(result.heads).toEqual(whole.heads);
        expect(result.body.equals(whole.body)).toBe(true);
        expect(result.ends).toBe(1);
        expect(result.keepAlive).toBe(whole.keepAlive);
        expect(result.closedResult).toBe(whole.closedResult);
      }),
      { numRuns: 200 },
    );
  });

  test('every single-byte split of a chunked response with trailers parses the same', () => {
    const c = cases.find((x) => x.name.startsWith('chunked with chunk extensions'))!;
    const bytes = bytesOf(c.raw);
    const result = parse([...bytes].map((b) => Buffer.from([b])));
    expect(result.heads).toEqual([{ status: c.status, headers: c.headers }]);
    expect(result.body.toString()).toBe(c.body);
    expect(result.keepAlive).toBe(true);
  });

  test('the end is reported only when the last byte arrives', () => {
    const bytes = Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`);
    const partial = parse([bytes.subarray(0, bytes.length - 1)]);
    expect(partial.ends).toBe(0);
    expect(partial.body.toString()).toBe('abc');
    const length = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n123456789`);
    expect(parse([length]).ends).toBe(0);
  });

  test('a connection closed before a delimited body is complete is a cut response', () => {
    const events: string[] = [];
    const parser = new ResponseParser({ onHead: () => events.push('head'), onBody: () => events.push('body'), onEnd: () => events.push('end') });
    parser.execute(Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345`));
    expect(parser.closed()).toBe(false);
    expect(parser.done).toBe(false);
    expect(events).toEqual(['head', 'body']);

    const chunked = new ResponseParser({ onHead: () => {}, onBody: () => {}, onEnd: () => events.push('chunked end') });
    chunked.execute(Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`));
    expect(chunked.closed()).toBe(false);
    expect(events).not.toContain('chunked end');
  });

  test('received is false until a byte arrives', () => {
    const parser = new ResponseParser({ onHead: () => {}, onBody: () => {}, onEnd: () => {} });
    expect(parser.received).toBe(false);
    parser.execute(Buffer.from('H'));
    expect(parser.received).toBe(true);
  });
});

describe('bytes after a complete response', () => {
  const responses: Array<[string, string, boolean]> = [
    ['content-length', `HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello`, false],
    ['chunked', `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`, false],
    ['204', `HTTP/1.1 204 No Content\r\n\r\n`, false],
    ['HEAD', `HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n`, true],
  ];

  test.each(responses)('%s: extra bytes in the same read make keepAlive false and never reach the body', (_name, raw, head) => {
    fc.assert(
      fc.property(splits, fc.string({ minLength: 1, maxLength: 30 }), (split, garbage) => {
        const bytes = Buffer.from(raw);
        // The last byte of the response and the extra bytes arrive together.
        const pieces = [...splitAt(bytes.subarray(0, bytes.length - 1), split), Buffer.from(raw.slice(-1) + garbage)];
        const ends: boolean[] = [];
        const bodies: Buffer[] = [];
        const parser = new ResponseParser({ onHead: () => {}, onBody: (c) => bodies.push(Buffer.from(c)), onEnd: (k) => ends.push(k) }, head);
        for (const piece of pieces) {
          try {
            parser.execute(piece);
          } catch (err) {
            // Allowed only once the response is complete (the pool then closes the connection).
            expect(err).toBeInstanceOf(ResponseParseError);
            expect(parser.done).toBe(true);
          }
        }
        expect(ends).toEqual([false]);
        expect(parser.done).toBe(true);
        const expectedBody = head || raw.startsWith('HTTP/1.1 204') ? '' : 'hello';
        expect(Buffer.concat(bodies).toString()).toBe(expectedBody);
      }),
      { numRuns: 100 },
    );
  });

  test('bytes arriving in a later read after the end are rejected', () => {
    const parser = new ResponseParser({ onHead: () => {}, onBody: () => {}, onEnd: () => {} });
    parser.execute(Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok`));
    expect(parser.done).toBe(true);
    expect(() => parser.execute(Buffer.from('HTTP/1.1 200 OK\r\n'))).toThrow(ResponseParseError);
  });
});

describe('malformed responses throw ResponseParseError', () => {
  const malformed: Array<[string, string]> = [
    ['not HTTP', 'SSH-2.0-OpenSSH_9.6\r\n\r\n'],
    ['HTTP/2 status line', 'HTTP/2 200 OK\r\n\r\n'],
    ['non-numeric status', 'HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n'],
    ['two-digit status', 'HTTP/1.1 20 OK\r\n\r\n'],
    ['empty status line', '\r\n\r\n'],
    ['header line without a colon', 'HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n'],
    ['obsolete line folding', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n'],
    ['conflicting content-length headers', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'],
    ['content-length list', 'HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!'],
    ['negative content-length', 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n'],
    ['non-numeric content-length', 'HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n'],
    ['non-hex chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'],
    ['negative chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n'],
    ['empty chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n'],
    ['chunk size too large', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000\r\nhello\r\n'],
    ['chunk longer than its size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n'],
    ['chunk size line never ends', `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;${'x'.repeat(5000)}`],
  ];

  test.each(malformed)('%s (whole)', (_name, raw) => {
    expect(() => parse([Buffer.from(raw)])).toThrow(ResponseParseError);
  });

  test.each(malformed)('%s (split anywhere)', (_name, raw) => {
    const bytes = Buffer.from(raw);
    fc.assert(
      fc.property(splits, (split) => {
        expect(() => parse(splitAt(bytes, split))).toThrow(ResponseParseError);
      }),
      { numRuns: 100 },
    );
  });

  test('a head that never ends is rejected once it passes 64 KiB, however it arrives', () => {
    const line = `X-Filler: ${'a'.repeat(100)}\r\n`;
    const raw = Buffer.from(`HTTP/1.1 200 OK\r\n${line.repeat(700)}`); // ~78 KB, no blank line
    expect(() => parse([raw])).toThrow(ResponseParseError);
    fc.assert(
      fc.property(splits, (split) => {
        expect(() => parse(splitAt(raw, split))).toThrow(ResponseParseError);
      }),
      { numRuns: 50 },
    );
    // Byte by small pieces too (the pending head grows across reads).
    const pieces: Buffer[] = [];
    for (let at = 0; at < raw.length; at += 1000) pieces.push(raw.subarray(at, at + 1000));
    expect(() => parse(pieces)).toThrow(ResponseParseError);
  });

  test('a complete head over 64 KiB is rejected too, whole or split', () => {
    const line = `X-Filler: ${'a'.repeat(100)}\r\n`;
    const raw = Buffer.from(`HTTP/1.1 200 OK\r\n${line.repeat(700)}Content-Length: 2\r\n\r\nok`);
    // Whole, as one read, and as two reads of the sizes a socket delivers (64 KiB, then the rest).
    expect(() => parse([raw])).toThrow(ResponseParseError);
    expect(() => parse([raw.subarray(0, 65536), raw.subarray(65536)])).toThrow(ResponseParseError);
  });

  test('a status code of more than three digits is a bad status line', () => {
    // RFC 9112 4: status-code = 3DIGIT. "5000" must not be read as 500.
    for (const raw of ['HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n', 'HTTP/1.1 5003 Oops\r\nContent-Length: 0\r\n\r\n']) {
      expect(() => parse([Buffer.from(raw)])).toThrow(ResponseParseError);
    }
  });

  test('a head just under the limit is accepted', () => {
    const filler = `X-Filler: ${'a'.repeat(60_000)}\r\n`;
    const raw = Buffer.from(`HTTP/1.1 200 OK\r\n${filler}Content-Length: 2\r\n\r\nok`);
    const result = parse(splitAt(raw, [1000, 30_000, 61_000]));
    expect(result.heads[0].status).toBe(200);
    expect(result.body.toString()).toBe('ok');
  });
});
