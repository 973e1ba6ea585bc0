/**
 * The proxy listener's HTTP/1.1 server (lib/runtime/http/front-server.ts), driven directly with
 * raw sockets so every byte on the wire is ours: request parsing split at any byte and pipelined,
 * keep-alive rules, the hardening a client-facing server needs (smuggling, malformed heads,
 * oversized heads), response framing, timeouts, early answers, clients that go away, shutdown
 * and pipelining backpressure.
 */
import fc from 'fast-check';
import * as http from 'node:http';
import * as net from 'node:net';
import { FrontServer, type FrontRequest, type FrontResponse, type FrontServerOptions, type Handler } from '../../lib/runtime/http/front-server';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const LONG: FrontServerOptions = { headersTimeoutMs: 10_000, requestTimeoutMs: 10_000, keepAliveTimeoutMs: 10_000 };
const MAX_DISCARD_BYTES = 64 * 1024 * 1024;

// ---- servers -----------------------------------------------------------------------------------

const servers: FrontServer[] = [];
const clients: Client[] = [];

afterEach(() => {
  for (const c of clients.splice(0)) c.socket.destroy();
  for (const s of servers.splice(0)) {
    s.close();
    s.closeAllConnections();
  }
});

async function start(handler: Handler, options: Partial<FrontServerOptions> = {}): Promise<{ server: FrontServer; port: number }> {
  const server = new FrontServer({ ...LONG, ...options }, handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.address().port };
}

/** What a handler saw of one request. */
interface Seen {
  method: string;
  url: string;
  httpVersion: string;
  headers: Record<string, string | string[]>;
  rawHeaders: string[];
  body: Buffer;
  ended: boolean;
  aborted: boolean;
  responseClosed: boolean;
  req: FrontRequest;
  res: FrontResponse;
}

/** Records every request handed to the handler, reads its body, then calls `reply` (if any). */
function recorder(reply?: (seen: Seen) => void, onRequest?: (seen: Seen) => void): { handler: Handler; seen: Seen[] } {
  const seen: Seen[] = [];
  const handler: Handler = (req, res) => {
    const entry: Seen = {
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      headers: { ...req.headers },
      rawHeaders: [...req.rawHeaders],
      body: Buffer.alloc(0),
      ended: false,
      aborted: false,
      responseClosed: false,
      req,
      res,
    };
    seen.push(entry);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(Buffer.from(chunk)));
    req.on('aborted', () => (entry.aborted = true));
    res.on('close', () => (entry.responseClosed = true));
    req.on('end', () => {
      entry.ended = true;
      entry.body = Buffer.concat(chunks);
      reply?.(entry);
    });
    onRequest?.(entry);
  };
  return { handler, seen };
}

/** The request as the echo reply reports it. */
function echoOf(seen: Pick<Seen, 'method' | 'url' | 'headers' | 'body'>): string {
  return JSON.stringify({ method: seen.method, url: seen.url, headers: seen.headers, body: seen.body.toString('base64') });
}

interface ReplySpec {
  status?: number;
  /** end: res.statusCode + end(body); head-end: writeHead + end(body); length: writeHead with a length + writes; chunked: writeHead + writes + end(); chunked-end: writeHead + write + end(rest) */
  mode?: 'end' | 'head-end' | 'length' | 'chunked' | 'chunked-end';
  pieces?: number;
  /** Answer after this many ms (absent: synchronously, from the 'end' listener). */
  delay?: number;
  headers?: Record<string, string | string[]>;
  body?: string;
}

/** Replies as the request's x-reply header (JSON) says; the body is the echo unless given. */
function replyPerRequest(seen: Seen): void {
  const header = seen.headers['x-reply'];
  const spec: ReplySpec = typeof header === 'string' ? JSON.parse(header) : {};
  const go = () => writeReply(seen.res, spec, Buffer.from(spec.body ?? echoOf(seen)));
  if (spec.delay === undefined) go();
  else setTimeout(go, spec.delay);
}

function writeReply(res: FrontResponse, spec: ReplySpec, body: Buffer): void {
  const status = spec.status ?? 200;
  const headers = spec.headers ?? {};
  const pieces = piecesOf(body, spec.pieces ?? 2);
  switch (spec.mode ?? 'head-end') {
    case 'end':
      res.statusCode = status;
      res.end(body);
      return;
    case 'head-end':
      res.writeHead(status, headers);
      res.end(body);
      return;
    case 'length':
      res.writeHead(status, { ...headers, 'content-length': body.length });
      for (const p of pieces) res.write(p);
      res.end();
      return;
    case 'chunked':
      res.writeHead(status, headers);
      for (const p of pieces) res.write(p);
      res.end();
      return;
    case 'chunked-end':
      res.writeHead(status, headers);
      res.write(pieces[0] ?? '');
      res.end(Buffer.concat(pieces.slice(1)));
      return;
  }
}

/** `n` pieces (some possibly empty) that concatenate to `body`. */
function piecesOf(body: Buffer, n: number): Buffer[] {
  const out: Buffer[] = [];
  const size = Math.ceil(body.length / Math.max(1, n));
  for (let i = 0; i < n; i++) out.push(body.subarray(i * size, (i + 1) * size));
  return out;
}

// ---- raw client --------------------------------------------------------------------------------

class Client {
  private readonly chunks: Buffer[] = [];
  ended = false;
  closed = false;
  error: (Error & { code?: string }) | undefined;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.notify();
    });
    socket.on('end', () => {
      this.ended = true;
      this.notify();
    });
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
    socket.on('error', (err) => {
      this.error = err;
      this.notify();
    });
  }

  static open(port: number, options: { allowHalfOpen?: boolean } = {}): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen ?? false });
      socket.setNoDelay(true);
      const client = new Client(socket);
      clients.push(client);
      socket.once('connect', () => resolve(client));
      socket.once('error', reject);
    });
  }

  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  get text(): string {
    return this.received.toString('latin1');
  }

  /** Whether the server closed (FIN or reset). */
  get gone(): boolean {
    return this.ended || this.closed;
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, () => resolve());
    });
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        let ok = false;
        try {
          ok = condition();
        } catch (err) {
          done();
          return reject(err);
        }
        if (ok) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${what}; received so far: ${JSON.stringify(this.text.slice(0, 600))}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }

  /** Waits for `count` complete responses (parsed strictly); `head[i]` says response i answers a HEAD. */
  async responses(count: number, head: boolean[] = [], timeoutMs = 5_000): Promise<Parsed> {
    let parsed: Parsed = { responses: [], interim: [], rest: Buffer.alloc(0) };
    await this.until(
      () => {
        parsed = parseResponses(this.received, head, this.gone);
        return parsed.responses.length >= count;
      },
      `${count} response(s)`,
      timeoutMs,
    );
    return parsed;
  }

  /** Waits for the one response of a request the server must answer and close. */
  async closingResponse(timeoutMs = 5_000): Promise<ParsedResponse> {
    await this.until(() => this.gone, 'the server to close the connection', timeoutMs);
    const parsed = parseResponses(this.received, [], true);
    expect(parsed.responses).toHaveLength(1);
    expect(parsed.rest.length).toBe(0);
    return parsed.responses[0];
  }
}

