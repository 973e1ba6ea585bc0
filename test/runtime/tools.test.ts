/**
 * Tools through the sidecar: POST /tools/{name} forwarded to the tool's endpoint (success, error,
 * timeout, unknown tool), and tools held for approval: approve runs the call once with the
 * arguments it was held with and the agent reads the result; deny and expiry never run it;
 * retried and concurrent approvals run it once; Idempotency-Key retries get the same call; the
 * approvers' token is required; and the same flow across two sidecars sharing one Redis.
 */
import type { SidecarConfigInput } from '../../lib/spec';
import { RedisServer } from '../support/redis';
import { Sidecar, sleep, testConfig, writeConfig } from '../support/sidecar';
import { json, ToolServer, type ToolCall } from '../support/tool-server';

const TOKEN = 'approver-token-7f3a9c1e5b';
const ENV = { APPROVAL_TOKEN: TOKEN };

let tools: ToolServer;
let sidecar: Sidecar;

function config(extra: Partial<SidecarConfigInput> = {}): SidecarConfigInput {
  return testConfig({
    // No LLM traffic in this file; the provider is never called.
    providers: [{ name: 'openai', type: 'openai', baseUrl: 'http://127.0.0.1:9/v1' }],
    tools: [
      { name: 'echo', endpoint: tools.url('/echo') },
      { name: 'broken', endpoint: tools.url('/broken') },
      { name: 'slow', endpoint: tools.url('/slow'), timeoutMs: 300 },
      { name: 'refund', endpoint: tools.url('/refund'), requiresApproval: true },
      { name: 'wire', endpoint: tools.url('/wire'), requiresApproval: true, approvalTtlMs: 500 },
    ],
    approvals: { token: { env: 'APPROVAL_TOKEN' } },
    ...extra,
  });
}

interface Reply {
  status: number;
  headers: Headers;
  body: any;
}

async function reply(res: Response): Promise<Reply> {
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body };
}

