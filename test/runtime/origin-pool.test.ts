/**
 * The upstream connection pool against real node:http servers on loopback: connections are
 * kept alive and reused, bounded by maxSockets, survive a server closing idle connections,
 * and failures surface as UpstreamErrors of the right kind without endless retries.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { OriginPool, UpstreamError, type PoolOptions, type UpstreamCall, type UpstreamRequest } from '../../lib/runtime/http/origin-pool';
import type { ResponseHeaders } from '../../lib/runtime/http/response-parser';

// ---- harness ------------------------------------------------------------------------------------

interface TestServer {
  server: http.Server;
  port: number;
  /** TCP connections accepted so far. */
  connections: number;
  /** Connections currently open. */
  open: Set<net.Socket>;
  /** Requests received (method, url, headers, body), in arrival order. */
  requests: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; body: string; socket: net.Socket }>;
  close(): Promise<void>;
}

const servers: TestServer[] = [];
const pools: OriginPool[] = [];

async function startServer(handler: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void): Promise<TestServer> {
  const t = { connections: 0, open: new Set<net.Socket>(), requests: [] } as unknown as TestServer;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      t.requests.push({ method: req.method!, url: req.url!, headers: req.headers, body, socket: req.socket });
      handler(req, res, body);
    });
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket) => {
    t.connections++;
    t.open.add(socket);
    socket.on('close', () => t.open.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.server = server;
  t.port = (server.address() as AddressInfo).port;
  t.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  servers.push(t);
  return t;
}

function newPool(port: number, options: Partial<PoolOptions> = {}): OriginPool {
  const pool = new OriginPool(new URL(`http://127.0.0.1:${port}/v1`), { connectTimeoutMs: 5_000, idleTimeoutMs: 30_000, maxSockets: 10, ...options });
  pools.push(pool);
  return pool;
}

interface Response {
  status: number;
  headers: ResponseHeaders;
  body: string;
  chunks: string[];
  keepAlive: boolean;
}

interface Sent {
  call: UpstreamCall;
  done: Promise<Response>;
}

function send(pool: OriginPool, req: Partial<UpstreamRequest> = {}, onChunk?: (chunk: string) => void): Sent {
  let call!: UpstreamCall;
  const done = new Promise<Response>((resolve, reject) => {
    const out: Response = { status: 0, headers: {}, body: '', chunks: [], keepAlive: false };
    let ended = false;
    call = pool.request(
      { method: 'POST', path: '/v1/chat/completions', headerLines: 'content-type: application/json\r\n', body: Buffer.from('{"model":"m"}'), ...req },
      {
        onHead: (status, headers) => {
          out.status = status;
          out.headers = headers;
        },
        onBody: (chunk) => {
          if (ended) reject(new Error('body after end'));
          const text = chunk.toString();
          out.chunks.push(text);
          out.body += text;
          onChunk?.(text);
        },
        onEnd: (keepAlive) => {
          if (ended) reject(new Error('onEnd twice'));
          ended = true;
          out.keepAlive = keepAlive;
          resolve(out);
        },
        onError: (error) => {
          if (ended) reject(new Error(`onError after onEnd: ${error.message}`));
          ended = true;
          reject(error);
        },
      },
    );
  });
  return { call, done };
}

const request = (pool: OriginPool, req: Partial<UpstreamRequest> = {}) => send(pool, req).done;

async function upstreamError(promise: Promise<unknown>): Promise<UpstreamError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(UpstreamError);
    return err as UpstreamError;
  }
  throw new Error('expected an UpstreamError, the request succeeded');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

afterEach(async () => {
  for (const pool of pools.splice(0)) pool.close();
  for (const server of servers.splice(0)) await server.close();
});

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
};

// ---- keep-alive ---------------------------------------------------------------------------------

test('sequential requests reuse one kept-alive connection', async () => {
  const server = await startServer((req, res, body) => json(res, 200, { n: server.requests.length, echo: body, method: req.method }));
  const pool = newPool(server.port);
  for (let i = 1; i <= 25; i++) {
    const body = i % 3 === 0 ? null : Buffer.from(JSON.stringify({ i, pad: 'x'.repeat(i * 100) }));
    const method = i % 5 === 0 ? 'GET' : 'POST';
    const res = await request(pool, { method, body });
    expect(res.status).toBe(200);
    expect(res.keepAlive).toBe(true);
    expect(JSON.parse(res.body)).toEqual({ n: i, echo: body ? body.toString() : '', method });
  }
  expect(server.connections).toBe(1);
  expect(pool.size).toBe(1);
  expect(pool.idleCount).toBe(1);
  // The request was framed as the pool promises: host of the origin, a length for every POST.
  const first = server.requests[0];
  expect(first.headers.host).toBe(`127.0.0.1:${server.port}`);
  expect(first.headers['content-length']).toBe(String(Buffer.byteLength(first.body)));
  expect(first.headers['content-type']).toBe('application/json');
  expect(server.requests[2].headers['content-length']).toBe('0'); // POST without body
  expect(server.requests[4].method).toBe('GET');
  expect(server.requests.every((r) => r.url === '/v1/chat/completions')).toBe(true);
});