// ---- strict response parser ----------------------------------------------------------------------

interface ParsedResponse {
  status: number;
  headers: Array<[string, string]>;
  body: Buffer;
  /** The body's framing on the wire. */
  framing: 'none' | 'length' | 'chunked' | 'close';
  /** The body's bytes as sent, framing included. */
  wire: Buffer;
}

interface Parsed {
  responses: ParsedResponse[];
  /** 1xx responses, in order. */
  interim: number[];
  /** Bytes after the last complete response. */
  rest: Buffer;
}

function header(res: ParsedResponse, name: string): string[] {
  return res.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * Parses as many complete responses as `data` holds; throws on anything malformed. A response
 * without framing is complete only once the connection closed (`closed`).
 */
function parseResponses(data: Buffer, head: boolean[], closed: boolean): Parsed {
  const out: Parsed = { responses: [], interim: [], rest: Buffer.alloc(0) };
  let pos = 0;
  for (;;) {
    out.rest = data.subarray(pos);
    const end = data.indexOf('\r\n\r\n', pos, 'latin1');
    if (end < 0) return out;
    const lines = data.toString('latin1', pos, end).split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) ([^\r\n]*)$/.exec(lines[0]);
    if (!m) throw new Error(`malformed status line ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const headers: Array<[string, string]> = [];
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
      if (colon <= 0 || !TOKEN.test(name) || CONTROL.test(value)) throw new Error(`malformed header line ${JSON.stringify(line)}`);
      headers.push([name, value]);
    }
    let bodyStart = end + 4;
    if (status < 200) {
      if (headers.length) throw new Error('unexpected headers on an interim response');
      out.interim.push(status);
      pos = bodyStart;
      continue;
    }
    const res: ParsedResponse = { status, headers, body: Buffer.alloc(0), framing: 'none', wire: Buffer.alloc(0) };
    const te = header(res, 'transfer-encoding');
    const cl = header(res, 'content-length');
    if (te.length && cl.length) throw new Error('both transfer-encoding and content-length in a response');
    if (head[out.responses.length] || status === 204 || status === 304) {
      res.framing = 'none';
    } else if (te.length) {
      if (te.length !== 1 || te[0] !== 'chunked') throw new Error(`bad transfer-encoding ${te.join(',')}`);
      res.framing = 'chunked';
      const body: Buffer[] = [];
      let p = bodyStart;
      for (;;) {
        const lineEnd = data.indexOf('\r\n', p, 'latin1');
        if (lineEnd < 0) return out;
        const sizeText = data.toString('latin1', p, lineEnd);
        if (!/^[0-9a-f]+$/i.test(sizeText)) throw new Error(`bad chunk size line ${JSON.stringify(sizeText)}`);
        const size = parseInt(sizeText, 16);
        p = lineEnd + 2;
        if (size === 0) {
          if (data.length < p + 2) return out;
          if (data.toString('latin1', p, p + 2) !== '\r\n') throw new Error('trailers or garbage after the last chunk');
          p += 2;
          break;
        }
        if (data.length < p + size + 2) return out;
        body.push(data.subarray(p, p + size));
        if (data.toString('latin1', p + size, p + size + 2) !== '\r\n') throw new Error('chunk data not followed by CRLF');
        p += size + 2;
      }
      res.body = Buffer.concat(body);
      res.wire = data.subarray(bodyStart, p);
      bodyStart = p;
    } else if (cl.length) {
      if (cl.length !== 1 || !/^\d+$/.test(cl[0])) throw new Error(`bad content-length ${cl.join(',')}`);
      const length = Number(cl[0]);
      if (data.length < bodyStart + length) return out;
      res.framing = 'length';
      res.body = data.subarray(bodyStart, bodyStart + length);
      res.wire = res.body;
      bodyStart += length;
    } else {
      if (!closed) return out;
      res.framing = 'close';
      res.body = data.subarray(bodyStart);
      res.wire = res.body;
      bodyStart = data.length;
    }
    out.responses.push(res);
    pos = bodyStart;
  }
}

// ---- node:http's header joining (the oracle) -------------------------------------------------------

/** Fields node:http keeps only the first of (lib/_http_incoming.js matchKnownFields). */
const NODE_FIRST_WINS = new Set([
  'content-type',
  'content-length',
  'user-agent',
  'referer',
  'host',
  'authorization',
  'proxy-authorization',
  'if-modified-since',
  'if-unmodified-since',
  'from',
  'location',
  'max-forwards',
  'retry-after',
  'etag',
  'last-modified',
  'server',
  'age',
  'expires',
]);

function nodeHeaders(raw: Array<[string, string]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [rawName, value] of raw) {
    const name = rawName.toLowerCase();
    const prior = out[name];
    if (name === 'set-cookie') out[name] = prior === undefined ? [value] : [...(prior as string[]), value];
    else if (prior === undefined) out[name] = value;
    else if (NODE_FIRST_WINS.has(name)) continue;
    else out[name] = `${prior}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}

// ---- the property test ---------------------------------------------------------------------------

interface GenRequest {
  method: 'GET' | 'POST' | 'HEAD' | 'PUT';
  path: string;
  version: '1.1' | '1.0';
  headers: Array<[string, string]>;
  body: Buffer;
  framing: 'none' | 'length' | 'chunked';
  /** Chunked framing: chunk sizes, extensions, hex case, trailers. */
  chunkCuts: number[];
  chunkExts: string[];
  upperHex: boolean;
  trailers: Array<[string, string]>;
  expectContinue: boolean;
  reply: ReplySpec;
}

const OWS_CHARS = [' ', '\t'];
const tokenChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&\'*+.^_`|~'.split(''));
const valueChar = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.constantFrom(...OWS_CHARS) },
);
const ows = fc.string({ unit: fc.constantFrom(...OWS_CHARS), maxLength: 2 });
const headerName = fc.oneof(
  fc.constantFrom('Accept', 'accept', 'X-Dup', 'x-dup', 'Cookie', 'cookie', 'User-Agent', 'user-agent', 'Content-Type', 'Authorization', 'Set-Cookie', 'Via', 'X-Agent-User', 'Referer', 'Cache-Control'),
  fc.string({ unit: tokenChar, minLength: 1, maxLength: 8 }).map((s) => `x-h-${s}`),
);
const headerLine = fc.tuple(headerName, ows, fc.string({ unit: valueChar, maxLength: 24 }), ows);
const pathArb = fc
  .tuple(
    fc.array(fc.string({ unit: fc.constantFrom(...'abcXYZ019-._~%!$&\'()*+,;=:@'.split('')), maxLength: 8 }), { minLength: 1, maxLength: 4 }),
    fc.option(fc.string({ unit: fc.constantFrom(...'abcXYZ019-._~%!$&\'()*+,;=:@/?'.split('')), maxLength: 16 }), { nil: undefined }),
  )
  .map(([segments, query]) => `/${segments.join('/')}${query === undefined ? '' : `?${query}`}`);
