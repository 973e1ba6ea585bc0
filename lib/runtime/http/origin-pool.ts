/**
 * Keep-alive connection pool to one upstream origin, speaking HTTP/1.1 over TCP or TLS.
 *
 * One request per connection at a time (no pipelining). Idle connections are reused
 * newest-first so a quiet period lets the oldest ones expire, and a connection the server
 * closed while it sat idle is dropped as soon as the close is seen. A request is never resent
 * here, not even after a failure on a reused connection before any response byte: the provider
 * may have acted on it (and billed it), so that is the exchange's decision, counted as an attempt.
 *
 * Each socket gets its listeners once, at connect, and routes events to whichever call owns it:
 * no listener or closure churn per request.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { ResponseParser, type ResponseHandler, type ResponseHeaders } from './response-parser';

export interface PoolOptions {
  readonly connectTimeoutMs: number;
  /** Idle connections older than this are closed. */
  readonly idleTimeoutMs: number;
  readonly maxSockets: number;
}

export interface UpstreamRequest {
  readonly method: string;
  /** Path and query, already joined with the origin's base path. */
  readonly path: string;
  /** Header lines, each `name: value\r\n`, without host and content-length. */
  readonly headerLines: string;
  readonly body: Buffer | null;
}

export type UpstreamErrorKind = 'connect' | 'connect_timeout' | 'connection' | 'protocol';

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    /** True when some response bytes had arrived before the failure. */
    readonly responseStarted: boolean,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

export interface UpstreamCallbacks extends ResponseHandler {
  onError(error: UpstreamError): void;
}

interface PooledSocket extends net.Socket {
  _pool: OriginPool;
  /** The call using the socket, or null while it sits idle. */
  _call: UpstreamCall | null;
  _idleSince: number;
}

type AcquireCallback = (socket: PooledSocket | null, error?: UpstreamError) => void;

/** Bodies up to this size are copied into the head's buffer so a request is one write. */
const SINGLE_WRITE_MAX = 64 * 1024;

function onSocketData(this: PooledSocket, data: Buffer): void {
  if (this._call) this._call.onData(data);
  else this._pool.dropIdle(this); // unsolicited bytes: the connection is out of step
}

function onSocketEnd(this: PooledSocket): void {
  if (this._call) this._call.onSocketGone('connection closed by upstream');
  else this._pool.dropIdle(this);
}

function onSocketError(this: PooledSocket, err: Error): void {
  if (this._call) this._call.onSocketGone(err.message);
  else this._pool.dropIdle(this);
}

function onSocketClose(this: PooledSocket): void {
  if (this._call) this._call.onSocketGone('connection closed');
  this._pool.closed(this);
}

export class OriginPool {
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  private readonly hostHeader: string;
  private readonly idle: PooledSocket[] = [];
  private readonly waiting: AcquireCallback[] = [];
  private open = 0;
  private tlsSession: Buffer | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private shut = false;

  constructor(
    origin: URL,
    private readonly options: PoolOptions,
  ) {
    this.tls = origin.protocol === 'https:';
    this.host = origin.hostname.replace(/^\[|\]$/g, '');
    this.port = origin.port ? Number(origin.port) : this.tls ? 443 : 80;
    this.hostHeader = origin.host;
  }

  /** Sends a request; the callbacks receive the response. The returned call can be aborted. */
  request(req: UpstreamRequest, callbacks: UpstreamCallbacks): UpstreamCall {
    const call = new UpstreamCall(this, req, callbacks);
    call.start();
    return call;
  }

  /** @internal The request as bytes: one buffer unless the body is large. */
  serialize(req: UpstreamRequest): Buffer[] {
    const head =
      `${req.method} ${req.path} HTTP/1.1\r\nhost: ${this.hostHeader}\r\n${req.headerLines}` +
      (req.body ? `content-length: ${req.body.length}\r\n\r\n` : req.method === 'GET' || req.method === 'HEAD' ? '\r\n' : 'content-length: 0\r\n\r\n');
    const body = req.body;
    if (!body || body.length === 0) return [Buffer.from(head, 'latin1')];
    if (body.length > SINGLE_WRITE_MAX) return [Buffer.from(head, 'latin1'), body];
    const headLength = Buffer.byteLength(head, 'latin1');
    const out = Buffer.allocUnsafe(headLength + body.length);
    out.write(head, 0, 'latin1');
    body.copy(out, headLength);
    return [out];
  }

  /** @internal Hands out an idle connection, a new one, or queues until one frees up. */
  acquire(cb: AcquireCallback): void {
    if (this.shut) return cb(null, new UpstreamError('connect', 'pool closed', false));
    let socket: PooledSocket | undefined;
    while ((socket = this.idle.pop())) {
      if (!socket.destroyed && socket.readable && socket.writable) return cb(socket);
      socket.destroy();
    }
    if (this.open >= this.options.maxSockets) {
      this.waiting.push(cb);
      return;
    }
    this.connect(cb);
  }

