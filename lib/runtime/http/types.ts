/**
 * The request and response API the runtime's handlers use: met by node:http (the admin
 * listener) and by the front server (the proxy listener) alike.
 */
import type { EventEmitter } from 'node:events';
import type { OutgoingHttpHeaders } from 'node:http';

export interface HttpRequest extends EventEmitter {
  readonly method?: string;
  readonly url?: string;
  /** Lowercased names; repeated headers combined as node:http does (joined, first wins, or a list for set-cookie). */
  readonly headers: Record<string, string | string[] | undefined>;
  /** Names as sent, and values, alternating. */
  readonly rawHeaders: string[];
  /** True once the whole body was read. */
  readonly complete: boolean;
  readonly socket: { destroy(error?: Error): void };
  resume(): unknown;
  destroy(): void;
}

export interface HttpResponse extends EventEmitter {
  statusCode: number;
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
  writeHead(status: number, headers?: OutgoingHttpHeaders): unknown;
  write(chunk: Buffer | string): boolean;
  end(chunk?: Buffer | string): unknown;
  destroy(): void;
}