const chunkExt = fc.constantFrom('', '', '', ';a', ';a=b', ';name="quoted; value"', ';x=1;y=2', ' ;bws');
const replyArb = fc.record({
  status: fc.constantFrom(200, 200, 201, 404, 500, 204),
  mode: fc.constantFrom('end', 'head-end', 'length', 'chunked', 'chunked-end'),
  pieces: fc.integer({ min: 1, max: 4 }),
  delay: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
}) as fc.Arbitrary<ReplySpec>;

const requestArb: fc.Arbitrary<GenRequest> = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'HEAD', 'PUT') as fc.Arbitrary<GenRequest['method']>,
    path: pathArb,
    http10: fc.boolean(),
    headerLines: fc.array(headerLine, { maxLength: 6 }),
    body: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    framing: fc.constantFrom('none', 'length', 'chunked') as fc.Arbitrary<GenRequest['framing']>,
    chunkCuts: fc.array(fc.nat(), { maxLength: 5 }),
    chunkExts: fc.array(chunkExt, { minLength: 7, maxLength: 7 }),
    upperHex: fc.boolean(),
    trailers: fc.array(fc.tuple(fc.string({ unit: tokenChar, minLength: 1, maxLength: 6 }).map((s) => `x-t-${s}`), fc.string({ unit: valueChar, maxLength: 10 })), { maxLength: 2 }),
    expectContinue: fc.boolean(),
    reply: replyArb,
  })
  .map((r) => {
    // HTTP/1.0: no chunked bodies, and a response that is framed by its length (a streamed one
    // is delimited by the close of the connection, which would end the sequence).
    const version: GenRequest['version'] = r.http10 ? '1.0' : '1.1';
    const framing = r.framing === 'chunked' && version === '1.0' ? 'length' : r.framing;
    const reply = version === '1.0' && r.reply.mode !== 'length' ? { ...r.reply, mode: 'end' as const } : r.reply;
    return {
      method: r.method,
      path: r.path,
      version,
      headers: r.headerLines.map(([name, before, value, after]) => [name, `${before}${value.replace(/^[ \t]+|[ \t]+$/g, '')}${after}`] as [string, string]),
      body: framing === 'none' ? Buffer.alloc(0) : r.body,
      framing,
      chunkCuts: r.chunkCuts,
      chunkExts: r.chunkExts,
      upperHex: r.upperHex,
      trailers: r.trailers,
      expectContinue: r.expectContinue && version === '1.1',
      reply,
    };
  });

/** Serializes a request (`close`: with connection: close); also returns the header lines as sent. */
function serialize(r: GenRequest, close: boolean): { bytes: Buffer; sentHeaders: Array<[string, string]> } {
  const sent: Array<[string, string]> = [];
  if (r.version === '1.1') sent.push(['Host', 'example.test']);
  sent.push(...r.headers);
  sent.push(['X-Reply', JSON.stringify(r.reply)]);
  if (close) sent.push(['Connection', 'close']);
  else if (r.version === '1.0') sent.push(['Connection', 'keep-alive']);
  if (r.framing === 'length') sent.push(['Content-Length', String(r.body.length)]);
  if (r.framing === 'chunked') sent.push(['Transfer-Encoding', 'chunked']);
  if (r.expectContinue && r.framing !== 'none') sent.push(['Expect', '100-continue']);
  let head = `${r.method} ${r.path} HTTP/${r.version}\r\n`;
  for (const [n, v] of sent) head += `${n}:${v}\r\n`;
  head += '\r\n';
  const parts: Buffer[] = [Buffer.from(head, 'latin1')];
  if (r.framing === 'length') parts.push(r.body);
  if (r.framing === 'chunked') {
    const cuts = [...new Set(r.chunkCuts.map((c) => c % (r.body.length + 1)))].filter((c) => c > 0).sort((a, b) => a - b);
    let from = 0;
    let i = 0;
    for (const to of [...cuts, r.body.length]) {
      if (to <= from) continue;
      const hex = (to - from).toString(16);
      parts.push(Buffer.from(`${r.upperHex ? hex.toUpperCase() : hex}${r.chunkExts[i++ % r.chunkExts.length]}\r\n`, 'latin1'), r.body.subarray(from, to), Buffer.from('\r\n'));
      from = to;
    }
    let tail = `0${r.chunkExts[6]}\r\n`;
    for (const [n, v] of r.trailers) tail += `${n}: ${v}\r\n`;
    parts.push(Buffer.from(`${tail}\r\n`, 'latin1'));
  }
  // What the handler must see: values without their surrounding whitespace.
  const sentHeaders = sent.map(([n, v]) => [n, v.replace(/^[ \t]+|[ \t]+$/g, '')] as [string, string]);
  return { bytes: Buffer.concat(parts), sentHeaders };
}

