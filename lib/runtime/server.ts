/**
 * The HTTP front: routes agent calls to the proxy, serves /metrics, /healthz and /readyz, and
 * turns away bad requests in the called API's own error shape before anything goes upstream.
 */
import * as http from 'node:http';
import type { ApiDialect } from './api/dialect';
import { anthropicDialect } from './api/anthropic';
import { AuditAttr, type AuditLog } from './audit/audit-log';
import { openAiDialect } from './api/openai';
import { ErrorCode, Exchange, type ExchangeContext } from './exchange';
import { estimateInputTokens } from './metering/estimate';
import type { Identity } from './policy/policy-engine';
import type { HttpRequest, HttpResponse } from './http/types';
import type { ToolGateway } from './tools/tool-gateway';
import type { SignatureVerifier } from './upstream/signing';

/** What the front needs beyond an exchange's context. */
export interface ServerContext extends ExchangeContext {
  readonly ready: boolean;
  /** In gateway mode: checks the calling agents' signatures. */
  readonly verifier: SignatureVerifier | null;
  readonly audit: AuditLog;
  /** Serves /tools/{name} and /approvals on both listeners. */
  readonly tools: ToolGateway;
}

const ROUTES: Record<string, ApiDialect> = {
  '/v1/chat/completions': openAiDialect,
  '/v1/messages': anthropicDialect,
};

export function adminRoute(ctx: ServerContext, path: string, res: HttpResponse): boolean {
  switch (path) {
    case '/metrics':
      ctx.metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType });
          res.end(text);
        },
        (err: Error) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`metrics collection failed: ${err.message}\n`);
        },
      );
      return true;
    case '/healthz':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return true;
    case '/readyz': {
      const ready = ctx.ready && !ctx.draining;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ready ? 'ready\n' : ctx.draining ? 'draining\n' : 'starting\n');
      return true;
    }
    default:
      return false;
  }
}

const MAX_ID_LENGTH = 256;

/**
 * Who is asking, or why that cannot be told (an error for the client; `status` 401 when a
 * gateway's caller is not authenticated). A sidecar serves its own agent and takes x-agent-user
 * and x-agent-run-id from it; a gateway trusts only what a connected agent's sidecar signed.
 */
function identityOf(ctx: ServerContext, req: HttpRequest, path: string, body: Buffer | null): Identity | { status: number; code: string; message: string } {
  if (ctx.verifier) {
    const verdict = ctx.verifier.verify(req.headers, req.method ?? 'GET', req.url ?? path, body);
    if (!verdict.ok) return { status: 401, code: ErrorCode.unauthenticated, message: `unauthenticated: ${verdict.reason}` };
    return { agent: verdict.agent.name, team: verdict.agent.team, user: verdict.user, run: verdict.run };
  }
  const user = req.headers['x-agent-user'];
  const run = req.headers['x-agent-run-id'];
  for (const [name, value] of [['x-agent-user', user], ['x-agent-run-id', run]] as const) {
    if (Array.isArray(value)) return { status: 400, code: ErrorCode.invalidRequest, message: `${name} was sent more than once; send it once` };
    if (value !== undefined && (value.length === 0 || value.length > MAX_ID_LENGTH)) {
      return { status: 400, code: ErrorCode.invalidRequest, message: `${name} must be 1 to ${MAX_ID_LENGTH} characters` };
    }
  }
  return { agent: ctx.agent, team: ctx.config.agent?.team, user: user as string | undefined, run: run as string | undefined };
}

