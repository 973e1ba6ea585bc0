/**
 * The audit log: hash-chained JSON lines (start record, prev links, seq), tampering found at the
 * line where it happened, content hashed unless captureContent, one write per event-loop turn;
 * and on a real sidecar process: stdout carries audit records and nothing else, the chain (and
 * audit.file, one chain per process start) verifies with `sidecar.js verify-audit`, an edited
 * line is reported by number, and a burst of tool calls cut by SIGTERM loses no record.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { AUDIT_GENESIS, AuditLog } from '../../lib/runtime/audit/audit-log';
import { verifyAuditChain } from '../../lib/runtime/audit/verify';
import type { SidecarConfigInput } from '../../lib/spec';
import { FakeLlm } from '../support/fake-llm';
import { Sidecar, sleep, testConfig } from '../support/sidecar';
import { json, ToolServer } from '../support/tool-server';

const TOKEN = 'audit-approver-token';
const ENV = { APPROVAL_TOKEN: TOKEN };

function sha256(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

/** An AuditLog writing into memory, with every write() call kept. */
function memoryLog(captureContent = false): { audit: AuditLog; writes: string[]; text: () => string } {
  const writes: string[] = [];
  const out = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      writes.push(chunk.toString('utf8'));
      callback();
    },
  });
  const audit = new AuditLog({ agent: 'unit-agent', mode: 'sidecar', captureContent, out });
  return { audit, writes, text: () => writes.join('') };
}

async function chainOf(count: number): Promise<string[]> {
  const { audit, text } = memoryLog();
  audit.record({ kind: 'start', version: 'test' });
  for (let i = 1; i < count; i++) audit.record({ kind: 'llm.request', 'gen_ai.usage.input_tokens': 100 + i, 'gen_ai.usage.output_tokens': 7 });
  await audit.flush();
  return text().trimEnd().split('\n');
}

const join = (lines: string[]) => `${lines.join('\n')}\n`;

