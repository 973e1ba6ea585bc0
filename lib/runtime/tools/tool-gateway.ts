/**
 * Tools called through the runtime: `POST /tools/{name}` forwards the agent's JSON arguments
 * to the tool's endpoint and answers with the tool's status and body. A tool declared with
 * requiresApproval is held instead (202 with an approval id) until an approver approves it
 * (`POST /approvals/{id}` with the approvals bearer token); it then runs once, and its result is
 * kept for the agent (`GET /approvals/{id}`). Denied and expired calls never run. Every step is
 * audited and counted in tool_calls_total{tool,outcome}.
 *
 * Exactly once: the store moves a call pending -> approved -> executing -> done with atomic
 * check-and-sets (approval-store.ts), and only the caller that moved it to executing calls the
 * tool, so retried or concurrent approvals, on one process or several sharing Redis, run it once.
 * A process that dies while the tool runs leaves the call "executing": it is never run again
 * (at most once), and the approver sees that it did not finish.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { SidecarConfig } from '../../spec/config';
import type { ToolConfig } from '../../spec/policy';
import { AuditAttr, type AuditLog } from '../audit/audit-log';
import { log } from '../log';
import type { RuntimeMetrics } from '../metering/metrics';
import type { SecretValue } from '../secrets';
import type { HttpRequest, HttpResponse } from '../http/types';
import type { RedisClient } from '../store/redis-client';
import {
  MemoryApprovalStore,
  RedisApprovalStore,
  type ApprovalRecord,
  type ApprovalStatus,
  type ApprovalStore,
  type ToolResult,
} from './approval-store';

export type Listener = 'proxy' | 'admin';

export interface ToolGatewayOptions {
  readonly config: SidecarConfig;
  readonly agent: string;
  readonly metrics: RuntimeMetrics;
  readonly audit: AuditLog;
  /** The approvers' bearer token (approvals.token), when configured. */
  readonly approvalToken?: SecretValue;
  /** The shared Redis connection when store.type is redis. */
  readonly redis: RedisClient | null;
  readonly isDraining: () => boolean;
}

/** Stable error codes in {"error":{"message","type","code"}} bodies. */
export const ToolErrorCode = {
  toolNotFound: 'tool_not_found',
  toolTimeout: 'tool_timeout',
  toolUnavailable: 'tool_unavailable',
  toolCancelled: 'tool_cancelled',
  invalidRequest: 'invalid_request_error',
  requestTooLarge: 'request_too_large',
  methodNotAllowed: 'method_not_allowed',
  unauthorized: 'unauthorized',
  notFound: 'not_found',
  approvalExpired: 'approval_expired',
  approvalDecided: 'approval_already_decided',
  idempotencyKeyReused: 'idempotency_key_reused',
  idempotencyInProgress: 'idempotency_in_progress',
  storeUnavailable: 'approval_store_unavailable',
  shuttingDown: 'upstream_unavailable',
} as const;

const UNKNOWN_TOOL_LABEL = 'none';
const MAX_ID_LENGTH = 256;
const MAX_DECISION_BODY = 64 * 1024;
const ID_PATTERN = /^[0-9a-f]{32}$/;
const STATUSES: readonly ApprovalStatus[] = ['pending', 'approved', 'executing', 'done', 'denied', 'expired'];
const OPERATION = 'execute_tool';

interface CallMeta {
  readonly user?: string;
  readonly run?: string;
  readonly approvalId?: string;
  readonly idempotencyKey?: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers?: http.OutgoingHttpHeaders,
  ) {
    super(message);
  }
}

export class ToolGateway {
  private readonly tools = new Map<string, ToolConfig>();
  private readonly store: ApprovalStore;
  /** Tool HTTP calls in flight, each with the function that ends it. */
  private readonly active = new Map<http.ClientRequest, (result: ToolResult) => void>();
  /** Requests being handled (awaited at shutdown so their audit records are written). */
  private readonly handling = new Set<Promise<void>>();
  /** Executions started by this process, by call id (a replay on this process awaits them). */
  private readonly running = new Map<string, Promise<ApprovalRecord>>();
  private readonly httpAgent = new http.Agent({ keepAlive: true });
  private readonly httpsAgent = new https.Agent({ keepAlive: true });
  private readonly sweeper: NodeJS.Timeout | undefined;
  private sweeping = false;
  private sweepFailing = false;
  private readonly failMode: 'fail-closed' | 'fail-open' | 'local';

