/**
 * A TCP fault proxy on loopback, placed between the sidecar and something it calls (the fake
 * LLM provider, redis-server), for transport faults the far end cannot produce by itself:
 * connection resets, a slow first byte, streams that stall or are cut after N bytes, latency
 * on every chunk, and refused connections (the far end is down).
 *
 * Faults apply per connection: `nextConnections(...)` queues faults for the next connections
 * in order; `setFault(...)` is the fault for every connection after those (pass through by
 * default). Byte counts and delays are about the bytes going back to the caller (the
 * response); latency applies both ways.
 */
import * as net from 'node:net';

export type Fault =
  /** Forward both ways as they come. */
  | { readonly kind: 'pass' }
  /** Reset the caller's connection (RST), at once or after this many response bytes. */
  | { readonly kind: 'reset'; readonly afterBytes?: number }
  /** Hold the first response bytes back this long (the far end answers slowly). */
  | { readonly kind: 'slow-first-byte'; readonly ms: number }
  /** Forward this many response bytes, then nothing more, keeping both connections open. */
  | { readonly kind: 'stall'; readonly afterBytes: number }
  /** Forward this many response bytes, then close the caller's connection cleanly (FIN). */
  | { readonly kind: 'truncate'; readonly afterBytes: number }
  /** Delay every chunk, both ways, by this long (order kept). */
  | { readonly kind: 'latency'; readonly ms: number };

export const PASS: Fault = { kind: 'pass' };

interface Link {
  readonly client: net.Socket;
  readonly server: net.Socket;
  readonly fault: Fault;
  /** Response bytes forwarded to the client so far. */
  down: number;
  stalled: boolean;
}

export class FaultProxy {
  private server: net.Server;
  private readonly links = new Set<Link>();
  private readonly queued: Fault[] = [];
  private fault: Fault = PASS;
  private listening = false;
  /** Connections accepted since start, and how many of them were reset at once (a `reset` fault without afterBytes). */
  accepted = 0;
  resetOnConnect = 0;

  private constructor(
    private target: { host: string; port: number },
    readonly port: number,
  ) {
    this.server = this.makeServer();
  }

  /** Starts on a free loopback port, forwarding to `targetPort` on 127.0.0.1. */
  static async start(targetPort: number): Promise<FaultProxy> {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const proxy = new FaultProxy({ host: '127.0.0.1', port: targetPort }, port);
    await proxy.up();
    return proxy;
  }

  /** As an origin: `http://127.0.0.1:PORT`. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Open proxied connections. */
  get connections(): number {
    return this.links.size;
  }

  /** The fault for connections after the queued ones. */
  setFault(fault: Fault): this {
    this.fault = fault;
    return this;
  }

  /** Faults for the next connections, one each, in order. */
  nextConnections(...faults: Fault[]): this {
    this.queued.push(...faults);
    return this;
  }

  /** Back to passing everything through, nothing queued. */
  reset(): void {
    this.queued.length = 0;
    this.fault = PASS;
  }

  /** Resets every open connection (both sides), so the next request opens a fresh one. */
  async dropConnections(): Promise<void> {
    const closed = [...this.links].map((l) => new Promise<void>((resolve) => (l.client.destroyed ? resolve() : l.client.once('close', () => resolve()))));
    for (const link of [...this.links]) this.sever(link, true);
    await Promise.all(closed);
  }

  /** The far end goes down: the listener closes (connects are refused) and open connections are reset. */
  async down(): Promise<void> {
    if (this.listening) {
      this.listening = false;
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      await this.dropConnections();
      await closed;
    }
  }

  /** Listening again on the same port. */
  async up(): Promise<void> {
    if (this.listening) return;
    this.server = this.makeServer();
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => {
        this.server.removeListener('error', reject);
        resolve();
      });
    });
    this.listening = true;
  }

  async close(): Promise<void> {
    this.reset();
    await this.down();
  }

  private makeServer(): net.Server {
    return net.createServer({ pauseOnConnect: true }, (client) => this.accept(client));
  }

  private accept(client: net.Socket): void {
    this.accepted++;
    const fault = this.queued.shift() ?? this.fault;
    client.on('error', () => undefined);
    if (fault.kind === 'reset' && !fault.afterBytes) {
      this.resetOnConnect++;
      client.resetAndDestroy();
      return;
    }
    const server = net.connect(this.target);
    server.on('error', () => undefined);
    const link: Link = { client, server, fault, down: 0, stalled: false };
    this.links.add(link);
    const latency = fault.kind === 'latency' ? fault.ms : 0;
    const later = (fn: () => void) => (latency ? setTimeout(fn, latency) : fn());

    client.on('data', (chunk: Buffer) => later(() => server.destroyed || server.write(chunk)));
    client.on('end', () => later(() => server.end()));
    client.on('close', () => this.sever(link, false));
    server.on('close', () => this.sever(link, false));
    let held: Buffer[] | null = fault.kind === 'slow-first-byte' ? [] : null;
    let endHeld = false;
    server.on('end', () => {
      if (held) endHeld = true;
      else later(() => client.end());
    });
    server.on('data', (chunk: Buffer) => {
      if (held) {
        // The first bytes start the clock; everything until it runs out is held and sent together.
        if (!held.length) {
          setTimeout(() => {
            const out = Buffer.concat(held!);
            held = null;
            if (client.destroyed) return;
            client.write(out);
            if (endHeld) client.end();
          }, (fault as { ms: number }).ms);
        }
        held.push(chunk);
        return;
      }
      later(() => this.forwardDown(link, chunk));
    });
    client.resume();
  }

  /** Response bytes toward the caller, within the connection's byte budget. */
  private forwardDown(link: Link, chunk: Buffer): void {
    const { client, server, fault } = link;
    if (client.destroyed || link.stalled) return;
    const limit = fault.kind === 'stall' || fault.kind === 'truncate' || fault.kind === 'reset' ? fault.afterBytes ?? 0 : Infinity;
    const room = limit - link.down;
    if (chunk.length < room) {
      link.down += chunk.length;
      client.write(chunk);
      return;
    }
    const part = chunk.subarray(0, Math.max(0, room));
    link.down += part.length;
    if (fault.kind === 'stall') {
      if (part.length) client.write(part);
      link.stalled = true;
      server.pause(); // the far end's further bytes wait in its buffers, as behind a stuck network
    } else if (fault.kind === 'truncate') {
      client.end(part);
      server.destroy();
    } else {
      if (part.length) client.write(part, () => client.resetAndDestroy());
      else client.resetAndDestroy();
      server.destroy();
    }
  }

  private sever(link: Link, reset: boolean): void {
    if (!this.links.delete(link) && !reset) return;
    if (reset && !link.client.destroyed) link.client.resetAndDestroy();
    else link.client.destroy();
    link.server.destroy();
  }
}