describe('record format', () => {
  test('each record is one JSON line with time, seq, agent, prev and hash; the hash covers the line; prev links them', async () => {
    const { audit, text } = memoryLog();
    audit.record({ kind: 'llm.request', 'gen_ai.request.model': 'gpt-4o-mini', 'gen_ai.usage.input_tokens': 12, time: 'forged', seq: 99, prev: 'forged', hash: 'forged' });
    audit.record({ kind: 'tool.call', 'gen_ai.tool.name': 'refund', 'gen_ai.security.decision.type': 'allow' });
    await audit.flush();
    const lines = text().split('\n');
    expect(lines.pop()).toBe('');
    const records = lines.map((l) => JSON.parse(l));

    // A chain begins with a start record even when the first thing recorded is something else.
    expect(records.map((r) => [r.kind, r.seq])).toEqual([
      ['start', 0],
      ['llm.request', 1],
      ['tool.call', 2],
    ]);
    expect(records[0].prev).toBe(AUDIT_GENESIS);
    records.forEach((r, i) => {
      expect(r['gen_ai.agent.name']).toBe('unit-agent');
      expect(Date.parse(r.time)).toBeGreaterThan(Date.now() - 60_000);
      expect(r.hash).toBe(sha256(lines[i].replace(/,"hash":"[^"]+"\}$/, '}')));
      if (i) expect(r.prev).toBe(records[i - 1].hash);
    });
    // The log's own members cannot be overridden by a caller.
    expect(records[1]).toMatchObject({ seq: 1, 'gen_ai.request.model': 'gpt-4o-mini', 'gen_ai.usage.input_tokens': 12 });
    expect(records[1].time).not.toBe('forged');
    expect(lines[1].match(/"hash":/g)).toHaveLength(1);
    expect(verifyAuditChain(text())).toEqual({ ok: true, records: 3, chains: 1 });
  });

  test('content is recorded as its sha256 unless captureContent is on', () => {
    const secret = 'my card is 4111 1111 1111 1111';
    expect(memoryLog(false).audit.content(secret)).toBe(sha256(secret));
    expect(memoryLog(true).audit.content(secret)).toBe(secret);
  });

  test('records of one event-loop turn are written in one write; flush writes the rest at once', async () => {
    const { audit, writes, text } = memoryLog();
    for (let i = 0; i < 500; i++) audit.record({ kind: 'tool.call', i });
    expect(writes).toHaveLength(0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toHaveLength(1);
    expect(writes[0].split('\n')).toHaveLength(502);

    for (let i = 0; i < 100; i++) audit.record({ kind: 'tool.call', i });
    await audit.flush();
    expect(writes).toHaveLength(2);
    // After the final flush nothing waits for a turn that may never come.
    audit.record({ kind: 'stop' });
    expect(writes).toHaveLength(3);
    expect(verifyAuditChain(text())).toEqual({ ok: true, records: 602, chains: 1 });
  });
});

describe('verifyAuditChain', () => {
  test('an intact chain, and several chains in one file, verify', async () => {
    const first = await chainOf(5);
    const second = await chainOf(3);
    expect(verifyAuditChain(join(first))).toEqual({ ok: true, records: 5, chains: 1 });
    expect(verifyAuditChain(join([...first, ...second]))).toEqual({ ok: true, records: 8, chains: 2 });
    expect(verifyAuditChain('')).toEqual({ ok: true, records: 0, chains: 0 });
  });

  test('an edited value is reported at its line', async () => {
    const lines = await chainOf(6);
    lines[3] = lines[3].replace('"gen_ai.usage.input_tokens":103', '"gen_ai.usage.input_tokens":3');
    expect(verifyAuditChain(join(lines))).toMatchObject({ ok: false, records: 3, brokenAt: { line: 4, reason: expect.stringContaining('hash mismatch') } });
  });

  test('an edit whose hash was recomputed is reported at the next line', async () => {
    const lines = await chainOf(6);
    const edited = lines[2].replace('"gen_ai.usage.output_tokens":7', '"gen_ai.usage.output_tokens":0').replace(/,"hash":"[^"]+"\}$/, '}');
    lines[2] = `${edited.slice(0, -1)},"hash":"${sha256(edited)}"}`;
    expect(verifyAuditChain(join(lines)).brokenAt).toEqual({ line: 4, reason: expect.stringContaining('prev is not the hash of line 3') });
  });

  test('removed, swapped, cut and foreign lines are reported where they break the chain', async () => {
    const lines = await chainOf(6);
    expect(verifyAuditChain(join([...lines.slice(0, 2), ...lines.slice(3)])).brokenAt?.line).toBe(3);
    expect(verifyAuditChain(join([lines[0], lines[1], lines[3], lines[2], lines[4]])).brokenAt?.line).toBe(3);
    expect(verifyAuditChain(join([...lines.slice(0, 5), lines[5].slice(0, 40)])).brokenAt).toEqual({ line: 6, reason: expect.stringContaining('not valid JSON') });
    expect(verifyAuditChain(join([...lines.slice(0, 2), '{"msg":"listening"}', ...lines.slice(2)])).brokenAt).toEqual({ line: 3, reason: expect.stringContaining('hash') });
    expect(verifyAuditChain(join([...lines.slice(0, 2), '', ...lines.slice(2)])).brokenAt?.line).toBe(3);
    // A file must begin with the beginning of a chain.
    expect(verifyAuditChain(join(lines.slice(1))).brokenAt).toEqual({ line: 1, reason: expect.stringContaining('start record') });
  });

  test('a start record is accepted only where it genuinely begins a chain', async () => {
    const lines = await chainOf(6);
    const other = await chainOf(2);
    // A genuine new chain inserted in the middle cuts the old one: the next old record does not follow it.
    expect(verifyAuditChain(join([...lines.slice(0, 3), other[0], ...lines.slice(3)])).brokenAt).toEqual({ line: 5, reason: expect.stringContaining('prev') });
    // A record claiming to be a start without beginning a chain.
    const fake = JSON.parse(lines[2]);
    const forged = lines[2].replace(/"kind":"llm.request"/, '"kind":"start"').replace(/,"hash":"[^"]+"\}$/, '}');
    expect(fake.prev).not.toBe(AUDIT_GENESIS);
    const forgedLine = `${forged.slice(0, -1)},"hash":"${sha256(forged)}"}`;
    expect(verifyAuditChain(join([...lines.slice(0, 2), forgedLine, ...lines.slice(3)])).brokenAt).toEqual({ line: 3, reason: expect.stringContaining('start record must begin a chain') });
    // A non-start record pointing at the genesis value.
    const orphan = lines[1].replace(/"prev":"[^"]+"/, `"prev":"${AUDIT_GENESIS}"`).replace(/,"hash":"[^"]+"\}$/, '}');
    const orphanLine = `${orphan.slice(0, -1)},"hash":"${sha256(orphan)}"}`;
    expect(verifyAuditChain(join([lines[0], orphanLine, ...lines.slice(2)])).brokenAt).toEqual({ line: 2, reason: expect.stringContaining('only a start record') });
  });
});

describe('a real sidecar', () => {
  let fake: FakeLlm;
  let tools: ToolServer;
  let dir: string;

  beforeAll(async () => {
    fake = await FakeLlm.start();
    tools = await ToolServer.start();
    dir = mkdtempSync(path.join(tmpdir(), 'cdk-agents-audit-'));
  });

  afterAll(async () => {
    await fake?.close();
    await tools?.close();
  });

  beforeEach(() => {
    tools.reset();
    fake.reset();
  });

  function config(extra: Partial<SidecarConfigInput> = {}): SidecarConfigInput {
    return testConfig({
      providers: [
        { name: 'openai', type: 'openai', baseUrl: fake.openaiUrl },
        { name: 'anthropic', type: 'anthropic', baseUrl: fake.url },
      ],
      tools: [
        { name: 'lookup', endpoint: tools.url('/lookup') },
        { name: 'refund', endpoint: tools.url('/refund'), requiresApproval: true },
      ],
      approvals: { token: { env: 'APPROVAL_TOKEN' } },
      ...extra,
    });
  }

  /** SIGTERM, then every stdout line once the pipe is read to its end. */
  async function stopAndRead(sidecar: Sidecar): Promise<{ code: number | null; stdout: string }> {
    const stdout = sidecar.child.stdout!;
    const ended = stdout.readableEnded ? Promise.resolve() : new Promise((resolve) => stdout.once('end', resolve));
    const { code } = await sidecar.stop();
    await ended;
    return { code, stdout: sidecar.stdout.map((l) => `${l}\n`).join('') };
  }

  function post(base: string, urlPath: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return fetch(`${base}${urlPath}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  }

  test('stdout is audit records only; the chain and audit.file verify with verify-audit; an edited line is reported by number', async () => {
    const file = path.join(dir, 'audit.jsonl');
    const sidecar = await Sidecar.start({ config: config({ audit: { file } }), env: ENV });
    const marker = 'ACCOUNT-7731-do-not-log';

    // LLM traffic of both APIs, streamed and not (the sidecar must print nothing else on stdout).
    const openai = new OpenAI({ baseURL: sidecar.openaiBaseUrl, apiKey: 'sk-client', maxRetries: 0 });
    const anthropic = new Anthropic({ baseURL: sidecar.url, apiKey: 'sk-ant-client', maxRetries: 0 });
    fake.script({ text: 'one', usage: { input: 20, output: 3 } }, { text: 'two', usage: { input: 5, output: 2 } }, { text: 'three' });
    await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: marker }] });
    for await (const chunk of await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true })) void chunk;
    await anthropic.messages.create({ model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });

    // Tool calls: one plain, one unknown, one approved, one denied.
    const args = { account: marker, amount: 12 };
    expect((await post(sidecar.url, '/tools/lookup', args, { 'x-agent-user': 'alice', 'x-agent-run-id': 'run-1' })).status).toBe(200);
    expect((await post(sidecar.url, '/tools/nope', {})).status).toBe(404);
    const held: any = await (await post(sidecar.url, '/tools/refund', args, { 'x-agent-user': 'alice' })).json();
    const denied: any = await (await post(sidecar.url, '/tools/refund', { amount: 1 })).json();
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect((await post(sidecar.adminUrl, `/approvals/${held.approval_id}`, { decision: 'approve' }, { authorization: 'Bearer guessed' })).status).toBe(401);
    expect((await post(sidecar.adminUrl, `/approvals/${held.approval_id}`, { decision: 'approve', reason: 'verified', approver: 'dana' }, auth)).status).toBe(200);
    expect((await post(sidecar.adminUrl, `/approvals/${denied.approval_id}`, { decision: 'deny', reason: 'too small to bother' }, auth)).status).toBe(200);

    const { code, stdout } = await stopAndRead(sidecar);
    expect(code).toBe(0);

    // Every stdout line is an audit record of one intact chain, from start to stop.
    const lines = stdout.trimEnd().split('\n');
    const records = lines.map((l) => JSON.parse(l));
    expect(verifyAuditChain(stdout)).toEqual({ ok: true, records: lines.length, chains: 1 });
    expect(records[0]).toMatchObject({ kind: 'start', 'gen_ai.agent.name': 'test-agent', mode: 'sidecar' });
    expect(records.at(-1).kind).toBe('stop');
    expect(readFileSync(file, 'utf8')).toBe(stdout);

    const kinds = records.map((r) => r.kind);
    expect(kinds.filter((k) => k === 'tool.call')).toHaveLength(4);
    expect(kinds.filter((k) => k === 'tool.result')).toHaveLength(2);
    expect(records.find((r) => r.kind === 'tool.call' && r['gen_ai.tool.name'] === 'nope')).toMatchObject({ 'gen_ai.security.decision.type': 'deny' });
    expect(records.filter((r) => r.kind === 'approval.decision').map((r) => [r['approval.id'], r['gen_ai.security.decision.type'], r['gen_ai.security.decision.reason']])).toEqual([
      [held.approval_id, 'allow', 'verified'],
      [denied.approval_id, 'deny', 'too small to bother'],
    ]);
    expect(records.filter((r) => r.kind === 'approvals.unauthorized')).toEqual([
      expect.objectContaining({ 'url.path': `/approvals/${held.approval_id}`, 'gen_ai.security.decision.type': 'deny', 'http.response.status_code': 401 }),
    ]);
    const lookup = records.find((r) => r.kind === 'tool.call' && r['gen_ai.tool.name'] === 'lookup');
    expect(lookup).toMatchObject({ 'gen_ai.operation.name': 'execute_tool', 'user.id': 'alice', 'gen_ai.conversation.id': 'run-1', 'gen_ai.tool.call.arguments': sha256(JSON.stringify(args)) });
    // Content is hashed: the raw text appears nowhere.
    expect(stdout).not.toContain(marker);

    const ok = await Sidecar.run(['verify-audit', file]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`intact, ${lines.length} records in 1 chain`);

    // Someone lowers the status of the approved refund's result.
    const target = records.findIndex((r) => r.kind === 'tool.result' && r['approval.id'] === held.approval_id);
    const edited = [...lines];
    edited[target] = edited[target].replace('"http.response.status_code":200', '"http.response.status_code":500');
    expect(edited[target]).not.toBe(lines[target]);
    const tampered = path.join(dir, 'tampered.jsonl');
    writeFileSync(tampered, join(edited));
    const bad = await Sidecar.run(['verify-audit', tampered]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`tampered.jsonl:${target + 1}: chain broken: hash mismatch`);
    expect(bad.stdout).toBe('');
  });

  test('a restarted sidecar appends a new chain to audit.file; captureContent records content verbatim', async () => {
    const file = path.join(dir, 'restarts.jsonl');
    const args = { account: 'ACC-42', note: 'verbatim please' };
    for (const captureContent of [false, true]) {
      const sidecar = await Sidecar.start({ config: config({ audit: { file, captureContent } }), env: ENV });
      expect((await post(sidecar.url, '/tools/lookup', args)).status).toBe(200);
      await stopAndRead(sidecar);
    }
    const text = readFileSync(file, 'utf8');
    expect(verifyAuditChain(text)).toMatchObject({ ok: true, chains: 2 });
    const calls = text.trimEnd().split('\n').map((l) => JSON.parse(l)).filter((r) => r.kind === 'tool.call');
    expect(calls.map((r) => r['gen_ai.tool.call.arguments'])).toEqual([sha256(JSON.stringify(args)), JSON.stringify(args)]);
    expect((await Sidecar.run(['verify-audit', file])).stdout).toContain('in 2 chains');

    // Records of a chain after another chain began do not follow it.
    const lines = text.trimEnd().split('\n');
    const secondStart = lines.findIndex((l, i) => i > 0 && JSON.parse(l).kind === 'start');
    const spliced = path.join(dir, 'spliced.jsonl');
    writeFileSync(spliced, join([...lines.slice(0, 2), ...lines.slice(secondStart)]));
    appendFileSync(spliced, `${lines[2]}\n`);
    const bad = await Sidecar.run(['verify-audit', spliced]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`spliced.jsonl:${2 + (lines.length - secondStart) + 1}:`);
  });

  test('verify-audit usage errors exit 2', async () => {
    expect((await Sidecar.run(['verify-audit'])).code).toBe(2);
    expect((await Sidecar.run(['verify-audit', 'a.jsonl', 'b.jsonl'])).code).toBe(2);
    const missing = await Sidecar.run(['verify-audit', path.join(dir, 'missing.jsonl')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('ENOENT');
  });

  test('a burst of concurrent tool calls cut by SIGTERM: every call has its request and result records', async () => {
    const N = 40;
    const held: Array<() => void> = [];
    tools.on('/lookup', (call, res) => held.push(() => json(res, 200, { received: JSON.parse(call.body) })));
    const sidecar = await Sidecar.start({ config: config({ shutdown: { drainMs: 10_000 } }), env: ENV });

    const answers = Array.from({ length: N }, (_, i) => post(sidecar.url, '/tools/lookup', { i }).then((r) => r.status));
    const deadline = Date.now() + 10_000;
    while (held.length < N && Date.now() < deadline) await sleep(5);
    expect(held).toHaveLength(N);
    // Every call is at the tool; SIGTERM arrives now, and the tool answers only afterwards.
    const stopped = stopAndRead(sidecar);
    await sidecar.waitForLog('draining');
    for (const release of held) release();
    const [statuses, { code, stdout }] = await Promise.all([Promise.all(answers), stopped]);

    expect(code).toBe(0);
    expect(statuses).toEqual(Array(N).fill(200));
    const records = stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(verifyAuditChain(stdout)).toMatchObject({ ok: true, chains: 1 });
    const requests = records.filter((r) => r.kind === 'tool.call');
    const results = records.filter((r) => r.kind === 'tool.result');
    expect(requests).toHaveLength(N);
    expect(results).toHaveLength(N);
    expect(results.every((r) => r.outcome === 'success')).toBe(true);
    expect(new Set(requests.map((r) => r['gen_ai.tool.call.arguments']))).toEqual(new Set(Array.from({ length: N }, (_, i) => sha256(JSON.stringify({ i })))));
    expect(records.at(-1).kind).toBe('stop');
  });
});