  constructor(private readonly options: ToolGatewayOptions) {
    const { config } = options;
    for (const tool of config.tools) this.tools.set(tool.name, tool);
    const store = config.store;
    this.store = store.type === 'redis' && options.redis ? new RedisApprovalStore(options.redis, store.keyPrefix, options.agent) : new MemoryApprovalStore();
    this.failMode = store.type === 'redis' ? store.onUnavailable : 'fail-closed';
    const ttls = config.tools.filter((t) => t.requiresApproval).map((t) => t.approvalTtlMs);
    if (ttls.length) {
      // Expiry is also applied whenever a call is read; the sweep makes sure it is audited even if nobody asks.
      const every = Math.max(50, Math.min(5_000, Math.floor(Math.min(...ttls) / 4)));
      this.sweeper = setInterval(() => void this.sweep(), every);
      this.sweeper.unref();
    }
  }

  /** Requests being handled, tool calls included (shutdown waits for them). */
  get inFlight(): number {
    return this.handling.size;
  }

  /**
   * Serves /tools/{name} and /approvals[/{id}] on either listener; returns false for any other
   * path. On the admin listener (reachable from outside the pod) tools cannot be called, and
   * reading an approval needs the approvers' token too.
   */
  route(req: HttpRequest, res: HttpResponse, path: string, listener: Listener): boolean {
    let handler: (() => Promise<void>) | undefined;
    if (path === '/tools' || path.startsWith('/tools/')) {
      handler = () => this.toolCall(req, res, path, listener);
    } else if (path === '/approvals') {
      handler = () => this.listApprovals(req, res);
    } else if (path.startsWith('/approvals/')) {
      handler = () => this.approval(req, res, path.slice('/approvals/'.length), listener);
    }
    if (!handler) return false;
    const handled = handler().catch((err: unknown) => {
      req.resume();
      this.fail(res, err);
    });
    this.handling.add(handled);
    void handled.finally(() => this.handling.delete(handled));
    return true;
  }