  private connect(cb: AcquireCallback): void {
    this.open++;
    let settled = false;
    const socket = (
      this.tls
        ? tls.connect({
            host: this.host,
            port: this.port,
            servername: net.isIP(this.host) ? undefined : this.host,
            ALPNProtocols: ['http/1.1'],
            session: this.tlsSession,
          })
        : net.connect({ host: this.host, port: this.port })
    ) as PooledSocket;
    socket._pool = this;
    socket._call = null;
    socket._idleSince = 0;
    const fail = (error: UpstreamError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      this.open--;
      this.serveWaiter();
      cb(null, error);
    };
    const timer = setTimeout(
      () => fail(new UpstreamError('connect_timeout', `connect to ${this.hostHeader} timed out after ${this.options.connectTimeoutMs} ms`, false)),
      this.options.connectTimeoutMs,
    );
    socket.once('error', (err: Error) => fail(new UpstreamError('connect', `connect to ${this.hostHeader} failed: ${err.message}`, false)));
    if (this.tls) (socket as unknown as tls.TLSSocket).on('session', (session: Buffer) => (this.tlsSession = session));
    socket.once(this.tls ? 'secureConnect' : 'connect', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 30_000);
      socket.on('data', onSocketData);
      socket.on('end', onSocketEnd);
      socket.on('error', onSocketError);
      socket.on('close', onSocketClose);
      cb(socket);
    });
  }

  /** @internal Returns a connection after a complete response, or closes it. */
  release(socket: PooledSocket, reusable: boolean): void {
    socket._call = null;
    if (!reusable || this.shut || socket.destroyed) {
      socket.destroy();
      return;
    }
    const next = this.waiting.shift();
    if (next) return next(socket);
    socket._idleSince = Date.now();
    this.idle.push(socket);
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(1000, this.options.idleTimeoutMs / 2));
      this.sweeper.unref();
    }
  }

  /** @internal An idle connection closed or misbehaved: forget it. */
  dropIdle(socket: PooledSocket): void {
    const i = this.idle.indexOf(socket);
    if (i >= 0) this.idle.splice(i, 1);
    socket.destroy();
  }

  /** @internal */
  closed(socket: PooledSocket): void {
    const i = this.idle.indexOf(socket);
    if (i >= 0) this.idle.splice(i, 1);
    this.open--;
    this.serveWaiter();
  }

  private sweep(): void {
    const cutoff = Date.now() - this.options.idleTimeoutMs;
    // Oldest connections sit at the front (reuse takes from the back).
    while (this.idle.length && this.idle[0]._idleSince < cutoff) this.idle.shift()!.destroy();
    if (!this.idle.length && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private serveWaiter(): void {
    if (!this.waiting.length || this.shut || this.open >= this.options.maxSockets) return;
    this.connect(this.waiting.shift()!);
  }

  /** Closes idle connections and refuses new requests. */
  close(): void {
    this.shut = true;
    for (const socket of this.idle.splice(0)) socket.destroy();
    for (const waiter of this.waiting.splice(0)) waiter(null, new UpstreamError('connect', 'pool closed', false));
    if (this.sweeper) clearInterval(this.sweeper);
  }

  /** Connections open, idle or busy. */
  get size(): number {
    return this.open;
  }

  get idleCount(): number {
    return this.idle.length;
  }
}

/** One request on the pool: the socket it runs on, its parser, and its outcome. */
export class UpstreamCall {
  private socket: PooledSocket | null = null;
  private readonly parser: ResponseParser;
  private finished = false;

  constructor(
    private readonly pool: OriginPool,
    private readonly req: UpstreamRequest,
    private readonly callbacks: UpstreamCallbacks,
  ) {
    this.parser = new ResponseParser(this, req.method === 'HEAD');
  }

  /** @internal */
  start(): void {
    this.pool.acquire((socket, error) => {
      if (this.finished) {
        if (socket) this.pool.release(socket, true);
        return;
      }
      if (!socket) return this.fail(error!);
      this.socket = socket;
      socket._call = this;
      const parts = this.pool.serialize(this.req);
      for (const part of parts) socket.write(part);
    });
  }

  /** Stops the request; the connection is closed since the response is unread. */
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    this.dropSocket();
  }

  // ResponseHandler, called by the parser.
  onHead(status: number, headers: ResponseHeaders): void {
    if (!this.finished) this.callbacks.onHead(status, headers);
  }

  onBody(chunk: Buffer): void {
    if (!this.finished) this.callbacks.onBody(chunk);
  }

  onEnd(keepAlive: boolean): void {
    if (this.finished) return;
    this.finished = true;
    const socket = this.socket!;
    this.socket = null;
    this.pool.release(socket, keepAlive);
    this.callbacks.onEnd(keepAlive);
  }

  /** @internal */
  onData(data: Buffer): void {
    try {
      this.parser.execute(data);
    } catch (err) {
      if (this.parser.done) return; // a whole response followed by garbage: parser gave keepAlive=false
      this.fail(new UpstreamError('protocol', `invalid response from upstream: ${(err as Error).message}`, true));
    }
  }

  /** @internal The connection ended, failed or closed while this call owned it. */
  onSocketGone(reason: string): void {
    if (this.finished) return;
    if (this.parser.closed()) return; // body delimited by the close
    this.fail(new UpstreamError('connection', reason, this.parser.received));
  }

  private dropSocket(): void {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    socket._call = null;
    socket.destroy();
  }

  private fail(error: UpstreamError): void {
    if (this.finished) return;
    this.finished = true;
    this.dropSocket();
    this.callbacks.onError(error);
  }
}
