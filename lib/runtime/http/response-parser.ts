/**
 * Incremental HTTP/1.1 response parser for the upstream client.
 *
 * Node's http client costs about a third of the proxy's throughput; upstream responses are
 * simple (status, headers, content-length or chunked body), so a small parser that never
 * copies body bytes is enough. Input may be split at any byte.
 */

export type ResponseHeaders = Record<string, string | string[]>;

export interface ResponseHandler {
  onHead(status: number, headers: ResponseHeaders): void;
  onBody(chunk: Buffer): void;
  /** The body is complete; `keepAlive` says whether the connection can carry another request. */
  onEnd(keepAlive: boolean): void;
}

export class ResponseParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ResponseParseError';
  }
}

const MAX_HEAD_BYTES = 64 * 1024;
const MAX_CHUNK_LINE_BYTES = 4096;
const CRLF_CRLF = Buffer.from('\r\n\r\n');

const enum State {
  Head,
  Length,
  ChunkSize,
  ChunkData,
  ChunkDataEnd,
  Trailers,
  UntilClose,
  Done,
}

export class ResponseParser {
  private state = State.Head;
  private pending: Buffer | null = null;
  private remaining = 0;
  private keepAlive = true;
  /** True once any byte of the response arrived (a failure before that is safe to retry). */
  received = false;

  constructor(
    private readonly handler: ResponseHandler,
    private readonly headRequest = false,
  ) {}

  private ended = false;

  get done(): boolean {
    return this.ended;
  }

  execute(data: Buffer): void {
    if (data.length) this.received = true;
    let buf = data;
    if (this.pending) {
      buf = Buffer.concat([this.pending, data]);
      this.pending = null;
    }
    let pos = 0;
    while (pos < buf.length) {
      switch (this.state) {
        case State.Head: {
          const end = buf.indexOf(CRLF_CRLF, pos);
          if ((end < 0 ? buf.length : end) - pos > MAX_HEAD_BYTES) throw new ResponseParseError('response head too large');
          if (end < 0) {
            this.pending = buf.subarray(pos);
            return;
          }
          const status = this.parseHead(buf.toString('latin1', pos, end));
          pos = end + 4;
          if (status === -1) continue; // 1xx informational: another head follows
          if ((this.state as State) === State.Done) this.finish(pos === buf.length); // no body
          break;
        }
        case State.Length: {
          const take = Math.min(this.remaining, buf.length - pos);
          this.handler.onBody(buf.subarray(pos, pos + take));
          pos += take;
          this.remaining -= take;
          if (this.remaining === 0) this.finish(pos === buf.length);
          break;
        }
        case State.UntilClose:
          this.handler.onBody(pos === 0 ? buf : buf.subarray(pos));
          return;
        case State.ChunkSize: {
          const lf = buf.indexOf(10, pos);
          if (lf < 0) {
            if (buf.length - pos > MAX_CHUNK_LINE_BYTES) throw new ResponseParseError('chunk size line too long');
            this.pending = buf.subarray(pos);
            return;
          }
          const line = buf.toString('latin1', pos, lf);
          pos = lf + 1;
          const size = parseChunkSize(line);
          if (size === 0) this.state = State.Trailers;
          else {
            this.remaining = size;
            this.state = State.ChunkData;
          }
          break;
        }
        case State.ChunkData: {
          const take = Math.min(this.remaining, buf.length - pos);
          this.handler.onBody(buf.subarray(pos, pos + take));
          pos += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = State.ChunkDataEnd;
          break;
        }
        case State.ChunkDataEnd: {
          const lf = buf.indexOf(10, pos);
          if (lf < 0) {
            if (buf.length - pos > 2) throw new ResponseParseError('missing CRLF after chunk data');
            this.pending = buf.subarray(pos);
            return;
          }
          if (lf - pos > 1 || (lf - pos === 1 && buf[pos] !== 13)) throw new ResponseParseError('missing CRLF after chunk data');
          pos = lf + 1;
          this.state = State.ChunkSize;
          break;
        }
        case State.Trailers: {
          // Trailer fields are read and dropped: nothing the proxy meters arrives in them.
          const lf = buf.indexOf(10, pos);
          if (lf < 0) {
            if (buf.length - pos > MAX_HEAD_BYTES) throw new ResponseParseError('trailers too large');
            this.pending = buf.subarray(pos);
            return;
          }
          const empty = lf === pos || (lf === pos + 1 && buf[pos] === 13);
          pos = lf + 1;
          if (empty) this.finish(pos === buf.length);
          break;
        }
        case State.Done:
          throw new ResponseParseError('data after the end of the response');
      }
    }
  }

