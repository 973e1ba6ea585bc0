/**
 * A small Redis client (RESP2 over TCP or TLS): commands in order on one connection, scripts by
 * SHA with a fallback to EVAL, AUTH and SELECT on connect, and a reconnect loop that never gives
 * up. While disconnected, calls fail at once so the caller's failure mode applies without a wait.
 *
 * Our own rather than ioredis: the runtime needs a handful of commands, one connection and
 * predictable failure semantics, and every KiB of dist/sidecar.js ships in a ConfigMap.
 */
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';

export type RespValue = string | number | null | RespValue[] | RedisReplyError;

export class RedisReplyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisReplyError';
  }
}

export class RedisUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisUnavailableError';
  }
}

export interface RedisClientOptions {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly tls?: { ca?: string; servername?: string };
  readonly username?: string;
  /** Read at every (re)connect, so a rotated password is picked up. */
  readonly password?: () => string;
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs?: number;
  /** Called when the connection state changes. */
  readonly onStateChange?: (up: boolean, error?: string) => void;
}

/** A Lua script, sent by SHA once Redis knows it. */
export class LuaScript {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

interface Pending {
  resolve(value: RespValue): void;
  reject(error: Error): void;
  sentAt: number;
}

const CRLF = '\r\n';

export function parseRedisUrl(url: string): { host: string; port: number; db: number; tls: boolean } {
  const u = new URL(url);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : 6379,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    tls: u.protocol === 'rediss:',
  };
}

export class RedisClient {
  private socket: net.Socket | null = null;
  private connected = false;
  private readonly queue: Pending[] = [];
  private parser = new RespParser();
  private backoffMs = 100;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private readonly watchdog: NodeJS.Timeout;
  private closed = false;
  private lastError = '';
  /** A late head command is being confirmed after the current turn's I/O. */
  private confirming = false;

  constructor(private readonly options: RedisClientOptions) {
    // One timer checks the oldest command: replies come in order, so a late head means the
    // connection is stuck, and everything on it is failed and the connection replaced.
    this.watchdog = setInterval(() => this.checkTimeouts(), Math.max(10, Math.floor(options.commandTimeoutMs / 4)));
    this.watchdog.unref();
    this.connect();
  }

  get isUp(): boolean {
    return this.connected;
  }

  /** Resolves true once connected, or false after `timeoutMs`. */
  waitUntilUp(timeoutMs: number): Promise<boolean> {
    if (this.connected) return Promise.resolve(true);
    return new Promise((resolve) => {
      const started = Date.now();
      const poll = setInterval(() => {
        if (this.connected || Date.now() - started >= timeoutMs) {
          clearInterval(poll);
          resolve(this.connected);
        }
      }, 10);
    });
  }

  get error(): string {
    return this.lastError;
  }

  /** Sends a command; rejects with RedisUnavailableError when not connected or too slow. */
  call(args: ReadonlyArray<string | number>): Promise<RespValue> {
    if (!this.connected || !this.socket) return Promise.reject(new RedisUnavailableError(`redis unavailable: ${this.lastError || 'connecting'}`));
    return this.send(this.socket, args);
  }

  /** Runs a script by SHA, loading it on NOSCRIPT. */
  async eval(script: LuaScript, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<RespValue> {
    const reply = await this.call(['EVALSHA', script.sha, keys.length, ...keys, ...args]);
    if (reply instanceof RedisReplyError && reply.message.startsWith('NOSCRIPT')) {
      return this.call(['EVAL', script.source, keys.length, ...keys, ...args]);
    }
    return reply;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.watchdog);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.drop(new RedisUnavailableError('redis client closed'));
  }