  /** Ends tool calls still running (at the drain deadline) and waits a little for their records. */
  async abort(graceMs = 1_000): Promise<void> {
    for (const end of [...this.active.values()]) {
      end(errorResult(503, ToolErrorCode.toolCancelled, 'the runtime shut down before the tool answered', 'error'));
    }
    if (!this.handling.size) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.handling]), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.store.close();
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  // ---- POST /tools/{name} ---------------------------------------------------------------------

  private async toolCall(req: HttpRequest, res: HttpResponse, path: string, listener: Listener): Promise<void> {
    if (listener === 'admin') {
      req.resume();
      throw new HttpError(404, ToolErrorCode.notFound, 'tools are called on the proxy listener, not the admin listener');
    }
    const name = toolName(path);
    const tool = name === undefined ? undefined : this.tools.get(name);
    if (!tool) {
      req.resume();
      this.count(UNKNOWN_TOOL_LABEL, 'rejected_unknown_tool');
      this.audit({
        kind: 'tool.call',
        [AuditAttr.operation]: OPERATION,
        [AuditAttr.toolName]: (name ?? path.slice('/tools/'.length)).slice(0, 128),
        [AuditAttr.decision]: 'deny',
        [AuditAttr.rule]: 'tool.unknown',
        [AuditAttr.reason]: 'no tool by this name is declared for this agent',
        [AuditAttr.status]: 404,
      });
      throw new HttpError(404, ToolErrorCode.toolNotFound, `no tool named ${JSON.stringify(name ?? path.slice(7))} is declared for this agent`);
    }
    let args: string;
    let meta: CallMeta;
    try {
      ({ args, meta } = await this.admit(req, tool));
    } catch (err) {
      if (err instanceof HttpError) {
        this.count(tool.name, err.status === 413 ? 'rejected_too_large' : err.status === 503 ? 'rejected_draining' : 'rejected_invalid');
        this.audit({
          kind: 'tool.call',
          [AuditAttr.operation]: OPERATION,
          [AuditAttr.toolName]: tool.name,
          [AuditAttr.decision]: 'deny',
          [AuditAttr.rule]: 'tool.request',
          [AuditAttr.reason]: err.message,
          [AuditAttr.status]: err.status,
        });
      }
      throw err;
    }
    if (tool.requiresApproval) return this.hold(tool, args, meta, res);
    if (meta.idempotencyKey !== undefined) return this.callIdempotent(tool, args, meta, res);
    this.auditCall(tool, args, meta, { [AuditAttr.decision]: 'allow' });
    sendResult(res, await this.execute(tool, args, meta));
  }

  /** Checks a call of a declared tool: method, shutdown, identity headers, body size and JSON. */
  private async admit(req: HttpRequest, tool: ToolConfig): Promise<{ args: string; meta: CallMeta }> {
    if (req.method !== 'POST') throw new HttpError(405, ToolErrorCode.methodNotAllowed, 'tools are called with POST', { allow: 'POST' });
    if (this.options.isDraining()) {
      throw new HttpError(503, ToolErrorCode.shuttingDown, 'the runtime is shutting down; retry', { 'retry-after': '1', connection: 'close' });
    }
    const meta: CallMeta = { user: singleHeader(req, 'x-agent-user'), run: singleHeader(req, 'x-agent-run-id'), idempotencyKey: singleHeader(req, 'idempotency-key') };
    const raw = await readBody(req, tool.maxBodyBytes);
    const args = raw.length ? raw.toString('utf8') : '{}';
    try {
      JSON.parse(args);
    } catch (err) {
      throw new HttpError(400, ToolErrorCode.invalidRequest, `the tool arguments are not valid JSON: ${(err as Error).message}`);
    }
    return { args, meta };
  }

  /** Holds a call for approval: 202 with its approval id (the same one for a retry with the same Idempotency-Key). */
  private async hold(tool: ToolConfig, args: string, meta: CallMeta, res: HttpResponse): Promise<void> {
    const now = Date.now();
    const id = callId(tool.name, meta);
    const bodyHash = sha256(args);
    const candidate: ApprovalRecord = {
      id,
      tool: tool.name,
      status: 'pending',
      requiresApproval: true,
      arguments: args,
      bodyHash,
      user: meta.user,
      run: meta.run,
      idempotencyKey: meta.idempotencyKey,
      createdAt: now,
      expiresAt: now + tool.approvalTtlMs,
    };
    let stored: { record: ApprovalRecord; created: boolean; expired: boolean };
    try {
      stored = await this.store.create(candidate, now);
    } catch (err) {
      this.count(tool.name, 'rejected_store_unavailable');
      this.auditCall(tool, args, meta, { [AuditAttr.decision]: 'deny', [AuditAttr.rule]: 'tool.approval_store', [AuditAttr.reason]: (err as Error).message });
      throw storeUnavailable(err);
    }
    const { record } = stored;
    if (!stored.created && record.bodyHash !== bodyHash) {
      this.auditCall(tool, args, meta, { 'approval.id': id, [AuditAttr.decision]: 'deny', [AuditAttr.rule]: 'tool.idempotency', [AuditAttr.reason]: 'idempotency key reused with other arguments' });
      throw new HttpError(422, ToolErrorCode.idempotencyKeyReused, 'this Idempotency-Key was used with other arguments; use a new key for a new call');
    }
    if (stored.expired) this.onExpired(record);
    if (stored.created) this.count(tool.name, 'pending');
    this.auditCall(tool, args, meta, {
      'approval.id': id,
      'approval.status': record.status,
      [AuditAttr.rule]: 'tool.requires_approval',
      ...(stored.created ? {} : { 'idempotent.replay': true }),
    });
    sendJson(res, 202, approvalView(record));
  }

  /** A tool without approval called with an Idempotency-Key: one execution, its result replayed. */
  private async callIdempotent(tool: ToolConfig, args: string, meta: CallMeta, res: HttpResponse): Promise<void> {
    const now = Date.now();
    const id = callId(tool.name, meta);
    const bodyHash = sha256(args);
    const candidate: ApprovalRecord = {
      id,
      tool: tool.name,
      status: 'executing',
      requiresApproval: false,
      arguments: args,
      bodyHash,
      user: meta.user,
      run: meta.run,
      idempotencyKey: meta.idempotencyKey,
      createdAt: now,
      expiresAt: now,
      startedAt: now,
    };
    let stored: { record: ApprovalRecord; created: boolean };
    try {
      stored = await this.store.create(candidate, now);
    } catch (err) {
      if (this.failMode === 'fail-closed') {
        this.count(tool.name, 'rejected_store_unavailable');
        this.auditCall(tool, args, meta, { [AuditAttr.decision]: 'deny', [AuditAttr.rule]: 'tool.idempotency_store', [AuditAttr.reason]: (err as Error).message });
        throw storeUnavailable(err);
      }
      // fail-open / local: the call goes ahead, without protection against a duplicate.
      this.auditCall(tool, args, meta, { [AuditAttr.decision]: 'allow', 'idempotency.degraded': this.failMode });
      return sendResult(res, await this.execute(tool, args, meta));
    }
    if (!stored.created && stored.record.bodyHash !== bodyHash) {
      this.auditCall(tool, args, meta, { [AuditAttr.decision]: 'deny', [AuditAttr.rule]: 'tool.idempotency', [AuditAttr.reason]: 'idempotency key reused with other arguments' });
      throw new HttpError(422, ToolErrorCode.idempotencyKeyReused, 'this Idempotency-Key was used with other arguments; use a new key for a new call');
    }
    this.auditCall(tool, args, meta, { [AuditAttr.decision]: 'allow', ...(stored.created ? {} : { 'idempotent.replay': true }) });
    const record = stored.created ? await this.executeClaimed(stored.record, tool) : await this.awaitFinished(stored.record, tool);
    if (record.status !== 'done' || !record.result) {
      throw new HttpError(409, ToolErrorCode.idempotencyInProgress, 'a call with this Idempotency-Key is still running; retry later', { 'retry-after': '1' });
    }
    sendResult(res, record.result, stored.created ? undefined : { 'idempotent-replayed': 'true' });
  }

  // ---- /approvals ------------------------------------------------------------------------------

  private async listApprovals(req: HttpRequest, res: HttpResponse): Promise<void> {
    req.resume();
    if (req.method !== 'GET') throw new HttpError(405, ToolErrorCode.methodNotAllowed, 'use GET /approvals?status=pending', { allow: 'GET' });
    this.authorize(req);
    const status = new URL(req.url ?? '/', 'http://x').searchParams.get('status');
    if (status !== null && status !== 'all' && !(STATUSES as readonly string[]).includes(status)) {
      throw new HttpError(400, ToolErrorCode.invalidRequest, `status must be one of ${STATUSES.join(', ')} or all`);
    }
    let records: ApprovalRecord[];
    try {
      await this.sweep();
      records = await this.store.list(Date.now());
    } catch (err) {
      throw storeUnavailable(err);
    }
    const chosen = status === null || status === 'all' ? records : records.filter((r) => r.status === status);
    sendJson(res, 200, { approvals: chosen.map(approvalView) });
  }

  private async approval(req: HttpRequest, res: HttpResponse, id: string, listener: Listener): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'POST') {
      req.resume();
      throw new HttpError(405, ToolErrorCode.methodNotAllowed, 'use GET or POST /approvals/{id}', { allow: 'GET, POST' });
    }
    // The agent reads its own calls on the loopback proxy listener; everything else is for approvers.
    if (req.method === 'POST' || listener === 'admin') this.authorize(req);
    if (req.method === 'GET') {
      req.resume();
      const record = await this.read(id);
      return sendJson(res, 200, approvalView(record));
    }
    const decision = parseDecision(await readBody(req, MAX_DECISION_BODY));
    if (decision.decision === 'deny') return this.deny(id, decision, res);
    return this.approve(id, decision, res);
  }

  private async deny(id: string, decision: Decision, res: HttpResponse): Promise<void> {
    const now = Date.now();
    const moved = await this.storeCall(() => this.store.transition(id, ['pending'], 'denied', { decidedAt: now, reason: decision.reason, approver: decision.approver }, now));
    const record = this.known(id, moved.record);
    if (moved.expired) this.onExpired(record);
    if (moved.changed) {
      this.count(record.tool, 'denied');
      this.auditDecision(record, 'deny', decision);
      return sendJson(res, 200, approvalView(record));
    }
    // Denying twice is harmless; anything else was decided otherwise first.
    if (record.status === 'denied') return sendJson(res, 200, approvalView(record));
    return sendConflict(res, record);
  }

  private async approve(id: string, decision: Decision, res: HttpResponse): Promise<void> {
    const now = Date.now();
    const moved = await this.storeCall(() => this.store.transition(id, ['pending'], 'approved', { decidedAt: now, reason: decision.reason, approver: decision.approver }, now));
    let record = this.known(id, moved.record);
    if (moved.expired) this.onExpired(record);
    if (moved.changed) {
      this.count(record.tool, 'approved');
      this.auditDecision(record, 'allow', decision);
    }
    if (record.status === 'denied' || record.status === 'expired') return sendConflict(res, record);
    const tool = this.tools.get(record.tool);
    if (record.status === 'approved' || record.status === 'executing') {
      if (!tool) throw new HttpError(409, ToolErrorCode.toolNotFound, `tool ${record.tool} is not declared in this runtime's config, so it cannot run here`);
      record = await this.runApproved(record, tool);
    }
    sendJson(res, record.status === 'done' ? 200 : 202, approvalView(record));
  }

  /** Claims an approved call and runs it; if another caller claimed it, waits for its result. */
  private async runApproved(record: ApprovalRecord, tool: ToolConfig): Promise<ApprovalRecord> {
    if (record.status === 'approved') {
      const now = Date.now();
      const claim = await this.storeCall(() => this.store.transition(record.id, ['approved'], 'executing', { startedAt: now }, now));
      if (claim.changed) return this.executeClaimed(claim.record!, tool);
      record = this.known(record.id, claim.record);
    }
    return this.awaitFinished(record, tool);
  }

  /** Runs a call this process claimed (status executing), then stores its result. */
  private executeClaimed(record: ApprovalRecord, tool: ToolConfig): Promise<ApprovalRecord> {
    const run = (async (): Promise<ApprovalRecord> => {
      const meta: CallMeta = { user: record.user, run: record.run, idempotencyKey: record.idempotencyKey, approvalId: record.requiresApproval ? record.id : undefined };
      const result = await this.execute(tool, record.arguments, meta);
      const now = Date.now();
      try {
        const done = await this.store.transition(record.id, ['executing'], 'done', { result, finishedAt: now }, now);
        if (done.record) return done.record;
      } catch (err) {
        log.warn('a tool result could not be stored; later reads will show the call as executing', { tool: tool.name, id: record.id, error: (err as Error).message });
      }
      return { ...record, status: 'done', result, finishedAt: now };
    })();
    this.running.set(record.id, run);
    void run.finally(() => this.running.delete(record.id)).catch(() => undefined);
    return run;
  }

  /** Waits for a call someone else is running to finish (bounded by the tool's timeout). */
  private async awaitFinished(record: ApprovalRecord, tool: ToolConfig): Promise<ApprovalRecord> {
    const deadline = Date.now() + tool.timeoutMs + 2_000;
    let delay = 10;
    while ((record.status === 'approved' || record.status === 'executing') && Date.now() < deadline) {
      const local = this.running.get(record.id);
      if (local) {
        record = await local;
        continue;
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 200);
      const read = await this.storeCall(() => this.store.transition(record.id, [], 'done', {}, Date.now()));
      record = this.known(record.id, read.record);
      if (record.status === 'approved' && record.requiresApproval) return this.runApproved(record, tool);
    }
    return record;
  }

  /** A call's current state (expired first if it is pending past its expiry). */
  private async read(id: string): Promise<ApprovalRecord> {
    if (!ID_PATTERN.test(id)) throw notFound(id);
    const read = await this.storeCall(() => this.store.transition(id, [], 'done', {}, Date.now()));
    const record = this.known(id, read.record);
    if (read.expired) this.onExpired(record);
    return record;
  }

  /** Expires pending calls past their expiry, auditing each once (whichever process moves it). */
  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const now = Date.now();
      for (const id of await this.store.dueForExpiry(now)) {
        const moved = await this.store.transition(id, [], 'expired', {}, now);
        if (moved.expired && moved.record) this.onExpired(moved.record);
      }
      if (this.sweepFailing) {
        this.sweepFailing = false;
        log.info('approval expiry sweep works again');
      }
    } catch (err) {
      if (!this.sweepFailing) {
        this.sweepFailing = true;
        log.warn('approval expiry sweep failed; pending calls still expire when read', { error: (err as Error).message });
      }
    } finally {
      this.sweeping = false;
    }
  }

  // ---- the tool's HTTP call --------------------------------------------------------------------

  /** Calls the tool (POST JSON) within its timeout; never rejects. Counts and audits the result. */
  private async execute(tool: ToolConfig, args: string, meta: CallMeta): Promise<ToolResult> {
    const started = performance.now();
    const result = await this.post(tool, args, meta);
    this.count(tool.name, result.outcome);
    this.audit({
      kind: 'tool.result',
      [AuditAttr.operation]: OPERATION,
      [AuditAttr.toolName]: tool.name,
      [AuditAttr.user]: meta.user,
      [AuditAttr.run]: meta.run,
      'approval.id': meta.approvalId,
      [AuditAttr.status]: result.status,
      outcome: result.outcome,
      [AuditAttr.latencyMs]: Math.round((performance.now() - started) * 10) / 10,
      [AuditAttr.toolResult]: this.options.audit.content(result.body),
      ...(result.outcome === 'success' ? {} : { [AuditAttr.error]: result.outcome === 'timeout' ? ToolErrorCode.toolTimeout : String(result.status) }),
    });
    return result;
  }

  private post(tool: ToolConfig, args: string, meta: CallMeta): Promise<ToolResult> {
    return new Promise((resolve) => {
      const payload = Buffer.from(args, 'utf8');
      const url = new URL(tool.endpoint);
      const headers: http.OutgoingHttpHeaders = {
        'content-type': 'application/json',
        'content-length': payload.length,
        accept: 'application/json',
        'x-agent-name': this.options.agent,
      };
      if (meta.user !== undefined) headers['x-agent-user'] = meta.user;
      if (meta.run !== undefined) headers['x-agent-run-id'] = meta.run;
      if (meta.approvalId !== undefined) headers['x-approval-id'] = meta.approvalId;
      if (meta.idempotencyKey !== undefined) headers['idempotency-key'] = meta.idempotencyKey;
      const secure = url.protocol === 'https:';
      const req = (secure ? https : http).request(url, { method: 'POST', headers, agent: secure ? this.httpsAgent : this.httpAgent });
      let settled = false;
      // A complete answer leaves the connection to the keep-alive pool; anything else closes it.
      const end = (result: ToolResult, complete = false) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.active.delete(req);
        if (!complete) req.destroy();
        resolve(result);
      };
      const timer = setTimeout(
        () => end(errorResult(504, ToolErrorCode.toolTimeout, `tool ${tool.name} did not answer within ${tool.timeoutMs} ms`, 'timeout')),
        tool.timeoutMs,
      );
      this.active.set(req, end);
      const unavailable = (err: Error) => end(errorResult(502, ToolErrorCode.toolUnavailable, `tool ${tool.name} could not be reached: ${(err as NodeJS.ErrnoException).code ?? err.message}`, 'error'));
      req.on('error', unavailable);
      req.on('response', (res) => {
        const limit = this.options.config.limits.maxBodyBytes;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > limit) return end(errorResult(502, ToolErrorCode.toolUnavailable, `tool ${tool.name} answered more than ${limit} bytes (limits.maxBodyBytes)`, 'error'));
          chunks.push(chunk);
        });
        res.on('error', unavailable);
        res.on('end', () => {
          const status = res.statusCode ?? 502;
          end({
            status,
            contentType: String(res.headers['content-type'] ?? 'application/octet-stream'),
            body: Buffer.concat(chunks, size).toString('utf8'),
            outcome: status >= 200 && status < 300 ? 'success' : 'error',
          }, true);
        });
      });
      req.end(payload);
    });
  }

  // ---- helpers ---------------------------------------------------------------------------------

  private authorize(req: HttpRequest): void {
    const token = this.options.approvalToken;
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header) : null;
    // Digests of equal length, compared in constant time: neither the token nor its length leaks.
    if (token && match && timingSafeEqual(digest(match[1]), digest(token.value))) return;
    this.audit({
      kind: 'approvals.unauthorized',
      'http.request.method': req.method,
      'url.path': pathOfUrl(req.url ?? '/').slice(0, 128),
      [AuditAttr.decision]: 'deny',
      [AuditAttr.rule]: 'approvals.token',
      [AuditAttr.reason]: header === undefined ? 'no Authorization header' : 'the bearer token does not match approvals.token',
      [AuditAttr.status]: 401,
    });
    throw new HttpError(401, ToolErrorCode.unauthorized, token ? 'approvers must send Authorization: Bearer <approvals token>' : 'approvals are not configured (approvals.token)', {
      'www-authenticate': 'Bearer realm="cdk-agents approvals"',
    });
  }

  private known(id: string, record: ApprovalRecord | undefined): ApprovalRecord {
    if (!record || !record.requiresApproval) throw notFound(id);
    return record;
  }

  private async storeCall<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  private onExpired(record: ApprovalRecord): void {
    this.count(record.tool, 'expired');
    this.audit({
      kind: 'approval.expired',
      [AuditAttr.operation]: OPERATION,
      [AuditAttr.toolName]: record.tool,
      [AuditAttr.user]: record.user,
      [AuditAttr.run]: record.run,
      'approval.id': record.id,
      [AuditAttr.decision]: 'deny',
      [AuditAttr.rule]: 'tool.approval_ttl',
      [AuditAttr.reason]: 'not approved before it expired (approvalTtlMs)',
    });
  }

  private auditCall(tool: ToolConfig, args: string, meta: CallMeta, fields: Record<string, unknown>): void {
    this.audit({
      kind: 'tool.call',
      [AuditAttr.operation]: OPERATION,
      [AuditAttr.toolName]: tool.name,
      [AuditAttr.user]: meta.user,
      [AuditAttr.run]: meta.run,
      'idempotency.key': meta.idempotencyKey,
      [AuditAttr.toolArguments]: this.options.audit.content(args),
      ...fields,
    });
  }

  private auditDecision(record: ApprovalRecord, decision: 'allow' | 'deny', by: Decision): void {
    this.audit({
      kind: 'approval.decision',
      [AuditAttr.operation]: OPERATION,
      [AuditAttr.toolName]: record.tool,
      [AuditAttr.user]: record.user,
      [AuditAttr.run]: record.run,
      'approval.id': record.id,
      [AuditAttr.decision]: decision,
      [AuditAttr.rule]: 'tool.approval',
      [AuditAttr.reason]: by.reason,
      approver: by.approver,
    });
  }

  private audit(fields: Record<string, unknown>): void {
    this.options.audit.record(fields);
  }

  private count(tool: string, outcome: string): void {
    this.options.metrics.toolCalls.child(tool, outcome).inc();
  }

  private fail(res: HttpResponse, err: unknown): void {
    if (err instanceof HttpError) return sendError(res, err.status, err.code, err.message, err.headers);
    log.error('tool gateway failed', { error: (err as Error).stack ?? String(err) });
    sendError(res, 500, 'internal_error', 'the runtime failed to handle this call');
  }
}