test('a large body (over one write) arrives intact on a reused connection', async () => {
  const server = await startServer((_req, res, body) => json(res, 200, { length: body.length, tail: body.slice(-10) }));
  const pool = newPool(server.port);
  await request(pool);
  const big = Buffer.from('y'.repeat(300_000) + '0123456789');
  const res = await request(pool, { body: big });
  expect(JSON.parse(res.body)).toEqual({ length: big.length, tail: '0123456789' });
  expect(server.connections).toBe(1);
});

test('a response with connection: close is not reused', async () => {
  const server = await startServer((_req, res) => {
    res.setHeader('connection', 'close');
    json(res, 200, { ok: true });
  });
  const pool = newPool(server.port);
  for (let i = 0; i < 3; i++) {
    const res = await request(pool);
    expect(res.keepAlive).toBe(false);
  }
  expect(server.connections).toBe(3);
  await until(() => pool.size === 0, 5_000, 'closed sockets to be counted out');
  expect(pool.idleCount).toBe(0);
});

// ---- maxSockets ---------------------------------------------------------------------------------

test('concurrent requests open at most maxSockets connections and queue the rest', async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  const server = await startServer((_req, res, body) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    setTimeout(() => {
      inFlight--;
      json(res, 200, { echo: body });
    }, 60);
  });
  const pool = newPool(server.port, { maxSockets: 3 });
  const results = await Promise.all(Array.from({ length: 12 }, (_, i) => request(pool, { body: Buffer.from(String(i)) })));
  expect(results.map((r) => JSON.parse(r.body).echo)).toEqual(Array.from({ length: 12 }, (_, i) => String(i)));
  expect(server.connections).toBe(3);
  expect(maxInFlight).toBe(3);
  expect(pool.size).toBe(3);
  expect(pool.idleCount).toBe(3);
});

test('a queued request gets a connection freed by a failed one', async () => {
  const server = await startServer((req, res) => {
    if (req.url === '/fail') req.socket.destroy();
    else setTimeout(() => json(res, 200, { ok: true }), 20);
  });
  const pool = newPool(server.port, { maxSockets: 1 });
  const failing = request(pool, { path: '/fail' });
  const queued = request(pool, { path: '/ok' });
  expect((await upstreamError(failing)).kind).toBe('connection');
  expect((await queued).status).toBe(200);
  expect(server.connections).toBe(2);
});

// ---- idle connections closed by the server ------------------------------------------------------

test('a server closing idle connections (keepAliveTimeout 50 ms) does not fail the next request', async () => {
  const server = await startServer((_req, res) => json(res, 200, { ok: true }));
  server.server.keepAliveTimeout = 50;
  const pool = newPool(server.port);
  expect((await request(pool)).status).toBe(200);
  // Wait until the server has closed the idle connection (Node does so about a second late).
  await until(() => server.open.size === 0, 10_000, 'the server to close the idle connection');
  await until(() => pool.idleCount === 0, 5_000, 'the pool to drop the closed connection');
  expect(pool.size).toBe(0);
  expect((await request(pool)).status).toBe(200);
  expect(server.connections).toBe(2);
});

/**
 * Requests tagged `x-call: N` as the server saw them, with whether each arrived as the first
 * request of its connection.
 */
function arrivals(server: TestServer): Map<string, boolean[]> {
  const firstOnSocket = new Set<net.Socket>();
  const out = new Map<string, boolean[]>();
  for (const r of server.requests) {
    const fresh = !firstOnSocket.has(r.socket);
    firstOnSocket.add(r.socket);
    const call = String(r.headers['x-call']);
    out.set(call, [...(out.get(call) ?? []), fresh]);
  }
  return out;
}

