/**
 * The proxy listener's HTTP/1.1 server: a small request parser and response writer on net
 * sockets, exposing the part of Node's IncomingMessage / ServerResponse API the runtime uses.
 *
 * Why not node:http here: on the request path its JS layers cost about a third more CPU per
 * request than this (measured 15.7 vs 10.7 us for the same trivial server), and the sidecar
 * pays it on every LLM call. The admin listener, which serves probes and scrapes, stays on
 * node:http.
 *
 * What it enforces, as a hardened server must: request heads up to 64 KiB (431 beyond), token
 * characters in methods and header names, no control characters in values, exactly one
 * Content-Length or a chunked Transfer-Encoding and never both (request smuggling), HTTP/1.0
 * and 1.1 keep-alive rules, `Expect: 100-continue`, requests answered in order on a kept-alive
 * connection, and the head, body and idle timeouts (a ticker, not a timer per request).
 */
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';

export interface FrontServerOptions {
  /** A client must send a request head within this time (from its first byte, or from accept). */
  readonly headersTimeoutMs: number;
  /** ...and the whole request within this time. */
  readonly requestTimeoutMs: number;
  /** An idle kept-alive connection is closed after this time. */
  readonly keepAliveTimeoutMs: number;
}

export type Handler = (req: FrontRequest, res: FrontResponse) => void;

const MAX_HEAD_BYTES = 64 * 1024;
/** Bytes of further requests held while one is answered (pipelining), before reading pauses. */
const MAX_PIPELINED_BYTES = 1024 * 1024;
/** Body bytes of a request answered early that are read and dropped before the connection closes. */
const MAX_DISCARD_BYTES = 64 * 1024 * 1024;
const CRLF_CRLF = Buffer.from('\r\n\r\n');
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// eslint-disable-next-line no-control-regex
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
const TARGET = /^[\x21-\x7e\x80-\xff]+$/;
/**
 * Repeated fields node:http keeps only the first of (its matchKnownFields): the handlers were
 * written against IncomingMessage, which also joins cookie with "; " and makes set-cookie a list.
 */