interface Decision {
  readonly decision: 'approve' | 'deny';
  readonly reason?: string;
  readonly approver?: string;
}

function parseDecision(raw: Buffer): Decision {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new HttpError(400, ToolErrorCode.invalidRequest, 'send {"decision":"approve"|"deny","reason":"..."} as JSON');
  }
  const b = body as Record<string, unknown> | null;
  if (!b || typeof b !== 'object' || (b.decision !== 'approve' && b.decision !== 'deny')) {
    throw new HttpError(400, ToolErrorCode.invalidRequest, 'decision must be "approve" or "deny"');
  }
  for (const field of ['reason', 'approver'] as const) {
    if (b[field] !== undefined && (typeof b[field] !== 'string' || (b[field] as string).length > 4_096)) {
      throw new HttpError(400, ToolErrorCode.invalidRequest, `${field} must be a string of at most 4096 characters`);
    }
  }
  return { decision: b.decision, reason: b.reason as string | undefined, approver: b.approver as string | undefined };
}

/** The tool name of /tools/{name}, or undefined when it cannot be one. */
function toolName(path: string): string | undefined {
  const encoded = path.slice('/tools/'.length);
  if (!encoded || encoded.includes('/')) return undefined;
  try {
    return decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
}

/** A call's id: random, or derived from its Idempotency-Key so a retry finds the same call. */
function callId(tool: string, meta: CallMeta): string {
  if (meta.idempotencyKey === undefined) return randomBytes(16).toString('hex');
  return sha256(`${tool}\u0000${meta.user ?? ''}\u0000${meta.idempotencyKey}`).slice(0, 32);
}

function singleHeader(req: HttpRequest, name: string): string | undefined {
  const value = req.headers[name];
  if (Array.isArray(value)) throw new HttpError(400, ToolErrorCode.invalidRequest, `${name} was sent more than once; send it once`);
  if (value !== undefined && (value.length === 0 || value.length > MAX_ID_LENGTH)) {
    throw new HttpError(400, ToolErrorCode.invalidRequest, `${name} must be 1 to ${MAX_ID_LENGTH} characters`);
  }
  return value;
}

function readBody(req: HttpRequest, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => {
      req.resume();
      reject(new HttpError(413, ToolErrorCode.requestTooLarge, `the request body exceeds ${limit} bytes`, { connection: 'close' }));
    };
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) return tooLarge();
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      req.removeListener('data', onData);
      chunks.length = 0;
      tooLarge();
    };
    req.on('data', onData);
    req.on('end', () => {
      if (size <= limit) resolve(Buffer.concat(chunks, size));
    });
    req.on('error', reject);
  });
}