function callTool(base: string, name: string, args: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return fetch(`${base}/tools/${name}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof args === 'string' ? args : JSON.stringify(args),
  }).then(reply);
}

function approvals(base: string, method: string, path: string, body?: unknown, token: string | null = TOKEN): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  return fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }).then(reply);
}

function decide(base: string, id: string, decision: 'approve' | 'deny', reason?: string): Promise<Reply> {
  return approvals(base, 'POST', `/approvals/${id}`, { decision, reason });
}

function toolCalls(s: Sidecar, tool: string, outcome: string): Promise<number> {
  return s.metric('tool_calls_total', { tool, outcome });
}

/** A handler answering after `ms` with the call's arguments and how many calls it has had. */
function slowEcho(ms: number): (call: ToolCall, res: import('node:http').ServerResponse) => void {
  let n = 0;
  return (call, res) => {
    const count = ++n;
    setTimeout(() => json(res, 200, { n: count, received: JSON.parse(call.body) }), ms);
  };
}

beforeAll(async () => {
  tools = await ToolServer.start();
  sidecar = await Sidecar.start({ config: config(), env: ENV });
});

afterAll(async () => {
  await sidecar?.stop();
  await tools?.close();
});

beforeEach(() => tools.reset());

describe('forwarding', () => {
  test('a call is POSTed as JSON to the tool, and the tool\'s status and body come back', async () => {
    const before = await toolCalls(sidecar, 'echo', 'success');
    const args = { city: 'Paris', units: 'metric', nested: { list: [1, 2.5, 'ü'] } };
    const res = await callTool(sidecar.url, 'echo', args, { 'x-agent-user': 'alice', 'x-agent-run-id': 'run-1' });

    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.body).toEqual({ ok: true, path: '/echo', received: args });
    const [call] = tools.callsTo('/echo');
    expect(call.method).toBe('POST');
    expect(call.headers['content-type']).toBe('application/json');
    expect(JSON.parse(call.body)).toEqual(args);
    expect(call.headers['x-agent-user']).toBe('alice');
    expect(call.headers['x-agent-run-id']).toBe('run-1');
    expect(await toolCalls(sidecar, 'echo', 'success')).toBe(before + 1);
  });

  test('a tool\'s error status and body are passed back and counted as error', async () => {
    tools.on('/broken', (_call, res) => json(res, 500, { error: 'database is down' }));
    const before = await toolCalls(sidecar, 'broken', 'error');
    const res = await callTool(sidecar.url, 'broken', { id: 1 });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'database is down' });
    expect(await toolCalls(sidecar, 'broken', 'error')).toBe(before + 1);
  });

  test('a tool slower than its timeoutMs gets 504 tool_timeout, counted as timeout', async () => {
    tools.on('/slow', (_call, res) => {
      const timer = setTimeout(() => json(res, 200, { late: true }), 5_000);
      res.on('close', () => clearTimeout(timer));
    });
    const before = await toolCalls(sidecar, 'slow', 'timeout');
    const started = Date.now();
    const res = await callTool(sidecar.url, 'slow', {});
    const elapsed = Date.now() - started;

    expect(res.status).toBe(504);
    expect(res.body.error).toMatchObject({ type: 'tool_timeout', code: 'tool_timeout' });
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(3_000);
    expect(tools.callsTo('/slow')).toHaveLength(1);
    expect(await toolCalls(sidecar, 'slow', 'timeout')).toBe(before + 1);
  });

  test('an unknown tool gets 404 with a JSON error and nothing is called', async () => {
    const before = await sidecar.metric('tool_calls_total', { outcome: 'rejected_unknown_tool' });
    const res = await callTool(sidecar.url, 'delete_everything', { confirm: true });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.body.error).toMatchObject({ type: 'tool_not_found', code: 'tool_not_found' });
    expect(res.body.error.message).toContain('delete_everything');
    expect(tools.calls).toHaveLength(0);
    // The agent-chosen name is never a label value.
    expect(await sidecar.metric('tool_calls_total', { tool: 'none', outcome: 'rejected_unknown_tool' })).toBe(before + 1);
    expect(await sidecar.metric('tool_calls_total', { tool: 'delete_everything' })).toBe(0);
  });

  test('a tool is called with POST only, bad JSON is refused, and tools cannot be called on the admin listener', async () => {
    const get = await fetch(`${sidecar.url}/tools/echo`).then(reply);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const bad = await callTool(sidecar.url, 'echo', '{"city": "Par');
    expect(bad.status).toBe(400);
    expect(bad.body.error.type).toBe('invalid_request_error');
    const outside = await callTool(sidecar.adminUrl, 'echo', { city: 'Paris' });
    expect(outside.status).toBe(404);
    expect(tools.calls).toHaveLength(0);
  });
});

describe('approval', () => {
  test('a missing approvals token secret stops the start like a missing provider key (exit 78, by config path)', async () => {
    const { code, stderr } = await Sidecar.run(['--config', writeConfig(config()), '--check']);
    expect(code).toBe(78);
    expect(stderr).toContain('approvals.token.env: environment variable APPROVAL_TOKEN is not set');
  });

  test('a held call runs once, with the arguments it was held with, when approved; the agent reads the result', async () => {
    const before = { pending: await toolCalls(sidecar, 'refund', 'pending'), success: await toolCalls(sidecar, 'refund', 'success') };
    const args = { order: 'A-1001', amount: 42.5, note: 'ünïcødé "quoted"' };
    const held = await callTool(sidecar.url, 'refund', args, { 'x-agent-user': 'alice', 'x-agent-run-id': 'run-7' });

    expect(held.status).toBe(202);
    expect(held.body).toMatchObject({ status: 'pending', tool: 'refund' });
    const id: string = held.body.approval_id;
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(Date.parse(held.body.expires_at)).toBeGreaterThan(Date.now() + 3_000_000);
    expect(tools.callsTo('/refund')).toHaveLength(0);

    // The approver, from outside the pod, lists what is pending.
    const list = await approvals(sidecar.adminUrl, 'GET', '/approvals?status=pending');
    expect(list.status).toBe(200);
    expect(list.body.approvals.find((a: any) => a.approval_id === id)).toMatchObject({ tool: 'refund', arguments: args, user: 'alice', run: 'run-7', status: 'pending' });
    // The agent polls its call on the proxy listener, without the token.
    expect((await fetch(`${sidecar.url}/approvals/${id}`).then(reply)).body.status).toBe('pending');

    const approved = await decide(sidecar.adminUrl, id, 'approve', 'customer verified');
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ approval_id: id, status: 'done', reason: 'customer verified', result: { status: 200, outcome: 'success', body: { ok: true, received: args } } });

    const calls = tools.callsTo('/refund');
    expect(calls).toHaveLength(1);
    expect(JSON.parse(calls[0].body)).toEqual(args);
    expect(calls[0].headers['x-approval-id']).toBe(id);
    expect(calls[0].headers['x-agent-user']).toBe('alice');

    const seen = await fetch(`${sidecar.url}/approvals/${id}`).then(reply);
    expect(seen.status).toBe(200);
    expect(seen.body).toMatchObject({ status: 'done', result: { status: 200, body: { ok: true, received: args } } });
    // On the admin listener reading needs the token too.
    expect((await fetch(`${sidecar.adminUrl}/approvals/${id}`)).status).toBe(401);
    expect((await approvals(sidecar.adminUrl, 'GET', `/approvals/${id}`)).body.status).toBe('done');
    const pending = await approvals(sidecar.adminUrl, 'GET', '/approvals?status=pending');
    expect(pending.body.approvals.some((a: any) => a.approval_id === id)).toBe(false);

    expect(await toolCalls(sidecar, 'refund', 'pending')).toBe(before.pending + 1);
    expect(await toolCalls(sidecar, 'refund', 'success')).toBe(before.success + 1);
  });

  test('a denied call never runs, and cannot be approved afterwards', async () => {
    const before = await toolCalls(sidecar, 'refund', 'denied');
    const held = await callTool(sidecar.url, 'refund', { order: 'A-2', amount: 10_000 });
    const id = held.body.approval_id;

    const denied = await decide(sidecar.url, id, 'deny', 'amount above policy');
    expect(denied.status).toBe(200);
    expect(denied.body).toMatchObject({ status: 'denied', reason: 'amount above policy' });
    // Denying again is harmless; approving now is a conflict.
    expect((await decide(sidecar.url, id, 'deny')).status).toBe(200);
    const late = await decide(sidecar.adminUrl, id, 'approve');
    expect(late.status).toBe(409);
    expect(late.body.status).toBe('denied');

    await sleep(200);
    expect(tools.callsTo('/refund')).toHaveLength(0);
    expect((await fetch(`${sidecar.url}/approvals/${id}`).then(reply)).body).toMatchObject({ status: 'denied' });
    expect((await fetch(`${sidecar.url}/approvals/${id}`).then(reply)).body.result).toBeUndefined();
    expect(await toolCalls(sidecar, 'refund', 'denied')).toBe(before + 1);
  });

  test('a call not decided within approvalTtlMs expires (counted once), never runs, and approving it gets 409', async () => {
    const before = await toolCalls(sidecar, 'wire', 'expired');
    const held = await callTool(sidecar.url, 'wire', { to: 'DE89370400440532013000', amount: 99 });
    expect(held.status).toBe(202);
    const id = held.body.approval_id;
    expect(Date.parse(held.body.expires_at) - Date.now()).toBeLessThanOrEqual(500);

    // Nobody reads it: the sweep expires it on its own.
    const deadline = Date.now() + 5_000;
    while ((await toolCalls(sidecar, 'wire', 'expired')) === before && Date.now() < deadline) await sleep(50);
    expect(await toolCalls(sidecar, 'wire', 'expired')).toBe(before + 1);

    const late = await decide(sidecar.adminUrl, id, 'approve', 'sorry, was at lunch');
    expect(late.status).toBe(409);
    expect(late.body).toMatchObject({ approval_id: id, status: 'expired', error: { code: 'approval_expired' } });
    expect((await fetch(`${sidecar.url}/approvals/${id}`).then(reply)).body.status).toBe('expired');
    const list = await approvals(sidecar.adminUrl, 'GET', '/approvals?status=expired');
    expect(list.body.approvals.some((a: any) => a.approval_id === id)).toBe(true);

    await sleep(100);
    expect(tools.callsTo('/wire')).toHaveLength(0);
    expect(await toolCalls(sidecar, 'wire', 'expired')).toBe(before + 1);
  });

  test('approving twice, or many times at once on both listeners, runs the call once; every answer carries its result', async () => {
    tools.on('/refund', slowEcho(200));
    const first = (await callTool(sidecar.url, 'refund', { order: 'A-3' })).body.approval_id;
    const again = [await decide(sidecar.adminUrl, first, 'approve'), await decide(sidecar.adminUrl, first, 'approve')];
    expect(again.map((r) => r.status)).toEqual([200, 200]);
    expect(again[1].body.result).toEqual(again[0].body.result);
    expect(tools.callsTo('/refund')).toHaveLength(1);

    const second = (await callTool(sidecar.url, 'refund', { order: 'A-4' })).body.approval_id;
    const racing = await Promise.all(Array.from({ length: 12 }, (_, i) => decide(i % 2 ? sidecar.url : sidecar.adminUrl, second, 'approve')));
    expect(racing.map((r) => r.status)).toEqual(Array(12).fill(200));
    for (const r of racing) expect(r.body).toMatchObject({ status: 'done', result: { status: 200, body: { n: 2, received: { order: 'A-4' } } } });
    expect(tools.callsTo('/refund')).toHaveLength(2);
    expect(JSON.parse(tools.callsTo('/refund')[1].body)).toEqual({ order: 'A-4' });
  });

  test('a retry with the same Idempotency-Key gets the same approval; other arguments under that key are refused', async () => {
    const headers = { 'idempotency-key': 'refund-A-5', 'x-agent-user': 'bob' };
    const a = await callTool(sidecar.url, 'refund', { order: 'A-5' }, headers);
    const b = await callTool(sidecar.url, 'refund', { order: 'A-5' }, headers);
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.body.approval_id).toBe(a.body.approval_id);
    const other = await callTool(sidecar.url, 'refund', { order: 'A-5', amount: 1e6 }, headers);
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe('idempotency_key_reused');
    const fresh = await callTool(sidecar.url, 'refund', { order: 'A-5' }, { ...headers, 'idempotency-key': 'refund-A-5b' });
    expect(fresh.body.approval_id).not.toBe(a.body.approval_id);

    const pending = await approvals(sidecar.adminUrl, 'GET', '/approvals?status=pending');
    expect(pending.body.approvals.filter((x: any) => x.approval_id === a.body.approval_id)).toHaveLength(1);
    await decide(sidecar.adminUrl, a.body.approval_id, 'approve');
    // After the decision, the retry still answers with that same call, now with its result.
    const later = await callTool(sidecar.url, 'refund', { order: 'A-5' }, headers);
    expect(later.body).toMatchObject({ approval_id: a.body.approval_id, status: 'done', result: { status: 200 } });
    expect(tools.callsTo('/refund')).toHaveLength(1);
  });

  test('a tool without approval called again with the same Idempotency-Key runs once and replays its result', async () => {
    tools.on('/echo', slowEcho(150));
    const headers = { 'idempotency-key': 'lookup-1' };
    const first = await callTool(sidecar.url, 'echo', { q: 1 }, headers);
    const second = await callTool(sidecar.url, 'echo', { q: 1 }, headers);
    expect(first.status).toBe(200);
    expect(second.body).toEqual(first.body);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(tools.callsTo('/echo')).toHaveLength(1);

    const racing = await Promise.all(Array.from({ length: 6 }, () => callTool(sidecar.url, 'echo', { q: 2 }, { 'idempotency-key': 'lookup-2' })));
    expect(new Set(racing.map((r) => JSON.stringify([r.status, r.body]))).size).toBe(1);
    expect(racing[0].body).toEqual({ n: 2, received: { q: 2 } });
    expect(tools.callsTo('/echo')).toHaveLength(2);
  });

  test('approvers need the token: missing, wrong, or another scheme gets 401; wrong methods get 405', async () => {
    const id = (await callTool(sidecar.url, 'refund', { order: 'A-6' })).body.approval_id;
    const path = `/approvals/${id}`;
    const body = { decision: 'approve' };
    for (const base of [sidecar.url, sidecar.adminUrl]) {
      const none = await approvals(base, 'POST', path, body, null);
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect((await approvals(base, 'POST', path, body, TOKEN.replace(/.$/, 'x'))).status).toBe(401);
      expect((await approvals(base, 'POST', path, body, `${TOKEN}-longer`)).status).toBe(401);
      expect((await approvals(base, 'POST', path, body, TOKEN.slice(0, 5))).status).toBe(401);
      const basic = await fetch(`${base}${path}`, { method: 'POST', headers: { authorization: `Basic ${TOKEN}` }, body: JSON.stringify(body) });
      expect(basic.status).toBe(401);
      expect((await approvals(base, 'GET', '/approvals?status=pending', undefined, null)).status).toBe(401);
    }
    expect(tools.callsTo('/refund')).toHaveLength(0);
    expect((await fetch(`${sidecar.url}${path}`).then(reply)).body.status).toBe('pending');

    const put = await approvals(sidecar.adminUrl, 'PUT', path, body);
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET, POST');
    expect((await approvals(sidecar.adminUrl, 'POST', '/approvals', body)).status).toBe(405);
    expect((await approvals(sidecar.adminUrl, 'DELETE', path)).status).toBe(405);
    expect((await approvals(sidecar.adminUrl, 'GET', `/approvals/${'0'.repeat(32)}`)).status).toBe(404);
    expect((await approvals(sidecar.adminUrl, 'POST', path, { decision: 'maybe' })).status).toBe(400);

    const ok = await fetch(`${sidecar.adminUrl}${path}`, { method: 'POST', headers: { authorization: `bearer ${TOKEN}` }, body: JSON.stringify(body) });
    expect(ok.status).toBe(200);
    expect(tools.callsTo('/refund')).toHaveLength(1);
  });
});

describe('approvals in Redis, shared by two sidecars', () => {
  let redis: RedisServer;
  let a: Sidecar;
  let b: Sidecar;

  beforeAll(async () => {
    redis = await RedisServer.start();
    const shared = config({ store: { type: 'redis', url: redis.url, keyPrefix: 'tooltest:' } });
    [a, b] = await Promise.all([Sidecar.start({ config: shared, env: ENV }), Sidecar.start({ config: shared, env: ENV })]);
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  test('held on one, listed and approved concurrently on both: runs once; both read the result', async () => {
    tools.on('/refund', slowEcho(200));
    const args = { order: 'R-1', amount: 12 };
    const held = await callTool(a.url, 'refund', args, { 'x-agent-user': 'carol', 'idempotency-key': 'r-1' });
    expect(held.status).toBe(202);
    const id = held.body.approval_id;
    expect(redis.cli('EXISTS', `tooltest:ap:test-agent:${id}`)).toBe('1');

    // The other replica sees it, and a retry there finds the same call.
    const listed = await approvals(b.adminUrl, 'GET', '/approvals?status=pending');
    expect(listed.body.approvals.map((x: any) => x.approval_id)).toContain(id);
    const retried = await callTool(b.url, 'refund', args, { 'x-agent-user': 'carol', 'idempotency-key': 'r-1' });
    expect(retried.body.approval_id).toBe(id);

    const racing = await Promise.all(Array.from({ length: 8 }, (_, i) => decide(i % 2 ? a.adminUrl : b.adminUrl, id, 'approve', 'ok')));
    expect(racing.map((r) => r.status)).toEqual(Array(8).fill(200));
    for (const r of racing) expect(r.body).toMatchObject({ status: 'done', result: { status: 200, body: { n: 1, received: args } } });
    expect(tools.callsTo('/refund')).toHaveLength(1);
    expect(JSON.parse(tools.callsTo('/refund')[0].body)).toEqual(args);

    const [onA, onB] = await Promise.all([fetch(`${a.url}/approvals/${id}`).then(reply), fetch(`${b.url}/approvals/${id}`).then(reply)]);
    expect(onA.body).toMatchObject({ status: 'done', user: 'carol', result: { body: { n: 1 } } });
    expect(onB.body).toEqual(onA.body);
    const approved = (await a.metric('tool_calls_total', { tool: 'refund', outcome: 'approved' })) + (await b.metric('tool_calls_total', { tool: 'refund', outcome: 'approved' }));
    const succeeded = (await a.metric('tool_calls_total', { tool: 'refund', outcome: 'success' })) + (await b.metric('tool_calls_total', { tool: 'refund', outcome: 'success' }));
    expect([approved, succeeded]).toEqual([1, 1]);
  });

  test('a call left approved but not started (its sidecar died) runs once when approvals race on both', async () => {
    tools.on('/refund', slowEcho(100));
    const id = (await callTool(a.url, 'refund', { order: 'R-3' })).body.approval_id;
    // What a sidecar leaves behind when it dies between recording the approval and claiming the run.
    redis.cli('HSET', `tooltest:ap:test-agent:${id}`, 'status', 'approved', 'decidedAt', String(Date.now()));
    redis.cli('ZREM', 'tooltest:ap-pending:test-agent', id);

    const racing = await Promise.all(Array.from({ length: 10 }, (_, i) => decide(i % 2 ? a.adminUrl : b.adminUrl, id, 'approve')));
    expect(racing.map((r) => r.status)).toEqual(Array(10).fill(200));
    for (const r of racing) expect(r.body).toMatchObject({ status: 'done', result: { body: { n: 1, received: { order: 'R-3' } } } });
    expect(tools.callsTo('/refund')).toHaveLength(1);
  });

  test('denied on one, the other refuses to approve it; expired calls never run on either', async () => {
    const id = (await callTool(b.url, 'refund', { order: 'R-2' })).body.approval_id;
    expect((await decide(a.adminUrl, id, 'deny', 'no')).body.status).toBe('denied');
    expect((await decide(b.adminUrl, id, 'approve')).status).toBe(409);

    const wire = (await callTool(a.url, 'wire', { amount: 5 })).body.approval_id;
    await sleep(700);
    const late = await Promise.all([decide(a.adminUrl, wire, 'approve'), decide(b.adminUrl, wire, 'approve')]);
    expect(late.map((r) => [r.status, r.body.status])).toEqual([
      [409, 'expired'],
      [409, 'expired'],
    ]);
    await sleep(100);
    expect(tools.calls).toHaveLength(0);
    const expired = (await a.metric('tool_calls_total', { tool: 'wire', outcome: 'expired' })) + (await b.metric('tool_calls_total', { tool: 'wire', outcome: 'expired' }));
    expect(expired).toBe(1);
  });

  // Last in this block: it stops Redis.
  test('while Redis is down, calls needing approval are refused with 503 and nothing runs', async () => {
    const id = (await callTool(a.url, 'refund', { order: 'R-4' })).body.approval_id;
    await redis.stop();
    const held = await callTool(a.url, 'refund', { order: 'R-5' });
    expect(held.status).toBe(503);
    expect(held.body.error.code).toBe('approval_store_unavailable');
    const approve = await decide(b.adminUrl, id, 'approve');
    expect(approve.status).toBe(503);
    expect((await fetch(`${a.url}/approvals/${id}`)).status).toBe(503);
    expect(tools.calls).toHaveLength(0);
  });
});