const FIRST_WINS = new Set([
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

export class FrontServer extends EventEmitter {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  private ticker: NodeJS.Timeout | null = null;
  private closing = false;

  constructor(
    readonly options: FrontServerOptions,
    readonly handler: Handler,
  ) {
    super();
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.server.on('error', (err) => this.emit('error', err));
  }

  listen(port: number, host: string, cb: () => void): void {
    this.server.listen(port, host, cb);
    // A quarter of the shortest timeout, the body one included (else a short requestTimeoutMs is
    // enforced at up to a second late).
    const o = this.options;
    const tick = Math.max(10, Math.min(1_000, Math.floor(Math.min(o.headersTimeoutMs, o.keepAliveTimeoutMs, o.requestTimeoutMs) / 4)));
    this.ticker = setInterval(() => {
      const now = performance.now();
      for (const c of this.connections) c.checkTimeouts(now);
    }, tick);
    this.ticker.unref();
  }

  address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  /** Stops accepting; idle connections close now, busy ones when their current response ends. */
  close(): void {
    this.closing = true;
    this.server.close();
    // As node:http (>= 19) does: an idle kept-alive connection would otherwise stay open until
    // its keep-alive timeout (responseDone closes the busy ones).
    this.closeIdleConnections();
  }

  get draining(): boolean {
    return this.closing;
  }

  /** Closes connections with no request in progress. */
  closeIdleConnections(): void {
    for (const c of this.connections) c.closeIfIdle();
  }

  closeAllConnections(): void {
    for (const c of this.connections) c.destroy();
    // Only once closed: a server still listening needs the ticker for the timeouts of new connections.
    if (this.closing && this.ticker) clearInterval(this.ticker);
  }

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const connection = new Connection(this, socket);
    this.connections.add(connection);
    socket.once('close', () => this.connections.delete(connection));
  }
}

const enum Phase {
  /** Waiting for (the rest of) a request head. */
  Head,
  /** Reading a request body. */
  Body,
  /** The request is read; its response is not finished. */
  Answering,
  Closed,
}

/** One client connection: parses requests in order and runs the handler on each. */
class Connection {
  private phase = Phase.Head;
  private pending: Buffer | null = null;
  private request: FrontRequest | null = null;
  private response: FrontResponse | null = null;
  /** When the current phase's clock started (performance.now()). */
  private since = performance.now();
  private headStarted = false;
  /** Whether a request was answered yet: a fresh connection must send one within headersTimeoutMs. */
  private served = false;
  /** Bytes of a body that nobody reads any more (answered early), to skip. */
  private discarding = false;
  private discarded = 0;
  /** When our ended side finished flushing (-1: not yet), for the lingering close. */
  private lingerSince = -1;
  private readonly body = new BodyDecoder();

  constructor(
    private readonly server: FrontServer,
    readonly socket: net.Socket,
  ) {
    socket.on('data', (data: Buffer) => this.onData(data));
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.onClose());
    socket.on('end', () => this.onEnd());
  }

  checkTimeouts(now: number): void {
    const o = this.server.options;
    if (this.phase === Phase.Head) {
      if (this.headStarted || this.pending) {
        if (now - this.since >= o.headersTimeoutMs) this.fail(408, 'request head timeout');
      } else if (now - this.since >= (this.served ? o.keepAliveTimeoutMs : o.headersTimeoutMs)) {
        this.destroy();
      }
    } else if (this.phase === Phase.Body && now - this.since >= o.requestTimeoutMs) {
      this.fail(408, 'request body timeout');
    } else if (this.phase === Phase.Closed && this.lingerSince >= 0 && now - this.lingerSince >= o.headersTimeoutMs) {
      // Our side is ended (an error answer, connection: close) and what the client still sends is
      // read and dropped, so it can read the answer; a client that never ends its side is cut off
      // here, else it would hold the connection forever.
      this.socket.destroy();
    }
  }

  closeIfIdle(): void {
    // Ended, not destroyed: the last response may still be in the socket's buffer (a slow reader),
    // and destroy() would cut it short.
    if (this.phase === Phase.Head && !this.headStarted && !this.pending) this.endGracefully();
  }

  destroy(): void {
    if (this.phase === Phase.Closed) return;
    this.phase = Phase.Closed;
    this.socket.destroy();
  }

  private onData(data: Buffer): void {
    if (this.phase === Phase.Closed) return;
    if (this.phase === Phase.Answering) {
      // The next request, pipelined: held until this answer is done.
      this.pending = this.pending ? Buffer.concat([this.pending, data]) : data;
      if (this.pending.length > MAX_PIPELINED_BYTES) this.socket.pause();
      return;
    }
    this.consume(data);
  }

  private consume(data: Buffer): void {
    let buf = data;
    while (buf.length && this.phase !== Phase.Closed) {
      if (this.phase === Phase.Head) {
        if (!this.headStarted) {
          this.headStarted = true;
          this.since = performance.now();
        }
        if (this.pending) {
          buf = Buffer.concat([this.pending, buf]);
          this.pending = null;
        }
        // Empty lines before a request line are ignored (RFC 9112 2.2): some clients send a CRLF
        // after a body, which would otherwise fail the next request on the connection.
        let skip = 0;
        while (skip + 1 < buf.length && buf[skip] === 13 && buf[skip + 1] === 10) skip += 2;
        if (skip) {
          buf = buf.subarray(skip);
          if (!buf.length) return;
        }
        const end = buf.indexOf(CRLF_CRLF);
        if ((end < 0 ? buf.length : end) > MAX_HEAD_BYTES) {
          this.fail(431, 'request head too large');
          return;
        }
        if (end < 0) {
          this.pending = buf;
          return;
        }
        const rest = buf.subarray(end + 4);
        if (!this.startRequest(buf.toString('latin1', 0, end))) return;
        buf = rest;
      } else if (this.phase === Phase.Body) {
        buf = this.feedBody(buf);
      } else {
        // Answering: keep the bytes of the next request.
        this.pending = this.pending ? Buffer.concat([this.pending, buf]) : buf;
        return;
      }
    }
  }

  /** Parses a head; returns false when the connection was failed. */
  private startRequest(head: string): boolean {
    const lineEnd = head.indexOf('\r\n');
    const line = lineEnd < 0 ? head : head.slice(0, lineEnd);
    const sp1 = line.indexOf(' ');
    const sp2 = line.indexOf(' ', sp1 + 1);
    if (sp1 <= 0 || sp2 < 0 || line.indexOf(' ', sp2 + 1) >= 0) return this.fail(400, 'malformed request line');
    const method = line.slice(0, sp1);
    const url = line.slice(sp1 + 1, sp2);
    const version = line.slice(sp2 + 1);
    if (!TOKEN.test(method)) return this.fail(400, 'malformed method');
    if (!TARGET.test(url)) return this.fail(400, 'malformed request target');
    if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') return this.fail(505, 'HTTP version not supported');

    const headers: Record<string, string | string[]> = {};
    const rawHeaders: string[] = [];
    let contentLength = -1;
    let chunked = false;
    let start = lineEnd < 0 ? head.length : lineEnd + 2;
    while (start < head.length) {
      let end = head.indexOf('\r\n', start);
      if (end < 0) end = head.length;
      const colon = head.indexOf(':', start);
      if (colon <= start || colon > end) return this.fail(400, 'malformed header line');
      const rawName = head.slice(start, colon);
      if (!TOKEN.test(rawName)) return this.fail(400, 'malformed header name');
      // Control characters are looked for before trimming, and only spaces and tabs are trimmed:
      // trim() dropped a bare CR, LF, VT or FF at either end of a value (and NBSP, which is data).
      const rawValue = head.slice(colon + 1, end);
      if (BAD_VALUE.test(rawValue)) return this.fail(400, 'control character in a header value');
      const value = trimOws(rawValue);
      start = end + 2;
      const name = rawName.toLowerCase();
      rawHeaders.push(rawName, value);
      if (name === 'content-length') {
        if (!/^\d{1,15}$/.test(value) || (contentLength >= 0 && contentLength !== Number(value))) return this.fail(400, 'bad content-length');
        contentLength = Number(value);
      } else if (name === 'transfer-encoding') {
        // Only "chunked" is accepted, alone: anything else could be read differently upstream.
        if (chunked || value.toLowerCase() !== 'chunked') return this.fail(501, 'unsupported transfer-encoding');
        chunked = true;
      }
      const prior = headers[name];
      if (prior === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
      else if (name === 'host') return this.fail(400, 'more than one host header'); // RFC 9112 3.2
      else if (Array.isArray(prior)) prior.push(value);
      else if (!FIRST_WINS.has(name)) headers[name] = `${prior}${name === 'cookie' ? '; ' : ', '}${value}`;
    }
    if (chunked && contentLength >= 0) return this.fail(400, 'both content-length and transfer-encoding');
    if (version === 'HTTP/1.1' && headers.host === undefined) return this.fail(400, 'missing host header');

    const connection = (headers.connection as string | undefined)?.toLowerCase();
    const keepAlive = version === 'HTTP/1.1' ? !connection?.includes('close') : !!connection?.includes('keep-alive');
    // httpVersion as IncomingMessage has it: "1.1", not "HTTP/1.1".
    const req = new FrontRequest(this, method, url, version.slice(5), headers, rawHeaders);
    const res = new FrontResponse(this, req, keepAlive && !this.server.draining, version === 'HTTP/1.0');
    this.request = req;
    this.response = res;
    this.discarding = false;
    this.discarded = 0;
    this.body.reset(chunked ? -1 : Math.max(contentLength, 0));

    const expect = headers.expect as string | undefined;
    if (expect !== undefined) {
      if (expect.toLowerCase() !== '100-continue') return this.fail(417, 'unsupported expectation');
      if (!this.body.done) this.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
    }
    this.phase = this.body.done ? Phase.Answering : Phase.Body;
    this.since = performance.now();
    this.server.handler(req, res);
    if (this.body.done && this.request === req) req.finish();
    // The handler may have failed the connection (destroyed the socket).
    return (this.phase as Phase) !== Phase.Closed;
  }

  /** Feeds body bytes; returns what follows the body. */
  private feedBody(buf: Buffer): Buffer {
    const req = this.request!;
    let rest: Buffer;
    try {
      rest = this.body.push(buf, (chunk) => {
        if (this.discarding) {
          this.discarded += chunk.length;
          if (this.discarded > MAX_DISCARD_BYTES) this.destroy();
        } else {
          req.push(chunk);
        }
      });
    } catch (err) {
      this.fail(400, (err as Error).message);
      return EMPTY;
    }
    // Destroyed beyond the discard limit: what follows must not be parsed as another request.
    if ((this.phase as Phase) === Phase.Closed) return EMPTY;
    if (this.body.done) {
      if (this.discarding) this.next();
      else {
        this.phase = Phase.Answering;
        req.finish();
      }
    }
    return rest;
  }

  /** @internal The response ended. */
  responseDone(res: FrontResponse): void {
    // Closed: the client left before the answer ended; requests pipelined behind it must not start.
    if (res !== this.response || this.phase === Phase.Closed) return;
    if (!res.keepAlive || this.server.draining) {
      this.endGracefully();
      return;
    }
    if (this.phase === Phase.Body) {
      // Answered before the body was read (413, a rejection): skip the rest to stay in step.
      this.discarding = true;
      return;
    }
    this.next();
  }

  /** Ready for the next request on this connection. */
  private next(): void {
    this.served = true;
    this.request = null;
    this.response = null;
    this.phase = Phase.Head;
    this.headStarted = false;
    this.since = performance.now();
    const pending = this.pending;
    this.pending = null;
    if (this.socket.isPaused()) this.socket.resume();
    if (pending) this.consume(pending);
  }

  /**
   * Ends our side after what was written; the socket closes when the client ends its side too (net
   * ends ours at its FIN), or once it has been flushed for headersTimeoutMs (checkTimeouts).
   */
  private endGracefully(): void {
    this.phase = Phase.Closed;
    this.socket.end(() => (this.lingerSince = performance.now()));
  }

  /** Answers a protocol error and closes the connection. */
  private fail(status: number, reason: string): false {
    if (this.phase === Phase.Closed) return false;
    const res = this.response;
    if (res && (res.headersSent || this.phase === Phase.Answering)) {
      // Mid-request with a handler at work: nothing sensible to answer.
      this.destroy();
      return false;
    }
    const body = `${reason}\n`;
    this.socket.write(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
    );
    this.endGracefully();
    this.request?.abort();
    return false;
  }

  private onEnd(): void {
    // The client closed its side: a request in progress can never complete.
    if (this.phase === Phase.Body) this.destroy();
    else if (this.phase === Phase.Head) this.destroy();
  }

  private onClose(): void {
    this.phase = Phase.Closed;
    this.request?.abort();
    this.response?.closed();
  }
}

const EMPTY = Buffer.alloc(0);

/** Content-length or chunked request bodies, split at any byte. */
class BodyDecoder {
  /** Bytes left of a content-length body, or of the current chunk. */
  private remaining = 0;
  private chunked = false;
  private state: 'size' | 'data' | 'data-end' | 'trailers' | 'done' = 'done';
  private line = '';

  reset(length: number): void {
    this.line = '';
    if (length < 0) {
      this.chunked = true;
      this.state = 'size';
    } else {
      this.chunked = false;
      this.remaining = length;
      this.state = length === 0 ? 'done' : 'data';
    }
  }

  get done(): boolean {
    return this.state === 'done';
  }

  /** Emits body bytes; returns the bytes after the body (or nothing). */
  push(buf: Buffer, onChunk: (chunk: Buffer) => void): Buffer {
    let pos = 0;
    while (pos < buf.length && this.state !== 'done') {
      if (this.state === 'data') {
        const take = Math.min(this.remaining, buf.length - pos);
        onChunk(pos === 0 && take === buf.length ? buf : buf.subarray(pos, pos + take));
        pos += take;
        this.remaining -= take;
        if (this.remaining === 0) this.state = this.chunked ? 'data-end' : 'done';
        continue;
      }
      // Line-oriented states: read up to LF.
      const lf = buf.indexOf(10, pos);
      const end = lf < 0 ? buf.length : lf;
      this.line += buf.toString('latin1', pos, end);
      if (this.line.length > 4096) throw new Error('chunk line too long');
      if (lf < 0) return EMPTY;
      pos = lf + 1;
      // Lines end in CRLF, and the size has no whitespace before it (RFC 9112 7.1), only before a
      // ';' extension: a bare LF or a padded size is read differently by other parsers (smuggling).
      if (!this.line.endsWith('\r')) throw new Error('chunk line not ended by CRLF');
      const line = this.line.slice(0, -1);
      this.line = '';
      if (this.state === 'size') {
        const semi = line.indexOf(';');
        const hex = semi < 0 ? line : trimOws(line.slice(0, semi));
        if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw new Error('bad chunk size');
        const size = parseInt(hex, 16);
        if (size === 0) this.state = 'trailers';
        else {
          this.remaining = size;
          this.state = 'data';
        }
      } else if (this.state === 'data-end') {
        if (line !== '') throw new Error('missing CRLF after chunk data');
        this.state = 'size';
      } else if (line === '') {
        this.state = 'done'; // end of trailers
      }
    }
    return pos >= buf.length ? EMPTY : buf.subarray(pos);
  }
}

/** A request, with the IncomingMessage API the runtime uses ('data', 'end', headers ...). */
export class FrontRequest extends EventEmitter {
  complete = false;
  private aborted = false;

  constructor(
    private readonly connection: Connection,
    readonly method: string,
    readonly url: string,
    readonly httpVersion: string,
    readonly headers: Record<string, string | string[]>,
    readonly rawHeaders: string[],
  ) {
    super();
  }

  get socket(): net.Socket {
    return this.connection.socket;
  }

  /** Bodies always flow; present for API compatibility. */
  resume(): this {
    return this;
  }

  destroy(): void {
    this.connection.destroy();
  }

  /** @internal */
  push(chunk: Buffer): void {
    this.emit('data', chunk);
  }

  /** @internal */
  finish(): void {
    if (this.complete || this.aborted) return;
    this.complete = true;
    this.emit('end');
  }

  /** @internal */
  abort(): void {
    if (this.complete || this.aborted) return;
    this.aborted = true;
    this.emit('aborted');
  }
}

type HeaderValue = string | number | readonly string[] | undefined;

/** A response, with the ServerResponse API the runtime uses (writeHead, write, end, 'close' ...). */
export class FrontResponse extends EventEmitter {
  statusCode = 200;
  headersSent = false;
  writableEnded = false;
  private head: string | null = null;
  private chunked = false;
  /** HTTP/1.0 and no length yet: streamed, the body ends with the connection; end(body) gives it a length. */
  private closeDelimited = false;
  private closedEmitted = false;

  constructor(
    private readonly connection: Connection,
    private readonly req: FrontRequest,
    /** Whether the connection stays open after this response. */
    public keepAlive: boolean,
    private readonly http10: boolean,
  ) {
    super();
  }

  writeHead(status: number, headers?: Record<string, HeaderValue>): this {
    if (this.headersSent) return this;
    this.statusCode = status;
    let head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    let length = false;
    let date = false;
    if (headers) {
      for (const name in headers) {
        const value = headers[name];
        if (value === undefined) continue;
        // A name with CR, LF, a space or a colon would split or corrupt the response: dropped.
        if (!TOKEN.test(name)) continue;
        const lower = name.toLowerCase();
        if (lower === 'content-length') length = true;
        else if (lower === 'date') date = true; // the handler's (e.g. the upstream's): not a second one
        else if (lower === 'transfer-encoding') continue; // ours to set
        else if (lower === 'connection') {
          if (String(value).toLowerCase().includes('close')) this.keepAlive = false;
          continue;
        }
        if (Array.isArray(value)) {
          for (const v of value) if (!BAD_VALUE.test(v)) head += `${name}: ${v}\r\n`;
        } else {
          const v = String(value);
          // A value with a line break would split the response: dropped.
          if (!BAD_VALUE.test(v)) head += `${name}: ${v}\r\n`;
        }
      }
    }
    if (!length && !this.bodiless()) {
      // HTTP/1.0 has no chunked encoding (RFC 9112 6.1: never Transfer-Encoding to a 1.0 client):
      // a streamed body is delimited by closing the connection (see takeHead, end).
      if (this.http10) this.closeDelimited = true;
      else {
        this.chunked = true;
        head += 'transfer-encoding: chunked\r\n';
      }
    }
    if (!date) head += `date: ${httpDate()}\r\n`;
    if (!this.keepAlive) head += 'connection: close\r\n';
    else if (this.http10) head += 'connection: keep-alive\r\n';
    this.head = `${head}\r\n`;
    return this;
  }

  write(chunk: Buffer | string): boolean {
    if (this.writableEnded) return false;
    if (!this.head) this.writeHead(this.statusCode);
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (this.bodiless() || data.length === 0) {
      if (!this.headersSent) this.connection.socket.write(this.takeHead());
      return true;
    }
    const socket = this.connection.socket;
    if (this.chunked) {
      const size = `${data.length.toString(16)}\r\n`;
      socket.write(this.frame(size, data, '\r\n'));
    } else {
      socket.write(this.frame('', data, ''));
    }
    return true;
  }

  end(chunk?: Buffer | string): this {
    if (this.writableEnded) return this;
    const data = chunk === undefined ? EMPTY : typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const socket = this.connection.socket;
    if (!this.headersSent) {
      // The whole body is known: one write, with its length (never chunked).
      // No Content-Length on a 1xx or 204 (RFC 9110 8.6), nor a made-up 0 on a 304.
      const s = this.statusCode;
      if (!this.head) this.writeHead(s, s === 204 || s === 304 || s < 200 ? undefined : { 'content-length': data.length });
      else if (this.chunked) {
        this.head = this.head.replace('transfer-encoding: chunked\r\n', `content-length: ${data.length}\r\n`);
        this.chunked = false;
      } else if (this.closeDelimited) {
        this.head = `${this.head.slice(0, -2)}content-length: ${data.length}\r\n\r\n`;
        this.closeDelimited = false;
      }
      socket.write(this.frame('', this.bodiless() ? EMPTY : data, ''));
    } else {
      if (data.length) this.write(data);
      if (this.chunked && !this.bodiless()) socket.write('0\r\n\r\n');
    }
    this.writableEnded = true;
    this.connection.responseDone(this);
    this.emit('finish');
    this.emitClose();
    return this;
  }

  destroy(): void {
    this.connection.destroy();
  }

  /** @internal The connection closed (before or after the response ended). */
  closed(): void {
    this.emitClose();
  }

  private emitClose(): void {
    if (this.closedEmitted) return;
    this.closedEmitted = true;
    // As node:http: 'close' after the response is done, or when the connection goes first.
    process.nextTick(() => this.emit('close'));
  }

  private bodiless(): boolean {
    return this.req.method === 'HEAD' || this.statusCode === 204 || this.statusCode === 304 || (this.statusCode >= 100 && this.statusCode < 200);
  }

  /** The head, as it goes out: a streamed body to an HTTP/1.0 client ends with the connection. */
  private takeHead(): string {
    this.headersSent = true;
    if (!this.closeDelimited) return this.head!;
    this.keepAlive = false;
    return this.head!.replace('connection: keep-alive\r\n', 'connection: close\r\n');
  }

  /** Head (if not yet sent), prefix, data and suffix as one buffer: one write. */
  private frame(prefix: string, data: Buffer, suffix: string): Buffer {
    const head = this.headersSent ? prefix : this.takeHead() + prefix;
    const headLength = Buffer.byteLength(head, 'latin1');
    const out = Buffer.allocUnsafe(headLength + data.length + suffix.length);
    out.write(head, 0, 'latin1');
    data.copy(out, headLength);
    if (suffix) out.write(suffix, headLength + data.length, 'latin1');
    return out;
  }
}

/** Without leading and trailing spaces and tabs (OWS). */
function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

let dateSecond = 0;
let dateText = '';

/** The Date header value, formatted once per second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}