  private send(socket: net.Socket, args: ReadonlyArray<string | number>): Promise<RespValue> {
    let out = `*${args.length}${CRLF}`;
    for (const arg of args) {
      const s = typeof arg === 'number' ? String(arg) : arg;
      out += `$${Buffer.byteLength(s)}${CRLF}${s}${CRLF}`;
    }
    // Commands issued in the same event-loop turn leave in one write (pipelined): fewer syscalls
    // on both sides, and no added wait (the turn ends before any reply could arrive).
    if (!this.corked) {
      this.corked = socket;
      socket.cork();
      setImmediate(this.uncork);
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ resolve, reject, sentAt: performance.now() });
      socket.write(out);
    });
  }

  private corked: net.Socket | null = null;
  private readonly uncork = (): void => {
    const socket = this.corked;
    this.corked = null;
    socket?.uncork();
  };

  private connect(): void {
    if (this.closed) return;
    const o = this.options;
    const { host, port } = o;
    const socket = o.tls
      ? tls.connect({ host, port, servername: o.tls.servername ?? (net.isIP(host) ? undefined : host), ca: o.tls.ca })
      : net.connect({ host, port });
    this.socket = socket;
    this.parser = new RespParser();
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    const timer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${o.connectTimeoutMs ?? 2000} ms`)), o.connectTimeoutMs ?? 2000);
    socket.once(o.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      this.handshake(socket).then(
        () => {
          if (this.socket !== socket) return;
          this.connected = true;
          this.backoffMs = 100;
          this.lastError = '';
          o.onStateChange?.(true);
        },
        (err: Error) => socket.destroy(err),
      );
    });
    socket.on('data', (data: Buffer) => {
      try {
        this.parser.push(data, (reply) => {
          const pending = this.queue.shift();
          if (pending) pending.resolve(reply);
        });
      } catch (err) {
        socket.destroy(err as Error);
      }
    });
    socket.on('error', (err: Error) => {
      this.lastError = err.message;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (this.socket !== socket) return;
      const wasUp = this.connected;
      this.drop(new RedisUnavailableError(`redis connection lost: ${this.lastError || 'closed'}`));
      if (wasUp) o.onStateChange?.(false, this.lastError || 'closed');
      this.scheduleReconnect();
    });
  }

  private async handshake(socket: net.Socket): Promise<void> {
    const o = this.options;
    const password = o.password?.();
    if (password) {
      const reply = await this.send(socket, o.username ? ['AUTH', o.username, password] : ['AUTH', password]);
      if (reply instanceof RedisReplyError) throw new Error(`AUTH failed: ${reply.message}`);
    }
    if (o.db) {
      const reply = await this.send(socket, ['SELECT', o.db]);
      if (reply instanceof RedisReplyError) throw new Error(`SELECT ${o.db} failed: ${reply.message}`);
    }
    const pong = await this.send(socket, ['PING']);
    if (pong instanceof RedisReplyError) throw new Error(`PING failed: ${pong.message}`);
  }

  private drop(error: Error): void {
    this.connected = false;
    const socket = this.socket;
    this.socket = null;
    for (const pending of this.queue.splice(0)) pending.reject(error);
    socket?.destroy();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(2_000, this.backoffMs * 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private checkTimeouts(): void {
    const head = this.queue[0];
    if (!head || performance.now() - head.sentAt < this.options.commandTimeoutMs || this.confirming) return;
    // After a stall of the process itself (a long GC pause, a throttled CPU) the reply may be
    // waiting in the socket: timers run before sockets are read, so decide once this turn's I/O
    // has been (setImmediate runs after it).
    this.confirming = true;
    setImmediate(() => {
      this.confirming = false;
      if (!this.closed && this.queue[0] === head) this.timeOut();
    });
  }

  private timeOut(): void {
    this.lastError = `command timed out after ${this.options.commandTimeoutMs} ms`;
    const socket = this.socket;
    const wasUp = this.connected;
    this.drop(new RedisUnavailableError(`redis ${this.lastError}`));
    if (wasUp) this.options.onStateChange?.(false, this.lastError);
    if (socket) this.scheduleReconnect();
  }
}

/** Incremental RESP2 reply parser. */
export class RespParser {
  private buf: Buffer | null = null;

  push(data: Buffer, onReply: (reply: RespValue) => void): void {
    this.buf = this.buf ? Buffer.concat([this.buf, data]) : data;
    let pos = 0;
    for (;;) {
      const parsed = parseValue(this.buf, pos);
      if (!parsed) break;
      pos = parsed.next;
      onReply(parsed.value);
    }
    this.buf = pos >= this.buf.length ? null : this.buf.subarray(pos);
  }
}

function parseValue(buf: Buffer, pos: number): { value: RespValue; next: number } | null {
  if (pos >= buf.length) return null;
  const lineEnd = buf.indexOf(CRLF, pos);
  if (lineEnd < 0) return null;
  const type = buf[pos];
  const line = buf.toString('utf8', pos + 1, lineEnd);
  const after = lineEnd + 2;
  switch (type) {
    case 43: // +
      return { value: line, next: after };
    case 45: // -
      return { value: new RedisReplyError(line), next: after };
    case 58: // :
      return { value: Number(line), next: after };
    case 36: {
      // $
      const len = Number(line);
      if (len < 0) return { value: null, next: after };
      if (buf.length < after + len + 2) return null;
      return { value: buf.toString('utf8', after, after + len), next: after + len + 2 };
    }
    case 42: {
      // *
      const count = Number(line);
      if (count < 0) return { value: null, next: after };
      const items: RespValue[] = [];
      let next = after;
      for (let i = 0; i < count; i++) {
        const item = parseValue(buf, next);
        if (!item) return null;
        items.push(item.value);
        next = item.next;
      }
      return { value: items, next };
    }
    default:
      throw new Error(`unexpected RESP type byte ${type}`);
  }
}