function pathOfUrl(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function notFound(id: string): HttpError {
  return new HttpError(404, ToolErrorCode.notFound, `no approval ${JSON.stringify(id.slice(0, 64))}`);
}

function storeUnavailable(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  return new HttpError(503, ToolErrorCode.storeUnavailable, `the approval store is unavailable: ${(err as Error).message}`, { 'retry-after': '1' });
}

function errorResult(status: number, code: string, message: string, outcome: ToolResult['outcome']): ToolResult {
  return { status, contentType: 'application/json', body: errorBody(code, message), outcome };
}

function errorBody(code: string, message: string): string {
  return JSON.stringify({ error: { message, type: code, code } });
}

function sendError(res: HttpResponse, status: number, code: string, message: string, headers?: http.OutgoingHttpHeaders): void {
  if (res.headersSent) return void res.destroy();
  const body = errorBody(code, message);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-cdk-agents-error': code, ...headers });
  res.end(body);
}

function sendJson(res: HttpResponse, status: number, value: unknown, headers?: http.OutgoingHttpHeaders): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function sendResult(res: HttpResponse, result: ToolResult, headers?: http.OutgoingHttpHeaders): void {
  const extra: http.OutgoingHttpHeaders = { ...headers };
  if (result.outcome !== 'success' && result.status >= 500) extra['x-cdk-agents-tool-outcome'] = result.outcome;
  res.writeHead(result.status, { 'content-type': result.contentType, 'content-length': Buffer.byteLength(result.body), ...extra });
  res.end(result.body);
}

function sendConflict(res: HttpResponse, record: ApprovalRecord): void {
  const code = record.status === 'expired' ? ToolErrorCode.approvalExpired : ToolErrorCode.approvalDecided;
  const message = record.status === 'expired' ? 'the call expired before it was approved; it will never run' : `the call was already decided (${record.status})`;
  sendJson(res, 409, { ...approvalView(record), error: { message, type: code, code } }, { 'x-cdk-agents-error': code });
}

/** What the approval API shows of a call. */
function approvalView(r: ApprovalRecord): Record<string, unknown> {
  return {
    approval_id: r.id,
    status: r.status,
    tool: r.tool,
    arguments: parseOr(r.arguments),
    user: r.user,
    run: r.run,
    created_at: iso(r.createdAt),
    expires_at: iso(r.expiresAt),
    decided_at: r.decidedAt === undefined ? undefined : iso(r.decidedAt),
    approver: r.approver,
    reason: r.reason,
    result: r.result && {
      status: r.result.status,
      outcome: r.result.outcome,
      content_type: r.result.contentType,
      body: /\bjson\b/i.test(r.result.contentType) ? parseOr(r.result.body) : r.result.body,
    },
  };
}

function parseOr(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
