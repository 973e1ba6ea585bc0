/**
 * A tiny local HTTP server standing in for an agent's tools: it records every call (method,
 * path, headers, body) and answers with a handler per path (by default 200 with the JSON it
 * received, under "received").
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ToolCall {
  readonly method: string;
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

export type ToolHandler = (call: ToolCall, res: http.ServerResponse) => void;

export class ToolServer {
  readonly calls: ToolCall[] = [];
  private readonly handlers = new Map<string, ToolHandler>();

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {}

  static async start(): Promise<ToolServer> {
    let self: ToolServer | undefined;
    const server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        const call: ToolCall = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body };
        self!.calls.push(call);
        (self!.handlers.get(call.path) ?? echo)(call, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    self = new ToolServer(server, (server.address() as AddressInfo).port);
    return self;
  }

  /** The endpoint URL of a path on this server. */
  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  on(path: string, handler: ToolHandler): void {
    this.handlers.set(path, handler);
  }

  callsTo(path: string): ToolCall[] {
    return this.calls.filter((c) => c.path === path);
  }

  reset(): void {
    this.calls.length = 0;
    this.handlers.clear();
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function echo(call: ToolCall, res: http.ServerResponse): void {
  let received: unknown = call.body;
  try {
    received = JSON.parse(call.body);
  } catch {
    // not JSON: echoed as text
  }
  json(res, 200, { ok: true, path: call.path, received });
}

export function json(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