test('requests racing the server closing kept-alive connections: success, or a clean connection error, never a storm of resends', async () => {
  // Node's server closes an idle connection about a second after keepAliveTimeout (50 ms here),
  // too slow to race by waiting; this server closes each connection 0-4 ms after answering,
  // while advertising keep-alive, so requests meet connections at every stage of closing.
  let n = 0;
  const server = await startServer((req, res) => {
    const i = n++;
    json(res, 200, { ok: true });
    res.on('finish', () => setTimeout(() => (i % 2 ? req.socket.end() : req.socket.destroy()), i % 5));
  });
  const pool = newPool(server.port);
  const waits = [0, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 0, 0, 1, 3, 2, 4, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2];
  let succeeded = 0;
  for (const [i, wait] of waits.entries()) {
    if (wait) await sleep(wait);
    try {
      const res = await request(pool, { headerLines: `x-call: ${i}\r\n` });
      expect(res.status).toBe(200);
      succeeded++;
    } catch (err) {
      // A request that met a closing connection fails before any response byte, so the caller
      // (the exchange) can safely try again.
      expect(err).toBeInstanceOf(UpstreamError);
      expect((err as UpstreamError).kind).toBe('connection');
      expect((err as UpstreamError).responseStarted).toBe(false);
    }
  }
  expect(succeeded).toBeGreaterThan(0);
  // Each request reached the server at most twice, and a second time only on a fresh connection.
  for (const fresh of arrivals(server).values()) {
    expect(fresh.length).toBeLessThanOrEqual(2);
    if (fresh.length === 2) expect(fresh[1]).toBe(true);
  }
  // Once the closes have settled, the pool is not wedged.
  await until(() => server.open.size === 0 && pool.idleCount === 0, 5_000, 'connections to close');
  expect((await request(pool)).status).toBe(200);
});

// ---- failures -----------------------------------------------------------------------------------

test('a server that destroys a fresh connection after reading the request: kind connection, no retry', async () => {
  const server = await startServer((req) => req.socket.destroy());
  const pool = newPool(server.port);
  const error = await upstreamError(request(pool));
  expect(error.kind).toBe('connection');
  expect(error.responseStarted).toBe(false);
  await sleep(100);
  expect(server.requests).toHaveLength(1);
  expect(server.connections).toBe(1);
  await until(() => pool.size === 0, 5_000, 'the pool to forget the socket');
});

test('on a reused connection dropped after the request was read: kind connection after at most one fresh retry', async () => {
  let n = 0;
  const server = await startServer((req, res) => {
    if (++n === 1) json(res, 200, { ok: true });
    else req.socket.destroy();
  });
  const pool = newPool(server.port);
  await request(pool, { headerLines: 'x-call: first\r\n' });
  const error = await upstreamError(request(pool, { headerLines: 'x-call: second\r\n' }));
  expect(error.kind).toBe('connection');
  expect(error.responseStarted).toBe(false);
  await sleep(150); // nothing more arrives: not retried forever
  const second = arrivals(server).get('second')!;
  // Sent on the reused connection, then at most once more, on a fresh connection.
  expect(second[0]).toBe(false);
  expect(second.length).toBeLessThanOrEqual(2);
  if (second.length === 2) expect(second[1]).toBe(true);
  expect(server.connections).toBe(second.length);
  await until(() => pool.size === 0, 5_000, 'the pool to forget the sockets');
});

test('a connection dropped after the response started is not retried, even when reused', async () => {
  let n = 0;
  const server = await startServer((req, res) => {
    if (++n === 1) return json(res, 200, { ok: true });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: {"partial":true}\n\n', () => setTimeout(() => req.socket.destroy(), 20));
  });
  const pool = newPool(server.port);
  await request(pool);
  const chunks: string[] = [];
  const sent = send(pool, {}, (c) => chunks.push(c));
  const error = await upstreamError(sent.done);
  expect(error.kind).toBe('connection');
  expect(error.responseStarted).toBe(true);
  expect(chunks.join('')).toBe('data: {"partial":true}\n\n');
  await sleep(100);
  expect(server.requests).toHaveLength(2);
});

test('a content-length body cut short by the server is an error, not a short success', async () => {
  const server = await startServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 100 });
    res.write('{"half":', () => setTimeout(() => req.socket.destroy(), 20));
  });
  const pool = newPool(server.port);
  const error = await upstreamError(request(pool));
  expect(error.kind).toBe('connection');
  expect(error.responseStarted).toBe(true);
});