  /**
   * The connection closed. Returns true if that completes the response (a body delimited by
   * the close); false if the response was cut short.
   */
  closed(): boolean {
    if (this.state === State.UntilClose) {
      this.finish(false);
      return true;
    }
    return this.ended;
  }

  /** `clean`: no bytes follow the response, so the connection is still in step. */
  private finish(clean: boolean): void {
    this.state = State.Done;
    this.ended = true;
    this.handler.onEnd(this.keepAlive && clean);
  }

  /** Parses a response head; returns -1 for an informational (1xx) head, else the status. */
  private parseHead(head: string): number {
    const firstLf = head.indexOf('\r\n');
    const statusLine = firstLf < 0 ? head : head.slice(0, firstLf);
    if (!statusLine.startsWith('HTTP/1.')) throw new ResponseParseError(`bad status line: ${statusLine.slice(0, 40)}`);
    const http10 = statusLine.charCodeAt(7) === 48; /* '0' */
    const status = Number(statusLine.slice(9, 12));
    if (!(status >= 100 && status <= 999) || (statusLine.length > 12 && statusLine.charCodeAt(12) !== 32)) throw new ResponseParseError(`bad status line: ${statusLine.slice(0, 40)}`);
    if (status >= 100 && status < 200) return -1;

    const headers: ResponseHeaders = {};
    let contentLength = -1;
    let chunked = false;
    let connection = '';
    let start = firstLf < 0 ? head.length : firstLf + 2;
    while (start < head.length) {
      let end = head.indexOf('\r\n', start);
      if (end < 0) end = head.length;
      const colon = head.indexOf(':', start);
      if (colon < 0 || colon > end) throw new ResponseParseError('malformed header line');
      const name = head.slice(start, colon).toLowerCase();
      if (!name || name.charCodeAt(0) === 32 || name.charCodeAt(0) === 9) throw new ResponseParseError('malformed header line');
      const value = head.slice(colon + 1, end).trim();
      start = end + 2;
      if (name === 'content-length') {
        const n = Number(value);
        if (!Number.isSafeInteger(n) || n < 0 || (contentLength >= 0 && contentLength !== n)) {
          throw new ResponseParseError('bad content-length');
        }
        contentLength = n;
      } else if (name === 'transfer-encoding') {
        chunked = value.toLowerCase().endsWith('chunked');
      } else if (name === 'connection') {
        connection = value.toLowerCase();
      }
      const prev = headers[name];
      if (prev === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
      else if (Array.isArray(prev)) prev.push(value);
      else headers[name] = `${prev}, ${value}`;
    }

    this.keepAlive = http10 ? connection.includes('keep-alive') : !connection.includes('close');
    this.handler.onHead(status, headers);

    if (this.headRequest || status === 204 || status === 304) {
      this.state = State.Done;
    } else if (chunked) {
      // A response with both headers is read as chunked and the connection not reused (RFC 9112 6.3).
      if (contentLength >= 0) this.keepAlive = false;
      this.state = State.ChunkSize;
    } else if (contentLength >= 0) {
      this.remaining = contentLength;
      this.state = contentLength === 0 ? State.Done : State.Length;
    } else {
      this.keepAlive = false;
      this.state = State.UntilClose;
    }
    return status;
  }
}

function parseChunkSize(line: string): number {
  let end = line.length;
  if (end && line.charCodeAt(end - 1) === 13) end--;
  const semi = line.indexOf(';');
  if (semi >= 0 && semi < end) end = semi;
  const hex = line.slice(0, end).trim();
  if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw new ResponseParseError(`bad chunk size: ${JSON.stringify(line.slice(0, 20))}`);
  return parseInt(hex, 16);
}
