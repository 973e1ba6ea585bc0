/**
 * Server-sent events, split into whole events however the bytes were chunked on the wire.
 * An event is handed on once, whole, with its terminating blank line, so usage carried in an
 * event can never be lost or counted twice at a chunk boundary.
 */

const LF = 10;
const CR = 13;

export class SseSplitter {
  private pending: Buffer | null = null;

  /** Calls `onEvent` for every event completed by `chunk`, in order. */
  push(chunk: Buffer, onEvent: (event: Buffer) => void): void {
    let buf = chunk;
    let searchFrom = 0;
    if (this.pending) {
      // A boundary may straddle the old and new bytes: look back three bytes.
      searchFrom = Math.max(0, this.pending.length - 3);
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let start = 0;
    for (;;) {
      const end = findEventEnd(buf, Math.max(start, searchFrom));
      if (end < 0) break;
      onEvent(buf.subarray(start, end));
      start = end;
    }
    if (start < buf.length) this.pending = buf.subarray(start);
  }

  /** Bytes of an unfinished event (at the end of a stream), or null. */
  takeRemainder(): Buffer | null {
    const rest = this.pending;
    this.pending = null;
    return rest;
  }
}

/** Index just past the blank line ending the first event at or after `from`, or -1. */
function findEventEnd(buf: Buffer, from: number): number {
  let i = buf.indexOf(LF, from);
  while (i >= 0) {
    // "\n\n" or "\n\r\n"
    const next = buf[i + 1];
    if (next === LF) return i + 2;
    if (next === CR && buf[i + 2] === LF) return i + 3;
    if (next === undefined) return -1;
    i = buf.indexOf(LF, i + 1);
  }
  return -1;
}

/**
 * The `data` field of an event (multiple data lines joined by newlines), or null if it has none.
 */
export function eventData(event: Buffer): string | null {
  const text = event.toString('utf8');
  let data: string | null = null;
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    let line = text.slice(pos, end);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    pos = end + 1;
    if (line.startsWith('data:')) {
      const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
      data = data === null ? value : `${data}\n${value}`;
    }
  }
  return data;
}

/** The `event` field of an event, or undefined. Reads only the first line, where providers put it. */
export function eventName(event: Buffer): string | undefined {
  if (event[0] !== 101 /* e */ || event.toString('latin1', 0, 6) !== 'event:') return undefined;
  let end = event.indexOf(LF);
  if (end < 0) end = event.length;
  return event.toString('latin1', 6, end).trim();
}