/** The API shape of a pass-through request: Anthropic clients send anthropic-version or x-api-key. */
function dialectFor(req: HttpRequest): ApiDialect {
  return req.headers['anthropic-version'] !== undefined || req.headers['x-api-key'] !== undefined ? anthropicDialect : openAiDialect;
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/** The proxy listener: agent calls, pass-through, and the admin endpoints. */
export function proxyHandler(ctx: ServerContext): (req: HttpRequest, res: HttpResponse) => void {
  return (req, res) => {
    const path = pathOf(req.url ?? '/');
    if (req.method === 'GET' && adminRoute(ctx, path, res)) return;
    if (ctx.tools.route(req, res, path, 'proxy')) return;
    if (ctx.draining) {
      // A request on a connection kept alive from before SIGTERM: the client should retry elsewhere.
      return rejectEarly(ctx, dialectFor(req), req, res, 503, ErrorCode.upstreamUnavailable, 'the runtime is shutting down; retry', undefined, {
        'retry-after': '1',
        'x-should-retry': 'true',
        connection: 'close',
      });
    }
    const llmDialect = req.method === 'POST' ? ROUTES[path] : undefined;
    const dialect = llmDialect ?? dialectFor(req);
    readBody(ctx, dialect, req, res, (raw) => {
      const identity = identityOf(ctx, req, path, raw);
      if (!('agent' in identity)) return rejectEarly(ctx, dialect, req, res, identity.status, identity.code, identity.message);
      if (!llmDialect) {
        new Exchange(ctx, dialect, req, res, identity, undefined, raw).start();
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch (err) {
        // The parser's message quotes the body: the client gets it, the audit log (content hashed
        // unless captured) does not.
        return rejectEarly(ctx, dialect, req, res, 400, ErrorCode.invalidRequest, `the request body is not valid JSON: ${(err as Error).message}`, undefined, undefined, 'the request body is not valid JSON');
      }
      if (!body || typeof body !== 'object' || Array.isArray(body)) {
        return rejectEarly(ctx, dialect, req, res, 400, ErrorCode.invalidRequest, 'the request body must be a JSON object');
      }
      const obj = body as Record<string, unknown>;
      const problem = dialect.checkRequest(obj);
      if (problem) return rejectEarly(ctx, dialect, req, res, 400, ErrorCode.invalidRequest, problem.message, problem.param);
      const model = obj.model as string;
      if (ctx.config.unpricedModels === 'reject' && !ctx.prices.lookup(model)) {
        return rejectEarly(ctx, dialect, req, res, 400, ErrorCode.modelNotPriced, `model ${JSON.stringify(model)} has no price in this deployment's price table; add it to the config's prices`, 'model');
      }
      const promptTokens = estimateInputTokens(obj);
      new Exchange(ctx, dialect, req, res, identity, { body: obj, raw, model, stream: obj.stream === true, promptTokens }).start();
    });
  };
}

/** The admin listener: /metrics, /healthz, /readyz, and the approvals API for approvers outside the pod. */
export function adminHandler(ctx: ServerContext): (req: HttpRequest, res: HttpResponse) => void {
  return (req, res) => {
    const path = pathOf(req.url ?? '/');
    if (req.method === 'GET' && adminRoute(ctx, path, res)) return;
    if (ctx.tools.route(req, res, path, 'admin')) return;
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  };
}

const EMPTY = Buffer.alloc(0);
/**
 * After a 413 the rest of an oversized body is read and dropped, up to this much, so the client
 * can finish sending and read the answer (closing on it mid-upload makes clients report a
 * broken pipe instead of the 413). Beyond it the connection is closed.
 */
const DISCARD_LIMIT = 64 * 1024 * 1024;

/** Reads a request body up to the configured limit; larger bodies get 413 and are never buffered. */
function readBody(
  ctx: ServerContext,
  dialect: ApiDialect,
  req: HttpRequest,
  res: HttpResponse,
  onBody: (body: Buffer) => void,
): void {
  const limit = ctx.config.limits.maxBodyBytes;
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return tooLarge(ctx, dialect, req, res, Number(declared));
  if (declared === '0' || ((req.method === 'GET' || req.method === 'HEAD') && declared === undefined && !req.headers['transfer-encoding'])) {
    req.resume();
    req.on('end', () => onBody(EMPTY));
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      chunks.length = 0;
      return tooLarge(ctx, dialect, req, res, size);
    }
    chunks.push(chunk);
  };
  const onEnd = () => onBody(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
  req.on('data', onData);
  req.on('end', onEnd);
}

function tooLarge(ctx: ServerContext, dialect: ApiDialect, req: HttpRequest, res: HttpResponse, seen: number): void {
  const limit = ctx.config.limits.maxBodyBytes;
  const hopeless = seen > DISCARD_LIMIT;
  rejectEarly(ctx, dialect, req, res, 413, ErrorCode.requestTooLarge, `the request body exceeds ${limit} bytes (limits.maxBodyBytes)`, undefined, hopeless ? { connection: 'close' } : undefined);
  if (hopeless || req.complete) return;
  let discarded = seen;
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > DISCARD_LIMIT) req.socket.destroy();
  });
  req.resume();
}

/** Answers a request that never reaches a provider, counting and auditing it. */
export function rejectEarly(
  ctx: ServerContext,
  dialect: ApiDialect,
  req: HttpRequest,
  res: HttpResponse,
  status: number,
  code: string,
  message: string,
  param?: string,
  extra?: http.OutgoingHttpHeaders,
  auditReason = message,
): void {
  const body = dialect.errorBody(status, code, message, param);
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-cdk-agents-error': code,
    // Sending the same request again cannot succeed (the official SDKs honour this header).
    'x-should-retry': 'false',
    ...extra,
  };
  res.writeHead(status, headers);
  res.end(body);
  ctx.metrics.for(ctx.agent, 'none', 'none').request(status).inc();
  // One record per request, refused ones included: who was turned away, where, and why. The
  // identity headers are not recorded: the request may be refused for them (or, on a
  // gateway, for not being signed).
  const path = pathOf(req.url ?? '/');
  ctx.audit.record({
    kind: req.method === 'POST' && ROUTES[path] ? 'llm.request' : 'http.request',
    'http.request.method': req.method,
    'url.path': path,
    [AuditAttr.status]: status,
    [AuditAttr.decision]: 'deny',
    [AuditAttr.rule]: code,
    [AuditAttr.reason]: auditReason,
  });
}