test('garbage from the server is a protocol error', async () => {
  const raw = net.createServer((socket) => {
    socket.once('data', () => socket.write('SSH-2.0-OpenSSH_9.6\r\n\r\n'));
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  try {
    const pool = newPool((raw.address() as AddressInfo).port);
    const error = await upstreamError(request(pool));
    expect(error.kind).toBe('protocol');
    expect(error.responseStarted).toBe(true);
  } finally {
    await new Promise<void>((resolve) => raw.close(() => resolve()));
  }
});

test('connection refused is kind connect', async () => {
  const closed = await startServer(() => {});
  const port = closed.port;
  await closed.close();
  servers.splice(servers.indexOf(closed), 1);
  const pool = newPool(port);
  const error = await upstreamError(request(pool));
  expect(error.kind).toBe('connect');
  expect(error.responseStarted).toBe(false);
  expect(pool.size).toBe(0);
  // And again: the pool is not wedged by the failure.
  expect((await upstreamError(request(pool))).kind).toBe('connect');
});

test('a closed pool refuses new requests', async () => {
  const server = await startServer((_req, res) => json(res, 200, {}));
  const pool = newPool(server.port);
  await request(pool);
  pool.close();
  expect(pool.idleCount).toBe(0);
  expect((await upstreamError(request(pool))).kind).toBe('connect');
});

// ---- abort --------------------------------------------------------------------------------------

test('abort() before the answer closes the connection and reports nothing', async () => {
  const server = await startServer(() => {}); // never answers
  const pool = newPool(server.port);
  let reported = false;
  const call = pool.request(
    { method: 'POST', path: '/v1/x', headerLines: '', body: Buffer.from('{}') },
    { onHead: () => (reported = true), onBody: () => (reported = true), onEnd: () => (reported = true), onError: () => (reported = true) },
  );
  await until(() => server.requests.length === 1, 5_000, 'the request to arrive');
  const serverSocket = server.requests[0].socket;
  const closed = new Promise<void>((resolve) => (serverSocket.destroyed ? resolve() : serverSocket.once('close', () => resolve())));
  call.abort();
  await closed;
  await until(() => pool.size === 0, 5_000, 'the pool to count the socket out');
  expect(pool.idleCount).toBe(0);
  expect(reported).toBe(false);
});

test('abort() mid-stream closes the connection; no more body, no end', async () => {
  let tick: NodeJS.Timeout | undefined;
  const server = await startServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    tick = setInterval(() => res.write(`data: ${i++}\n\n`), 10);
    res.on('close', () => clearInterval(tick));
  });
  const pool = newPool(server.port);
  const chunks: string[] = [];
  let ended = false;
  const call = pool.request(
    { method: 'POST', path: '/v1/x', headerLines: '', body: Buffer.from('{}') },
    { onHead: () => {}, onBody: (c) => chunks.push(c.toString()), onEnd: () => (ended = true), onError: () => (ended = true) },
  );
  await until(() => chunks.length >= 2, 5_000, 'two chunks');
  const serverSocket = server.requests[0].socket;
  const closed = new Promise<void>((resolve) => serverSocket.once('close', () => resolve()));
  call.abort();
  const seen = chunks.length;
  await closed;
  await sleep(50);
  clearInterval(tick);
  expect(chunks.length).toBe(seen);
  expect(ended).toBe(false);
  await until(() => pool.size === 0, 5_000, 'the pool to count the socket out');
});

// ---- streaming ----------------------------------------------------------------------------------

test('chunked body chunks are delivered as they arrive, not when the response ends', async () => {
  let release!: () => void;
  const secondMayGo = new Promise<void>((resolve) => (release = resolve));
  const server = await startServer(async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' }); // no length: chunked
    res.write('data: first\n\n');
    await secondMayGo; // the server waits until the client has seen the first chunk
    res.write('data: second\n\n');
    await sleep(10);
    res.end('data: [DONE]\n\n');
  });
  const pool = newPool(server.port);
  const seen: string[] = [];
  const sent = send(pool, {}, (chunk) => {
    seen.push(chunk);
    if (chunk.includes('first')) release();
  });
  const res = await sent.done;
  expect(res.headers['transfer-encoding']).toBe('chunked');
  expect(res.body).toBe('data: first\n\ndata: second\n\ndata: [DONE]\n\n');
  expect(seen.length).toBeGreaterThanOrEqual(2);
  expect(seen[0]).toBe('data: first\n\n');
  expect(res.keepAlive).toBe(true);
  // The connection is reusable after a chunked response.
  await request(pool);
  expect(server.connections).toBe(1);
});

test('a body delimited by the server closing is complete and the connection not reused', async () => {
  const raw = net.createServer((socket) => {
    socket.once('data', () => socket.end('HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end'));
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  try {
    const pool = newPool((raw.address() as AddressInfo).port);
    const res = await request(pool);
    expect(res.body).toBe('until the end');
    expect(res.keepAlive).toBe(false);
    await until(() => pool.size === 0, 5_000, 'the socket to be counted out');
  } finally {
    await new Promise<void>((resolve) => raw.close(() => resolve()));
  }
});

test('HEAD responses end at the head and the connection is reused', async () => {
  const server = await startServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1234 });
    res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(1234));
  });
  const pool = newPool(server.port);
  const head = await request(pool, { method: 'HEAD', body: null });
  expect(head.body).toBe('');
  expect(head.keepAlive).toBe(true);
  const get = await request(pool, { method: 'GET', body: null });
  expect(get.body).toHaveLength(1234);
  expect(server.connections).toBe(1);
});

// HTTPS (TLS session reuse, SNI) is not covered here: it needs a certificate the test cannot make offline.