describe('FrontServer', () => {
  test('property: pipelined requests split at any byte are each seen exactly and answered once, in order', async () => {
    const { handler, seen } = recorder(replyPerRequest);
    const { port } = await start(handler);
    await fc.assert(
      fc.asyncProperty(
        fc.array(requestArb, { minLength: 1, maxLength: 5 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 11, maxLength: 11 }),
        async (requests, closeLast, cuts, delays) => {
          seen.length = 0;
          const serialized = requests.map((r, i) => serialize(r, closeLast && i === requests.length - 1));
          const stream = Buffer.concat(serialized.map((s) => s.bytes));
          const client = await Client.open(port);
          try {
            const positions = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
            let from = 0;
            let i = 0;
            for (const to of [...positions, stream.length]) {
              if (to <= from) continue;
              await client.write(stream.subarray(from, to));
              const delay = delays[i++ % delays.length];
              if (delay) await sleep(delay);
              from = to;
            }
            const heads = requests.map((r) => r.method === 'HEAD');
            // A short wait: every response comes within milliseconds, and shrinking a failure repeats it.
            const parsed = await client.responses(requests.length, heads, 1_000);
            if (closeLast) await client.until(() => client.gone, "the close after connection: close", 1_000);
            else {
              await sleep(5);
              expect(client.gone).toBe(false);
            }
            expect(parsed.rest.length).toBe(0);
            // 100 Continue went out for each request that asked, before a body arrived.
            const continues = requests.filter((r) => r.expectContinue && r.framing !== 'none' && (r.framing === 'chunked' || r.body.length > 0)).length;
            expect(parsed.interim).toEqual(new Array(continues).fill(100));

            // httpVersion as node:http has it: "1.1", not "HTTP/1.1".
            expect(seen.map((s) => ({ method: s.method, url: s.url, version: s.httpVersion }))).toEqual(
              requests.map((r) => ({ method: r.method, url: r.path, version: r.version })),
            );
            requests.forEach((r, i) => {
              const sent = serialized[i].sentHeaders;
              const s = seen[i];
              expect(s.rawHeaders).toEqual(sent.flat());
              expect(s.headers).toEqual(nodeHeaders(sent));
              expect(s.body.equals(r.body)).toBe(true);
              expect(s.ended).toBe(true);
              expect(s.aborted).toBe(false);

              const res = parsed.responses[i];
              const status = r.reply.status ?? 200;
              expect(res.status).toBe(status);
              expect(header(res, 'date')).toHaveLength(1);
              const bodiless = r.method === 'HEAD' || status === 204;
              if (bodiless) {
                expect(res.body.length).toBe(0);
                expect(header(res, 'transfer-encoding')).toEqual([]);
              } else {
                expect(JSON.parse(res.body.toString())).toEqual(JSON.parse(echoOf({ ...r, method: r.method, url: r.path, headers: nodeHeaders(sent) })));
                const streamed = r.reply.mode === 'chunked' || r.reply.mode === 'chunked-end';
                expect(res.framing).toBe(streamed ? 'chunked' : 'length');
              }
              // (In 'length' mode the handler itself declares one.)
              if (status === 204 && r.reply.mode !== 'length') expect(header(res, 'content-length')).toEqual([]);
              if (r.version === '1.0' && !(closeLast && i === requests.length - 1)) expect(header(res, 'connection')).toEqual(['keep-alive']);
            });
          } finally {
            client.socket.destroy();
          }
        },
      ),
      // Interrupted (with the counterexample shrunk so far) before jest's timeout would hide it.
      { numRuns: Number(process.env.FRONT_SERVER_RUNS ?? 120), interruptAfterTimeLimit: 45_000 },
    );
  }, 60_000);

  test('request headers are joined exactly as node:http joins them', async () => {
    const names = [...NODE_FIRST_WINS].filter((n) => n !== 'host' && n !== 'content-length');
    const lines: Array<[string, string]> = [['Host', 'a.test']];
    for (const n of [...names, 'cookie', 'set-cookie', 'accept', 'x-custom', 'connection', 'te']) {
      lines.push([n, `first-${n}`], [n.toUpperCase(), `second-${n}`]);
    }
    const raw = `GET /x HTTP/1.1\r\n${lines.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;

    // The same bytes to node:http and to the front server.
    const nodeSeen = await new Promise<http.IncomingHttpHeaders>((resolve, reject) => {
      const server = http.createServer((req, res) => {
        res.end();
        server.close();
        resolve(req.headers);
      });
      server.listen(0, '127.0.0.1', () => {
        const s = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1', () => s.end(raw));
        s.on('error', reject);
        s.resume();
      });
    });
    const { handler, seen } = recorder((s) => s.res.end());
    const { port } = await start(handler);
    const client = await Client.open(port);
    await client.write(raw);
    await client.responses(1);
    expect(seen[0].headers).toEqual(nodeSeen);
    expect(nodeHeaders(lines)).toEqual(nodeSeen);
  });

  // ---- keep-alive -------------------------------------------------------------------------------

  describe('keep-alive', () => {
    const get = (extra = '', version = '1.1') => `GET / HTTP/${version}\r\nHost: a\r\n${extra}\r\n`;

    test('HTTP/1.1 keeps the connection open by default', async () => {
      const { handler, seen } = recorder(replyPerRequest);
      const { port } = await start(handler);
      const client = await Client.open(port);
      await client.write(get());
      const first = await client.responses(1);
      expect(header(first.responses[0], 'connection')).toEqual([]);
      await sleep(50);
      expect(client.gone).toBe(false);
      await client.write(get());
      await client.responses(2);
      expect(seen).toHaveLength(2);
    });

    test('connection: close from the client closes after the response', async () => {
      const { handler } = recorder(replyPerRequest);
      const { port } = await start(handler);
      const client = await Client.open(port);
      await client.write(get('Connection: close\r\n'));
      const res = await client.closingResponse();
      expect(res.status).toBe(200);
      expect(header(res, 'connection')).toEqual(['close']);
    });

    test('HTTP/1.0 closes unless the client asks for keep-alive', async () => {
      const { handler } = recorder(replyPerRequest);
      const { port } = await start(handler);
      const client = await Client.open(port);
      await client.write('GET / HTTP/1.0\r\n\r\n');
      const res = await client.closingResponse();
      expect(res.status).toBe(200);
      expect(header(res, 'connection')).toEqual(['close']);
    });

    test('HTTP/1.0 with connection: keep-alive stays open, and the response says so', async () => {
      const { handler, seen } = recorder(replyPerRequest);
      const { port } = await start(handler);
      const client = await Client.open(port);
      await client.write(get('Connection: keep-alive\r\n', '1.0'));
      const first = await client.responses(1);
      expect(header(first.responses[0], 'connection')).toEqual(['keep-alive']);
      await sleep(50);
      expect(client.gone).toBe(false);
      await client.write(get('Connection: keep-alive\r\n', '1.0'));
      await client.responses(2);
      expect(seen).toHaveLength(2);
    });

    test('a handler answering with connection: close closes the connection', async () => {
      const { handler, seen } = recorder((s) => {
        s.res.writeHead(200, { connection: 'close', 'content-length': 2 });
        s.res.end('ok');
      });
      const { port } = await start(handler);
      const client = await Client.open(port);
      // A second request pipelined behind it is not served.
      await client.write(get() + get());
      const res = await client.closingResponse();
      expect(header(res, 'connection')).toEqual(['close']);
      expect(res.body.toString()).toBe('ok');
      expect(seen).toHaveLength(1);
    });

    test('empty lines before a request line are ignored (RFC 9112 2.2)', async () => {
      const { handler, seen } = recorder(replyPerRequest);
      const { port } = await start(handler);
      const client = await Client.open(port);
      // Some clients send a stray CRLF after a POST body.
      await client.write(`POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\r\n${get()}`);
      const parsed = await client.responses(2);
      expect(parsed.responses.map((r) => r.status)).toEqual([200, 200]);
      expect(seen.map((s) => s.method)).toEqual(['POST', 'GET']);
    });
  });

  // ---- hardening ----------------------------------------------------------------------------------

  describe('hardening: rejected before the handler, with the right status, and closed', () => {
    const ok = 'POST / HTTP/1.1\r\nHost: a\r\n';
    const cases: Array<[string, string, number]> = [
      ['content-length and transfer-encoding', `${ok}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
      ['transfer-encoding and content-length', `${ok}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`, 400],
      ['two different content-lengths', `${ok}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, 400],
      ['a content-length list', `${ok}Content-Length: 5, 6\r\n\r\nhello!`, 400],
      ['a signed content-length', `${ok}Content-Length: +5\r\n\r\nhello`, 400],
      ['a non-numeric content-length', `${ok}Content-Length: 5x\r\n\r\nhello`, 400],
      ['transfer-encoding gzip, chunked', `${ok}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501],
      ['transfer-encoding chunked, chunked', `${ok}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`, 501],
      ['two transfer-encoding: chunked lines', `${ok}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 501],
      ['transfer-encoding identity', `${ok}Transfer-Encoding: identity\r\n\r\n`, 501],
      ['an obs-fold header line', `${ok}X-A: one\r\n two\r\n\r\n`, 400],
      ['an obs-fold line holding a colon', `${ok}X-A: one\r\n\tx: two\r\n\r\n`, 400],
      ['a header name with a space', `${ok}X A: b\r\n\r\n`, 400],
      ['a space before the colon', `${ok}X-A : b\r\n\r\n`, 400],
      ['a non-token header name', `${ok}X(A): b\r\n\r\n`, 400],
      ['a header name with a quote', `${ok}X"A: b\r\n\r\n`, 400],
      ['an empty header name', `${ok}: b\r\n\r\n`, 400],
      ['a header line without a colon', `${ok}X-A\r\n\r\n`, 400],
      ['a NUL in a header value', `${ok}X-A: a\x00b\r\n\r\n`, 400],
      ['a bare CR inside a header value', `${ok}X-A: a\rb\r\n\r\n`, 400],
      ['a bare CR starting a header value', `${ok}X-A: \rb\r\n\r\n`, 400],
      ['a bare CR ending a header value', `${ok}X-A: b\r\r\n\r\n`, 400],
      ['a bare LF inside a header value', `${ok}X-A: a\nb\r\n\r\n`, 400],
      ['a bare LF ending a header value', `${ok}X-A: b\n\r\n\r\n`, 400],
      ['a vertical tab ending a header value', `${ok}X-A: b\x0b\r\n\r\n`, 400],
      ['a form feed starting a header value', `${ok}X-A: \x0cb\r\n\r\n`, 400],
      ['a DEL in a header value', `${ok}X-A: a\x7fb\r\n\r\n`, 400],
      ['a missing host in HTTP/1.1', 'GET / HTTP/1.1\r\nX-A: b\r\n\r\n', 400],
      ['two host headers (RFC 9112 3.2)', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
      ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505],
      ['HTTP/1.2', 'GET / HTTP/1.2\r\nHost: a\r\n\r\n', 505],
      ['HTTP/3', 'GET / HTTP/3\r\nHost: a\r\n\r\n', 505],
      ['two spaces after the method', 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n', 400],
      ['two spaces before the version', 'GET /  HTTP/1.1\r\nHost: a\r\n\r\n', 400],
      ['a space after the version', 'GET / HTTP/1.1 \r\nHost: a\r\n\r\n', 400],
      ['a space before the method', ' GET / HTTP/1.1\r\nHost: a\r\n\r\n', 400],
      ['a request line without a version', 'GET /\r\nHost: a\r\n\r\n', 400],
      ['a non-token method', 'G(T / HTTP/1.1\r\nHost: a\r\n\r\n', 400],
      ['a control character in the target', 'GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n', 400],
      ['an Expect other than 100-continue', `${ok}Expect: 200-ok\r\nContent-Length: 2\r\n\r\nhi`, 417],
      ['a head over 64 KiB in one write', `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(64 * 1024)}\r\n\r\n`, 431],
    ];

    test.each(cases)('%s', async (_name, raw, status) => {
      const { handler, seen } = recorder(replyPerRequest);
      const { port } = await start(handler);
      const client = await Client.open(port);
      await client.write(raw);
      const res = await client.closingResponse();
      expect(res.status).toBe(status);
      expect(header(res, 'connection')).toEqual(['close']);
      expect(seen).toHaveLength(0);
    });

    test('a head over 64 KiB dribbled without its end gets 431', async () => {
      const { handler, seen } = recorder(replyPerRequest);
      const { port } = await start(handler);
      const client = await Client.open(port);
      await client.write('GET / HTTP/1.1\r\nHost: a\r\nX-Big: ');
      for (let i = 0; i < 10 && !client.gone; i++) {
        await client.write('b'.repeat(8 * 1024));
        await sleep(2);
      }
      const res = await client.closingResponse();
      expect(res.status).toBe(431);
      expect(seen).toHaveLength(0);
    });

    test('a head just under 64 KiB is accepted', async () => {
      const { handler, seen } = recorder(replyPerRequest);
      const { port } = await start(handler);
      const client = await Client.open(port);
      const prefix = 'GET / HTTP/1.1\r\nHost: a\r\nX-Big: ';
      await client.write(`${prefix}${'b'.repeat(64 * 1024 - prefix.length)}\r\n\r\n`);
      const parsed = await client.responses(1);
      expect(parsed.responses[0].status).toBe(200);
      expect(seen).toHaveLength(1);
    });

    const badChunks: Array<[string, string]> = [
      ['a non-hex chunk size', 'zz\r\nhello\r\n0\r\n\r\n'],
      ['a negative chunk size', '-5\r\nhello\r\n0\r\n\r\n'],
      ['a 0x-prefixed chunk size', '0x5\r\nhello\r\n0\r\n\r\n'],
      ['an empty chunk size line', '\r\nhello\r\n0\r\n\r\n'],
      ['two numbers as the chunk size', '5 5\r\nhello\r\n0\r\n\r\n'],
      ['whitespace before the chunk size', ' 5\r\nhello\r\n0\r\n\r\n'],
      ['a chunk size over 12 hex digits', '1000000000000\r\nhello\r\n0\r\n\r\n'],
      ['a chunk size line ended by a bare LF', '5\nhello\r\n0\r\n\r\n'],
      ['chunk data not followed by CRLF', '5\r\nhelloXY0\r\n\r\n'],
      ['chunk data followed by a bare LF', '5\r\nhello\n0\r\n\r\n'],
      ['a last chunk line ended by a bare LF', '5\r\nhello\r\n0\n\r\n'],
      ['an over-long chunk extension', `5;${'e'.repeat(5000)}\r\nhello\r\n0\r\n\r\n`],
    ];

    test.each(badChunks)('%s: 400, closed, and the request is aborted', async (_name, body) => {
      const { handler, seen } = recorder(replyPerRequest);
      const { port } = await start(handler);
      const client = await Client.open(port);
      await client.write(`POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${body}`);
      const res = await client.closingResponse();
      expect(res.status).toBe(400);
      // The head was fine, so the handler had the request; it never completes.
      expect(seen).toHaveLength(1);
      expect(seen[0].ended).toBe(false);
      await waitFor(() => seen[0].aborted && seen[0].responseClosed, "the request's 'aborted' and the response's 'close'");
    });
  });

  // ---- Expect: 100-continue -------------------------------------------------------------------------

  test('Expect: 100-continue gets 100 Continue before the body is sent, then the request works', async () => {
    const { handler, seen } = recorder(replyPerRequest);
    const { port } = await start(handler);
    const client = await Client.open(port);
    await client.write('POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n');
    await client.until(() => client.text === 'HTTP/1.1 100 Continue\r\n\r\n', '100 Continue');
    expect(seen).toHaveLength(1);
    expect(seen[0].ended).toBe(false);
    await client.write('hello');
    const parsed = await client.responses(1);
    expect(parsed.interim).toEqual([100]);
    expect(parsed.responses[0].status).toBe(200);
    expect(JSON.parse(parsed.responses[0].body.toString()).body).toBe(Buffer.from('hello').toString('base64'));
  });

  // ---- response writing ----------------------------------------------------------------------------

  describe('response writing', () => {
    let port = 0;
    beforeEach(async () => {
      const routes: Record<string, (res: FrontResponse) => void> = {
        '/end': (res) => {
          res.writeHead(200, { 'x-a': 'b' });
          res.end('hello');
        },
        '/chunks': (res) => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('ab');
          res.write('');
          res.write(Buffer.from('cde'));
          res.end();
        },
        '/chunks-end': (res) => {
          res.writeHead(200);
          res.write('ab');
          res.end('cd');
        },
        '/convert': (res) => {
          res.writeHead(201, { 'content-type': 'text/plain' });
          res.end('xyz');
        },
        '/status': (res) => {
          res.statusCode = 202;
          res.end('accepted');
        },
        '/length-writes': (res) => {
          res.writeHead(200, { 'Content-Length': 6 });
          res.write('abc');
          res.end('def');
        },
        '/inject': (res) => {
          res.writeHead(200, {
            'x-ok': 'fine',
            'x-crlf': 'a\r\nSet-Cookie: evil=1',
            'x-lf': 'a\nInjected-Lf: 1',
            'x-cr': 'a\rInjected-Cr: 1',
            'x-nul': 'a\x00b',
            'x-list': ['good', 'bad\r\nInjected-List: 1'],
            'x-bad\r\nInjected-Name': 'v',
            'x-bad name': 'v',
          });
          res.end('ok');
        },
        '/204': (res) => {
          res.writeHead(204, { 'x-a': 'b' });
          res.end();
        },
        '/204-end': (res) => {
          res.statusCode = 204;
          res.end();
        },
        '/204-body': (res) => {
          res.writeHead(204);
          res.write('ignored');
          res.end('ignored');
        },
        '/304': (res) => {
          res.statusCode = 304;
          res.end('ignored');
        },
        '/date': (res) => {
          res.writeHead(200, { date: 'Tue, 01 Jan 2030 00:00:00 GMT', 'content-length': 0 });
          res.end();
        },
        '/stream': (res) => {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: 1\n\n');
          setTimeout(() => {
            res.write('data: 2\n\n');
            res.end();
          }, 10);
        },
      };
      const { handler } = recorder((s) => routes[s.url](s.res));
      ({ port } = await start(handler));
    });

    async function fetchRaw(path: string, method = 'GET'): Promise<{ res: ParsedResponse; client: Client }> {
      const client = await Client.open(port);
      await client.write(`${method} ${path} HTTP/1.1\r\nHost: a\r\n\r\n`);
      const parsed = await client.responses(1, [method === 'HEAD']);
      expect(parsed.rest.length).toBe(0);
      return { res: parsed.responses[0], client };
    }

    test('writeHead + end(body) sends a content-length and the body once', async () => {
      const { res } = await fetchRaw('/end');
      expect(header(res, 'content-length')).toEqual(['5']);
      expect(header(res, 'transfer-encoding')).toEqual([]);
      expect(header(res, 'x-a')).toEqual(['b']);
      expect(res.body.toString()).toBe('hello');
    });

    test('writeHead without a length then write() sends valid chunked encoding ending in 0\\r\\n\\r\\n', async () => {
      const { res } = await fetchRaw('/chunks');
      expect(header(res, 'transfer-encoding')).toEqual(['chunked']);
      expect(res.wire.toString()).toBe('2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n');
      const { res: res2 } = await fetchRaw('/chunks-end');
      expect(res2.wire.toString()).toBe('2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n');
    });

    test('end(body) after writeHead without a length is sent with a content-length', async () => {
      const { res } = await fetchRaw('/convert');
      expect(res.status).toBe(201);
      expect(header(res, 'content-length')).toEqual(['3']);
      expect(header(res, 'transfer-encoding')).toEqual([]);
      expect(res.body.toString()).toBe('xyz');
      const { res: res2 } = await fetchRaw('/status');
      expect(res2.status).toBe(202);
      expect(header(res2, 'content-length')).toEqual(['8']);
    });

    test('a handler-declared length is kept across writes', async () => {
      const { res } = await fetchRaw('/length-writes');
      expect(header(res, 'content-length')).toEqual(['6']);
      expect(res.body.toString()).toBe('abcdef');
    });

    test('header names and values that would split the response are dropped', async () => {
      const { res, client } = await fetchRaw('/inject');
      expect(header(res, 'x-ok')).toEqual(['fine']);
      expect(header(res, 'x-list')).toEqual(['good']);
      for (const name of ['x-crlf', 'x-lf', 'x-cr', 'x-nul', 'set-cookie', 'injected-lf', 'injected-cr', 'injected-list', 'injected-name']) {
        expect(header(res, name)).toEqual([]);
      }
      expect(client.text).not.toMatch(/Injected|evil|x-bad/i);
      expect(res.body.toString()).toBe('ok');
    });

    test('204 and 304 carry no body and no framing headers, and the connection stays in step', async () => {
      for (const path of ['/204', '/204-end', '/204-body', '/304']) {
        const { res, client } = await fetchRaw(path);
        expect(res.body.length).toBe(0);
        expect(header(res, 'transfer-encoding')).toEqual([]);
        if (path !== '/304') expect(header(res, 'content-length')).toEqual([]);
        // Nothing after the head: the next response on the connection parses.
        await client.write('GET /end HTTP/1.1\r\nHost: a\r\n\r\n');
        const parsed = await client.responses(2);
        expect(parsed.responses[1].body.toString()).toBe('hello');
        expect(parsed.rest.length).toBe(0);
      }
    });

    test('HEAD responses carry no body, whatever the handler writes', async () => {
      for (const path of ['/end', '/chunks', '/chunks-end', '/convert', '/length-writes']) {
        const { client } = await fetchRaw(path, 'HEAD');
        await client.write('GET /end HTTP/1.1\r\nHost: a\r\n\r\n');
        const parsed = await client.responses(2, [true, false]);
        expect(header(parsed.responses[0], 'transfer-encoding')).toEqual([]);
        expect(parsed.responses[1].body.toString()).toBe('hello');
        expect(parsed.rest.length).toBe(0);
      }
      // end(body) with no head yet: the length of the body a GET would get.
      const { res } = await fetchRaw('/status', 'HEAD');
      expect(header(res, 'content-length')).toEqual(['8']);
    });

    test('a Date header is present, once, also when the handler sets its own', async () => {
      const { res } = await fetchRaw('/end');
      const dates = header(res, 'date');
      expect(dates).toHaveLength(1);
      expect(Math.abs(Date.parse(dates[0]) - Date.now())).toBeLessThan(60_000);
      const { res: res2 } = await fetchRaw('/date');
      expect(header(res2, 'date')).toEqual(['Tue, 01 Jan 2030 00:00:00 GMT']);
    });

    test('an HTTP/1.0 client never gets chunked encoding: a streamed body is delimited by the close', async () => {
      const client = await Client.open(port);
      await client.write('GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
      const res = await client.closingResponse();
      expect(header(res, 'transfer-encoding')).toEqual([]);
      expect(res.framing).toBe('close');
      expect(res.body.toString()).toBe('data: 1\n\ndata: 2\n\n');
      expect(header(res, 'connection')).toEqual(['close']);
    });
  });

  // ---- timeouts ------------------------------------------------------------------------------------

  describe('timeouts', () => {
    test('a head dribbled slower than headersTimeoutMs gets 408 and the connection closes', async () => {
      const { handler, seen } = recorder(replyPerRequest);
      const { port } = await start(handler, { headersTimeoutMs: 300 });
      const client = await Client.open(port);
      const t0 = performance.now();
      const head = 'GET / HTTP/1.1\r\nHost: a\r\nX-Slow: abcdefghijklmnopqrstuvwxyz\r\n\r\n';
      for (let i = 0; i < head.length && !client.gone; i++) {
        await client.write(head[i]);
        await sleep(30);
      }
      const res = await client.closingResponse();
      const elapsed = performance.now() - t0;
      expect(res.status).toBe(408);
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(1_500);
      expect(seen).toHaveLength(0);
    });

    test('a fresh connection that sends nothing is closed after about headersTimeoutMs', async () => {
      const { handler } = recorder(replyPerRequest);
      const { port } = await start(handler, { headersTimeoutMs: 300, keepAliveTimeoutMs: 5_000 });
      const client = await Client.open(port);
      const t0 = performance.now();
      await client.until(() => client.gone, 'the idle fresh connection to close', 3_000);
      const elapsed = performance.now() - t0;
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(1_500);
      expect(client.received.length).toBe(0);
    });

    test('a body slower than requestTimeoutMs gets 408; the request emits aborted and the response close', async () => {
      const { handler, seen } = recorder(replyPerRequest);
      const { port } = await start(handler, { headersTimeoutMs: 5_000, requestTimeoutMs: 300, keepAliveTimeoutMs: 5_000 });
      const client = await Client.open(port);
      await client.write('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789');
      const t0 = performance.now();
      const res = await client.closingResponse();
      const elapsed = performance.now() - t0;
      expect(res.status).toBe(408);
      expect(elapsed).toBeLessThan(900);
      expect(seen).toHaveLength(1);
      await waitFor(() => seen[0].aborted && seen[0].responseClosed, "'aborted' and 'close'");
      expect(seen[0].ended).toBe(false);
    });

    test('an idle kept-alive connection is closed after keepAliveTimeoutMs', async () => {
      const { handler } = recorder(replyPerRequest);
      const { port } = await start(handler, { headersTimeoutMs: 5_000, keepAliveTimeoutMs: 400 });
      const client = await Client.open(port);
      await client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
      await client.responses(1);
      const t0 = performance.now();
      await client.until(() => client.gone, 'the idle connection to close', 3_000);
      const elapsed = performance.now() - t0;
      expect(elapsed).toBeGreaterThanOrEqual(300);
      expect(elapsed).toBeLessThan(2_000);
    });

    test('after an error answer, a client that never closes its side is cut off (bounded lingering close)', async () => {
      const { handler } = recorder(replyPerRequest);
      const { port } = await start(handler, { headersTimeoutMs: 300, requestTimeoutMs: 300, keepAliveTimeoutMs: 300 });
      const client = await Client.open(port, { allowHalfOpen: true });
      await client.write('GET / HTTP/1.1\r\n\r\n');
      await client.until(() => client.ended, 'the 400 and FIN');
      expect(parseResponses(client.received, [], true).responses[0].status).toBe(400);
      // The client keeps sending; once the server has really closed, a write is refused (RST).
      const deadline = performance.now() + 3_000;
      while (!client.error && !client.closed && performance.now() < deadline) {
        client.socket.write('x');
        await sleep(50);
      }
      expect(client.error !== undefined || client.closed).toBe(true);
    });
  });

  // ---- early answers -----------------------------------------------------------------------------

  describe('early answers', () => {
    const tooLarge = (res: FrontResponse) => {
      res.writeHead(413, { 'content-type': 'text/plain' });
      res.end('too large');
    };

    test('413 before reading the body: the rest is dropped and a pipelined request is served', async () => {
      const { handler, seen } = recorder(replyPerRequest, (s) => {
        if (s.url === '/big') tooLarge(s.res);
      });
      const { port } = await start(handler);
      const client = await Client.open(port);
      const body = Buffer.alloc(300_000, 'a');
      await client.write(Buffer.concat([Buffer.from(`POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`), body, Buffer.from('GET /next HTTP/1.1\r\nHost: a\r\n\r\n')]));
      const parsed = await client.responses(2);
      expect(parsed.responses.map((r) => r.status)).toEqual([413, 200]);
      expect(parsed.responses[0].body.toString()).toBe('too large');
      expect(JSON.parse(parsed.responses[1].body.toString()).url).toBe('/next');
      expect(seen.map((s) => s.url)).toEqual(['/big', '/next']);
      expect(client.gone).toBe(false);
    });

    test('413 after the first body bytes of a chunked body: the rest is dropped and the next request served', async () => {
      const { handler, seen } = recorder(replyPerRequest, (s) => {
        if (s.url === '/big') s.req.once('data', () => tooLarge(s.res));
      });
      const { port } = await start(handler);
      const client = await Client.open(port);
      await client.write('POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n');
      await client.responses(1);
      await client.write(`${'10\r\n0123456789abcdef\r\n'.repeat(100)}0\r\nx-t: 1\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n`);
      const parsed = await client.responses(2);
      expect(parsed.responses.map((r) => r.status)).toEqual([413, 200]);
      expect(seen.map((s) => s.url)).toEqual(['/big', '/next']);
    });

    test('a body beyond the 64 MiB discard limit closes the connection; what follows is never handled', async () => {
      const { handler, seen } = recorder(replyPerRequest, (s) => {
        if (s.url === '/big') tooLarge(s.res);
      });
      const { port } = await start(handler);
      const client = await Client.open(port);
      const body = Buffer.alloc(MAX_DISCARD_BYTES + 1, 'a');
      void client.write(Buffer.concat([Buffer.from(`POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`), body, Buffer.from('GET /next HTTP/1.1\r\nHost: a\r\n\r\n')]));
      await client.until(() => client.gone, 'the connection to close', 20_000);
      await sleep(50);
      expect(seen.map((s) => s.url)).toEqual(['/big']);
    }, 30_000);

    test('a body of exactly the 64 MiB discard limit is dropped and the connection kept', async () => {
      const { handler, seen } = recorder(replyPerRequest, (s) => {
        if (s.url === '/big') tooLarge(s.res);
      });
      const { port } = await start(handler);
      const client = await Client.open(port);
      const body = Buffer.alloc(MAX_DISCARD_BYTES, 'a');
      void client.write(Buffer.concat([Buffer.from(`POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`), body, Buffer.from('GET /next HTTP/1.1\r\nHost: a\r\n\r\n')]));
      const parsed = await client.responses(2, [], 20_000);
      expect(parsed.responses.map((r) => r.status)).toEqual([413, 200]);
      expect(seen.map((s) => s.url)).toEqual(['/big', '/next']);
    }, 30_000);
  });

  // ---- clients that go away ----------------------------------------------------------------------

  describe('client gone', () => {
    test('mid-body: the request emits aborted, the response close, and late writes do not throw', async () => {
      const { handler, seen } = recorder(replyPerRequest);
      const { port } = await start(handler);
      const client = await Client.open(port);
      await client.write('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\npartial');
      await waitFor(() => seen.length === 1, 'the request');
      client.socket.destroy();
      const s = seen[0];
      await waitFor(() => s.aborted && s.responseClosed, "'aborted' and 'close'");
      expect(s.ended).toBe(false);
      s.res.writeHead(200);
      s.res.write('late');
      s.res.end('late');
      await sleep(20);
    });

    test('mid-response: the response emits close (no aborted: the request was complete), and late writes do not throw', async () => {
      const { handler, seen } = recorder((s) => {
        s.res.writeHead(200);
        s.res.write('first');
      });
      const { port } = await start(handler);
      const client = await Client.open(port);
      await client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
      await client.until(() => client.text.includes('first'), 'the first chunk');
      client.socket.destroy();
      const s = seen[0];
      await waitFor(() => s.responseClosed, "the response's 'close'");
      expect(s.aborted).toBe(false);
      for (let i = 0; i < 5; i++) {
        s.res.write(`more ${i}`);
        await sleep(2);
      }
      s.res.end();
      await sleep(20);
    });

    test('a FIN from the client while its answer is pending counts as gone, as with node:http: the response emits close', async () => {
      // The runtime relies on this to stop an upstream stream nobody reads; half-closing clients
      // that expect their answers are not supported (nor are they by node:http by default).
      const { handler, seen } = recorder(() => undefined);
      const { port } = await start(handler);
      const client = await Client.open(port, { allowHalfOpen: true });
      client.socket.end('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
      await waitFor(() => seen.length === 1, 'the request');
      await waitFor(() => seen[0].responseClosed, "the response's 'close'");
      expect(seen[0].aborted).toBe(false);
    });

    test('gone with a request pipelined behind the one being answered: the second is never handled', async () => {
      const { handler, seen } = recorder(() => undefined);
      const { port } = await start(handler);
      const client = await Client.open(port);
      await client.write('GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n');
      await waitFor(() => seen.length === 1, 'the first request');
      await sleep(20);
      client.socket.destroy();
      await waitFor(() => seen[0].responseClosed, "the first response's 'close'");
      // The handler finishes its answer to a client that left: nothing more may start.
      seen[0].res.end('late');
      await sleep(50);
      expect(seen.map((s) => s.url)).toEqual(['/1']);
    });
  });

  // ---- shutdown --------------------------------------------------------------------------------

  describe('close(), closeIdleConnections(), closeAllConnections()', () => {
    async function setup() {
      let release: (() => void) | undefined;
      const { handler, seen } = recorder((s) => {
        if (s.url === '/hold') release = () => replyPerRequest(s);
        else replyPerRequest(s);
      });
      const { server, port } = await start(handler);
      const idle = await Client.open(port);
      await idle.write('GET /quick HTTP/1.1\r\nHost: a\r\n\r\n');
      await idle.responses(1);
      const fresh = await Client.open(port);
      const busy = await Client.open(port);
      await busy.write('GET /hold HTTP/1.1\r\nHost: a\r\n\r\n');
      await waitFor(() => release !== undefined, 'the held request');
      return { server, port, idle, fresh, busy, seen, release: () => release!() };
    }

    test('close(): idle connections close, a busy one finishes its response then closes, new ones are refused', async () => {
      const { server, port, idle, fresh, busy, release } = await setup();
      server.close();
      await idle.until(() => idle.gone, 'the idle connection to close', 2_000);
      await fresh.until(() => fresh.gone, 'the fresh connection to close', 2_000);
      expect(busy.gone).toBe(false);
      await expect(Client.open(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      release();
      const parsed = await busy.responses(1);
      expect(parsed.responses[0].status).toBe(200);
      await busy.until(() => busy.gone, 'the busy connection to close after its response', 2_000);
    });

    test('closeIdleConnections(): idle ones close, the busy one is answered and stays usable', async () => {
      const { server, idle, fresh, busy, release } = await setup();
      server.closeIdleConnections();
      await idle.until(() => idle.gone, 'the idle connection to close', 2_000);
      await fresh.until(() => fresh.gone, 'the fresh connection to close', 2_000);
      release();
      await busy.responses(1);
      await sleep(50);
      expect(busy.gone).toBe(false);
      await busy.write('GET /again HTTP/1.1\r\nHost: a\r\n\r\n');
      await busy.responses(2);
    });

    test('closeIdleConnections() right after a large response ended does not cut it while it is still being flushed', async () => {
      const big = Buffer.alloc(16 * 1024 * 1024, 'z');
      const { handler, seen } = recorder((s) => s.res.end(big));
      const { server, port } = await start(handler);
      const client = await Client.open(port);
      // A slow reader: the answer cannot leave the server's socket buffer for now.
      client.socket.pause();
      await client.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
      await waitFor(() => seen.length === 1 && seen[0].res.writableEnded, 'the response to end');
      await sleep(20);
      server.closeIdleConnections(); // as the runtime does every 50 ms while draining
      await sleep(50);
      client.socket.resume();
      await client.until(() => client.gone, 'the close', 10_000);
      const parsed = parseResponses(client.received, [], true);
      expect(parsed.responses).toHaveLength(1);
      expect(parsed.responses[0].body.length).toBe(big.length);
    });

    test('closeAllConnections(): every connection is cut; the busy response emits close', async () => {
      const { server, idle, fresh, busy, seen } = await setup();
      server.closeAllConnections();
      for (const c of [idle, fresh, busy]) await c.until(() => c.gone, 'the connection to close', 2_000);
      const held = seen.find((s) => s.url === '/hold')!;
      await waitFor(() => held.responseClosed, "the held response's 'close'");
      expect(() => held.res.end('late')).not.toThrow();
    });

    test('closeAllConnections() on a server still listening keeps timing out new connections', async () => {
      const { handler } = recorder(replyPerRequest);
      const { server, port } = await start(handler, { headersTimeoutMs: 300, keepAliveTimeoutMs: 300 });
      server.closeAllConnections();
      const client = await Client.open(port);
      await client.until(() => client.gone, 'the silent connection to be closed by the head timeout', 3_000);
    });
  });

  // ---- pipelining backpressure -----------------------------------------------------------------

  test('over 1 MiB pipelined behind a pending response pauses reading; everything is served once it ends', async () => {
    let release: (() => void) | undefined;
    const { handler, seen } = recorder((s) => {
      const answer = () => {
        s.res.writeHead(200, { 'content-length': 0, 'x-url': s.url, 'x-size': s.body.length });
        s.res.end();
      };
      if (s.url === '/hold') release = answer;
      else answer();
    });
    const { port } = await start(handler);
    const client = await Client.open(port);
    const body = Buffer.alloc(64 * 1024, 'p');
    const count = 40; // 2.5 MiB
    const parts = [Buffer.from('GET /hold HTTP/1.1\r\nHost: a\r\n\r\n')];
    for (let i = 0; i < count; i++) parts.push(Buffer.from(`POST /p${i} HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`), body);
    void client.write(Buffer.concat(parts));
    await waitFor(() => release !== undefined, 'the held request');
    const socket = seen[0].req.socket;
    await waitFor(() => socket.isPaused(), 'the server to pause reading');
    expect(seen).toHaveLength(1);
    release!();
    const parsed = await client.responses(count + 1, [], 10_000);
    expect(parsed.responses.map((r) => header(r, 'x-url')[0])).toEqual(['/hold', ...Array.from({ length: count }, (_, i) => `/p${i}`)]);
    expect(parsed.responses.slice(1).every((r) => header(r, 'x-size')[0] === String(body.length))).toBe(true);
    expect(seen).toHaveLength(count + 1);
  }, 20_000);
});

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}
