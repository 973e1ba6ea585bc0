/**
 * One client request's journey: provider choice with failover, the upstream call, the answer
 * streamed or passed back whole, and the metering when it ends, however it ends.
 *
 * Failover is possible until the first byte reaches the client: a non-streamed answer is held
 * until it is complete, a streamed one is committed with its first body chunk. After that a
 * failure ends the stream with an error event in the API's shape, and what was streamed is
 * billed (estimated where the provider had not reported it yet).
 */
import { createHash, hash as hashOnce } from 'node:crypto';
import type { HttpRequest, HttpResponse } from './http/types';
import type { SidecarConfig } from '../spec/config';
import type { ApiShape } from '../spec/providers';
import { costUsd, type TokenUsage } from '../spec/prices';
import type { ApiDialect, StreamMeter } from './api/dialect';
import { AuditAttr, type AuditDecision, type AuditLog } from './audit/audit-log';
import { cacheable, cacheKey, type CachedAnswer, type ResponseCache } from './cache/response-cache';
import type { InputGuard } from './guardrails/input-guard';
import type { OutputGuard, StreamGuard } from './guardrails/output-guard';
import type { GuardDecision } from './guardrails/types';
import { anthropicDialect } from './api/anthropic';
import { openAiDialect, withStreamUsage } from './api/openai';
import {
  AnthropicStreamToOpenAi,
  anthropicRequestToOpenAi,
  anthropicResponseToOpenAi,
  errorToAnthropic,
  errorToOpenAi,
  OpenAiStreamToAnthropic,
  openAiRequestToAnthropic,
  openAiResponseToAnthropic,
  TranslationError,
  UnreadableAnswerError,
} from './api/translate';
import { clientResponseHeaders, forwardedRequestHeaders, retryAfterMs, type ForwardedRequestHeaders } from './http/headers';
import type { UpstreamCall, UpstreamCallbacks, UpstreamError } from './http/origin-pool';
import type { ResponseHeaders } from './http/response-parser';
import { estimateInputTokens, tokensForBytes } from './metering/estimate';
import { recordUsage, type FailoverReason, type RequestMeters, type RuntimeMetrics } from './metering/metrics';
import type { PriceBook } from './metering/price-book';
import type { InFlightList, Linked } from './in-flight';
import type { Identity, PolicyEngine, Rejection, Reservation } from './policy/policy-engine';
import { SseSplitter } from './sse';
import type { UpstreamProvider } from './upstream/provider';

/** What an exchange needs from the running process. */
export interface ExchangeContext {
  readonly config: SidecarConfig;
  readonly agent: string;
  readonly metrics: RuntimeMetrics;
  readonly prices: PriceBook;
  readonly providers: Readonly<Record<ApiShape, readonly UpstreamProvider[]>>;
  /** Providers of the other shape that may serve a request when its own shape's all failed. */
  readonly otherShape: Readonly<Record<ApiShape, readonly UpstreamProvider[]>>;
  readonly inFlight: InFlightList<Exchange>;
  readonly draining: boolean;
  readonly policy: PolicyEngine;
  readonly audit: AuditLog;
  readonly inputGuard: InputGuard;
  readonly outputGuard: OutputGuard;
  readonly cache: ResponseCache | null;
}

const enum Phase {
  None,
  /** Request sent, no response body byte yet. */
  AwaitingFirstByte,
  /** Receiving the body: the idle timeout applies. */
  Receiving,
}

/** Stable error codes agents can branch on. */
export const ErrorCode = {
  upstreamUnavailable: 'upstream_unavailable',
  upstreamTimeout: 'upstream_timeout',
  invalidRequest: 'invalid_request_error',
  requestTooLarge: 'request_too_large',
  modelNotPriced: 'model_not_priced',
  guardrailBlocked: 'guardrail_blocked',
  unauthenticated: 'unauthenticated',
  internal: 'internal_error',
} as const;

/** Audit decisions by severity: a request's record carries its most severe one. */
const SEVERITY: Record<AuditDecision, number> = { allow: 0, warn: 1, modify: 2, deny: 3 };
const DECISION_OF: Record<GuardDecision['action'], AuditDecision> = { block: 'deny', redact: 'modify', warn: 'warn' };

const MAX_ERROR_BODY = 64 * 1024;
const CLIENT_CLOSED = 499;
const NO_MODEL = 'none';
/** The provider label of answers served from the response cache. */
const CACHE_PROVIDER = 'cache';

/** A parsed LLM request (chat completion or message). */
export interface LlmRequest {
  readonly body: Record<string, unknown>;
  readonly raw: Buffer;
  readonly model: string;
  readonly stream: boolean;
  /** Estimated prompt tokens (estimateInputTokens). */
  readonly promptTokens: number;
}

const NOTHING_USED = { tokens: 0, usd: 0 };
const NO_NAMES: ReadonlySet<string> = new Set();
const DIALECTS: Record<ApiShape, ApiDialect> = { openai: openAiDialect, anthropic: anthropicDialect };
/** Where each API shape's LLM calls go, as a client of that shape would call them. */
const LLM_PATHS: Record<ApiShape, string> = { openai: '/v1/chat/completions', anthropic: '/v1/messages' };

/** Turns a provider's stream of the other shape into the client's, event by event. */
interface StreamTranslator {
  onEvent(event: Buffer): Buffer[];
  end(): Buffer[];
  readonly done: boolean;
}

export class Exchange implements UpstreamCallbacks, Linked<Exchange> {
  prevInFlight: Exchange | null = null;
  nextInFlight: Exchange | null = null;
  private readonly startedAt = performance.now();
  private readonly forwarded: ForwardedRequestHeaders;
  private readonly candidates: readonly UpstreamProvider[];
  // Failure bookkeeping, allocated on the first failure (most requests never fail).
  private failedIn: Map<UpstreamProvider, number> | null = null;
  private retryAfter: Map<UpstreamProvider, number> | null = null;
  private failures: string[] | null = null;
  private bodies: Map<string, Buffer> | null = null;
  private upstreamBody: Record<string, unknown> | undefined;
  private dropInjectedUsage = false;

  private provider: UpstreamProvider | null = null;
  /** The current attempt goes to a provider of the other API shape: request and answer are translated. */
  private foreign = false;
  private translator: StreamTranslator | null = null;
  private call: UpstreamCall | null = null;
  /** The provider whose single half-open trial slot this request holds, if any. */
  private trialHolder: UpstreamProvider | null = null;
  private attempts = 0;
  private lastReason: FailoverReason | null = null;
  private lastTimedOut = false;

  private status = 0;
  private headers: ResponseHeaders | null = null;
  private errorBody: Buffer[] | null = null;
  private errorBytes = 0;
  private chunks: Buffer[] = [];
  private bodyBytes = 0;
  private streaming = false;
  private splitter: SseSplitter | null = null;
  private meter: StreamMeter | null = null;
  private committed = false;
  private finished = false;
  private ttftObserved = false;
  private servedModel: string | undefined;
  private reservation: Reservation | null = null;
  /** Set when the answer may be cached (or came from the cache). */
  private cacheKey: string | null = null;
  private cacheHit = false;
  /** What the client was sent, kept for the cache. */
  private sent: Buffer[] | null = null;
  private streamGuard: StreamGuard | null = null;
  /** The provider's whole answer (before any redaction): what usage is read from. */
  private answer: Buffer | null = null;
  /** What the client received of a stream, for the audit record. */
  private streamed: ReturnType<typeof createHash> | null = null;
  private capturedStream: Buffer[] | null = null;
  /** The most severe decision taken on this request, and the rule behind it. */
  private decision: AuditDecision = 'allow';
  private decisionRule: string | undefined;
  private decisionReason: string | undefined;

  // Timeouts are checked by the runtime's ticker (checkTimeouts), not a timer per request.
  private phase = Phase.None;
  private phaseSince = 0;
  private activity = 0;
  private seenActivity = 0;
  private backoff: NodeJS.Timeout | null = null;

  constructor(
    private readonly ctx: ExchangeContext,
    private readonly dialect: ApiDialect,
    private readonly req: HttpRequest,
    private readonly res: HttpResponse,
    /** Who is asking: the agent, and x-agent-user and x-agent-run-id. */
    private readonly identity: Identity,
    /** The parsed request for LLM endpoints; undefined for pass-through paths. */
    private readonly llm: LlmRequest | undefined,
    private readonly passthroughBody: Buffer | null = null,
  ) {
    this.forwarded = forwardedRequestHeaders(req.rawHeaders);
    const native = ctx.providers[dialect.shape];
    const other = llm ? ctx.otherShape[dialect.shape] : [];
    // After its own shape's providers, those of the other shape that can serve its model.
    this.candidates = other.length === 0 ? native : [...native, ...other.filter((p) => p.otherShapeModel(llm!.model) !== undefined)];
    if (llm && dialect.shape === 'openai') {
      const prepared = withStreamUsage(llm.body);
      this.dropInjectedUsage = prepared.injected;
      if (prepared.injected) this.upstreamBody = prepared.body;
    }
  }

  start(): void {
    this.ctx.inFlight.add(this);
    this.ctx.metrics.inFlightOf(this.identity.agent).value++;
    this.res.on('close', () => this.onClientClose());
    const llm = this.llm;
    if (llm) {
      const verdict = this.ctx.inputGuard.inspect(this.dialect.shape, llm.body, llm.raw.length, llm.promptTokens);
      if (verdict.decisions.length) this.decide(verdict.decisions);
      if (verdict.blocked) {
        return this.reject(400, ErrorCode.guardrailBlocked, `blocked by guardrail ${verdict.blocked.rule}: ${verdict.blocked.reason}`);
      }
    }
    this.reserve();
  }

  /**
   * After admission: a cached answer when there is one. Budgets, rate limits and loop guards
   * come first, so a hit counts as a request and an iteration of its run (an agent stuck
   * repeating itself is stopped even when every answer comes from the cache) but costs nothing.
   */
  private lookUpCache(): void {
    const llm = this.llm;
    const cache = this.ctx.cache;
    if (!llm || !cache || !cacheable(this.ctx.config.cache!, llm.body, llm.stream)) return this.nextAttempt();
    this.cacheKey = cacheKey(this.identity.agent, pathOnly(this.req.url ?? '/'), llm.body);
    const hit = cache.get(this.cacheKey);
    if (!(hit instanceof Promise)) return this.fromCache(hit);
    hit.then((answer) => this.fromCache(answer));
  }

  /** A cached answer if there is one; otherwise on to the provider. */
  private fromCache(answer: CachedAnswer | null): void {
    if (this.finished) return;
    const meters = this.ctx.metrics.cacheRequests;
    if (!answer) {
      meters.child(this.identity.agent, this.llm!.model, 'miss').inc();
      return this.nextAttempt();
    }
    meters.child(this.identity.agent, this.llm!.model, 'hit').inc();
    this.cacheHit = true;
    this.committed = true;
    this.res.writeHead(answer.status, { 'content-type': answer.contentType, 'content-length': answer.body.length, 'x-cdk-agents-cache': 'hit' });
    this.res.end(answer.body);
    this.complete(answer.status);
  }

  private reserve(): void {
    const llm = this.llm;
    const policy = this.ctx.policy;
    if (!llm || (policy.idle && this.identity.run === undefined)) return this.lookUpCache();
    const admission = policy.reserve(this.identity, this.maximumCost(llm), () => lastTurnHash(llm.body));
    if (!(admission instanceof Promise)) return this.admitted(admission);
    admission.then(
      (result) => this.admitted(result),
      (err: Error) => this.reject(500, ErrorCode.internal, `budget check failed: ${err.message}`),
    );
  }

  /** What the request may cost at most: its prompt estimate plus the output it allows. */
  private maximumCost(llm: LlmRequest): { tokens: number; usd: number } {
    const limit = llm.body.max_completion_tokens ?? llm.body.max_tokens;
    const output = typeof limit === 'number' && limit > 0 ? limit : this.ctx.config.reservation.defaultMaxOutputTokens;
    const price = this.ctx.prices.lookup(llm.model);
    const usd = price ? costUsd(price, { input: llm.promptTokens, output, cacheRead: 0, cacheWrite: 0 }) : 0;
    return { tokens: llm.promptTokens + output, usd };
  }

  private admitted(admission: Reservation | Rejection): void {
    if (this.finished) {
      // The client left while the budget was checked: give the reservation back.
      if (admission.ok) this.ctx.policy.settle(admission, NOTHING_USED);
      return;
    }
    if (!admission.ok) {
      this.note('deny', `${admission.code}.${admission.scope}.${admission.limit}`, admission.message);
      this.ctx.audit.record({
        kind: 'policy.decision',
        ...this.identityFields(),
        [AuditAttr.decision]: 'deny',
        [AuditAttr.rule]: `${admission.code}.${admission.scope}.${admission.limit}`,
        [AuditAttr.reason]: admission.message,
      });
      const retryable = admission.retryAfter !== undefined && admission.retryAfter <= 60;
      const extra: Record<string, string> = { 'x-should-retry': retryable ? 'true' : 'false' };
      if (admission.retryAfter !== undefined) extra['retry-after'] = String(admission.retryAfter);
      return this.reject(admission.status, admission.code, admission.message, extra);
    }
    this.reservation = admission;
    if (admission.degraded) {
      // The store was unreachable and its failure mode let the request through: say so.
      this.ctx.audit.record({
        kind: 'policy.decision',
        ...this.identityFields(),
        [AuditAttr.decision]: 'allow',
        [AuditAttr.rule]: `store.${admission.degraded}`,
        [AuditAttr.reason]: admission.degraded === 'local' ? 'budget store unreachable: limits enforced per process' : 'budget store unreachable: limits not enforced (fail-open)',
      });
    }
    if (admission.iterations) this.ctx.metrics.runIterations.child(this.identity.agent).observe(admission.iterations);
    this.lookUpCache();
  }

  // ---- provider choice and failover ----------------------------------------------------------

  private nextAttempt(): void {
    if (this.finished) return;
    const { retry } = this.ctx.config;
    if (this.attempts >= retry.maxAttempts) return this.failAll();
    const now = Date.now();
    let choice: UpstreamProvider | undefined;
    let skippedOpen: UpstreamProvider | undefined;
    // Providers not yet tried for this request, in priority order...
    for (const p of this.candidates) {
      if (this.failedIn?.has(p)) continue;
      const admission = p.health.admit(now);
      if (admission) {
        choice = p;
        if (admission === 'trial') this.trialHolder = p;
        break;
      }
      skippedOpen ??= p;
    }
    // ...then one that already failed it, after a backoff.
    let isRetry = false;
    if (!choice && this.failedIn) {
      for (const p of this.candidates) {
        if ((this.failedIn.get(p) ?? Infinity) === Infinity) continue;
        const admission = p.health.admit(now);
        if (admission) {
          choice = p;
          if (admission === 'trial') this.trialHolder = p;
          isRetry = true;
          break;
        }
      }
    }
    if (!choice) {
      if (this.attempts === 0 && this.candidates.length) return this.allInCooldown(now);
      return this.failAll();
    }

    const { metrics } = this.ctx;
    if (this.provider && this.provider !== choice && this.lastReason) {
      metrics.failovers.inc({ from: this.provider.name, to: choice.name, reason: this.lastReason });
    } else if (!this.provider && skippedOpen) {
      metrics.failovers.inc({ from: skippedOpen.name, to: choice.name, reason: 'circuit_open' });
    }
    if (!isRetry) return this.send(choice);

    metrics.retries.inc({ provider: choice.name, reason: this.lastReason ?? 'server_error' });
    const failures = this.failedIn!.get(choice)!;
    const backoff = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (failures - 1));
    const delay = this.retryAfter?.get(choice) ?? backoff / 2 + Math.random() * (backoff / 2);
    if (performance.now() - this.startedAt + delay >= this.ctx.config.timeouts.totalMs) {
      this.abandonTrial();
      return this.failAll();
    }
    const chosen = choice;
    this.backoff = setTimeout(() => {
      this.backoff = null;
      this.send(chosen);
    }, delay);
  }

  private send(provider: UpstreamProvider): void {
    if (this.finished) return this.abandonTrial();
    // A gateway speaks both shapes; any other provider of the other shape gets a translation.
    const foreign = this.llm !== undefined && provider.shape !== this.dialect.shape && !provider.signs;
    let model: string | undefined;
    let path: string;
    let body: Buffer | null;
    let headerLines: string;
    if (foreign) {
      model = provider.otherShapeModel(this.llm!.model)!;
      try {
        body = this.translatedBody(provider.shape, model);
      } catch (err) {
        if (!(err instanceof TranslationError)) throw err;
        return this.cannotServe(provider, err);
      }
      path = provider.upstreamPath(LLM_PATHS[provider.shape], model);
      // The client's API-specific headers (anthropic-version, anthropic-beta ...) mean nothing to the other API.
      headerLines = this.foreignHeaderLines() + provider.headerLines('', NO_NAMES);
    } else {
      model = this.llm ? provider.upstreamModel(this.llm.model) : undefined;
      path = provider.upstreamPath(this.req.url ?? '/', model);
      body = this.llm ? this.bodyFor(model!) : this.passthroughBody;
      headerLines = this.forwarded.lines + provider.headerLines(this.forwarded.credentialLines, this.forwarded.names);
    }
    this.provider = provider;
    this.foreign = foreign;
    this.translator = null;
    this.attempts++;
    this.status = 0;
    this.headers = null;
    this.errorBody = null;
    this.errorBytes = 0;
    this.chunks = [];
    this.bodyBytes = 0;
    this.streaming = false;
    this.servedModel = model;
    const method = this.req.method ?? 'GET';
    if (provider.signs) headerLines += provider.signatureLines(method, path, this.identity, body);
    this.call = provider.pool.request({ method, path, headerLines, body }, this);
    this.phase = Phase.AwaitingFirstByte;
    this.phaseSince = performance.now();
  }

  /** The request in the other API's shape, for a provider of that shape serving `model`. */
  private translatedBody(shape: ApiShape, model: string): Buffer {
    this.bodies ??= new Map();
    const key = `${shape}\u0000${model}`;
    let body = this.bodies.get(key);
    if (!body) {
      const source = this.llm!.body;
      body = Buffer.from(JSON.stringify(shape === 'anthropic' ? openAiRequestToAnthropic(source, model) : anthropicRequestToOpenAi(source, model)));
      this.bodies.set(key, body);
    }
    return body;
  }

  private foreignHeaderLines(): string {
    let lines = '';
    for (const line of this.forwarded.lines.split('\r\n')) {
      if (line && !line.startsWith('anthropic-') && !line.startsWith('openai-')) lines += `${line}\r\n`;
    }
    return lines;
  }

  /** A provider of the other shape cannot take this request (a feature its API lacks): not a provider failure. */
  private cannotServe(provider: UpstreamProvider, err: TranslationError): void {
    if (this.trialHolder === provider) this.abandonTrial();
    (this.failedIn ??= new Map()).set(provider, Infinity);
    (this.failures ??= []).push(`${provider.name}: cannot serve this request in the ${provider.shape} API: ${err.message}`);
    this.nextAttempt();
  }

  /** The request body for a served model name: the client's own bytes unless something changed. */
  private bodyFor(model: string): Buffer {
    const llm = this.llm!;
    if (!this.upstreamBody && model === llm.model) return llm.raw;
    this.bodies ??= new Map();
    let body = this.bodies.get(model);
    if (!body) {
      const source = this.upstreamBody ?? llm.body;
      body = Buffer.from(JSON.stringify(model === llm.model ? source : { ...source, model }));
      this.bodies.set(model, body);
    }
    return body;
  }

  private attemptFailed(reason: FailoverReason, detail: string, waitMs?: number): void {
    const provider = this.provider!;
    this.call = null;
    this.phase = Phase.None;
    provider.health.failed(Date.now(), waitMs);
    if (this.trialHolder === provider) this.trialHolder = null;
    // A provider asking for a longer wait than we allow is not tried again in this request.
    const tooLong = waitMs !== undefined && waitMs > this.ctx.config.retry.maxRetryAfterMs;
    this.failedIn ??= new Map();
    this.retryAfter ??= new Map();
    this.failedIn.set(provider, tooLong ? Infinity : (this.failedIn.get(provider) ?? 0) + 1);
    if (waitMs !== undefined && !tooLong) this.retryAfter.set(provider, waitMs);
    else this.retryAfter.delete(provider);
    (this.failures ??= []).push(`${provider.name}: ${detail}`);
    this.lastReason = reason;
    this.lastTimedOut = reason === 'timeout';
    this.nextAttempt();
  }

  // ---- upstream callbacks ---------------------------------------------------------------------

  onHead(status: number, headers: ResponseHeaders): void {
    this.status = status;
    this.headers = headers;
    if ((status === 429 || status >= 500) && !(this.provider!.signs && isPolicyAnswer(headers))) {
      this.errorBody = [];
      return;
    }
    this.provider!.health.succeeded();
    if (this.trialHolder === this.provider) this.trialHolder = null;
    const type = headers['content-type'];
    this.streaming = !this.llm || (typeof type === 'string' && type.startsWith('text/event-stream'));
    if (this.llm && this.streaming) {
      this.splitter = new SseSplitter();
      if (this.foreign) {
        // Metered on the provider's own events (Anthropic's cache writes exist only there), then translated.
        const llm = this.llm;
        this.meter = DIALECTS[this.provider!.shape].newStreamMeter(false);
        this.translator =
          this.dialect.shape === 'openai'
            ? new AnthropicStreamToOpenAi({ clientModel: llm.model, includeUsage: asksForUsage(llm.body) })
            : new OpenAiStreamToAnthropic({ clientModel: llm.model });
      } else {
        this.meter = this.dialect.newStreamMeter(this.dropInjectedUsage);
      }
      if (this.ctx.outputGuard.active) this.streamGuard = this.ctx.outputGuard.newStream(this.dialect.shape);
      if (this.ctx.audit.capturesContent) this.capturedStream = [];
      else this.streamed = createHash('sha256');
    }
  }

  onBody(chunk: Buffer): void {
    if (this.errorBody) {
      if (this.errorBytes < MAX_ERROR_BODY) this.errorBody.push(chunk);
      this.errorBytes += chunk.length;
      return;
    }
    this.activity++;
    if (this.phase === Phase.AwaitingFirstByte) this.receiving();
    if (!this.streaming) {
      this.chunks.push(chunk);
      this.bodyBytes += chunk.length;
      return;
    }
    if (!this.committed) this.commit();
    this.bodyBytes += chunk.length;
    if (!this.meter) {
      this.res.write(chunk);
      return;
    }
    this.forwardEvents(chunk);
  }

  onEnd(): void {
    this.call = null;
    this.phase = Phase.None;
    if (this.errorBody) {
      const status = this.status;
      const detail = `${status} ${upstreamMessage(Buffer.concat(this.errorBody))}`;
      return this.attemptFailed(status === 429 ? 'rate_limited' : 'server_error', detail, retryAfterMs(this.headers));
    }
    if (this.streaming) {
      if (!this.committed) this.commit();
      if (this.meter) {
        const rest = this.splitter!.takeRemainder();
        const out: Buffer[] = [];
        if (rest) this.pass(rest, out);
        const translator = this.translator;
        if (translator) for (const e of translator.end()) this.guard(e, out);
        if (this.streamGuard?.blocked) return this.blockStream();
        if (translator && !translator.done) {
          // Closed before its finish: the client's SDK must see an error, not a short answer.
          this.write(out);
          return this.cutStream(ErrorCode.upstreamUnavailable, `${this.provider!.name} closed the stream before it finished`, 502);
        }
        this.releaseHeld(out);
        this.write(out);
      }
      this.res.end();
      return this.complete(this.status);
    }
    let body = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.bodyBytes);
    this.chunks = [];
    if (this.foreign) {
      const translated = this.translateAnswer(body);
      if (!translated) return;
      this.answer = body;
      body = translated;
    } else {
      this.answer = body;
    }
    if (this.llm && this.ctx.outputGuard.active && this.status >= 200 && this.status < 300) {
      const verdict = this.ctx.outputGuard.inspectBody(this.dialect.shape, body);
      if (verdict.decisions.length) this.decide(verdict.decisions);
      if (verdict.blocked) {
        return this.reject(422, ErrorCode.guardrailBlocked, `the answer was blocked by guardrail ${verdict.blocked.rule}: ${verdict.blocked.reason}`);
      }
      body = verdict.body;
    }
    if (!this.res.headersSent) {
      const headers = clientResponseHeaders(this.headers!);
      headers['content-length'] = String(body.length);
      if (this.foreign) headers['content-type'] = 'application/json';
      if (this.ctx.draining) headers.connection = 'close';
      this.res.writeHead(this.status, headers);
    }
    this.committed = true;
    this.res.end(body);
    if (this.cacheKey) this.sent = [body];
    this.complete(this.status);
  }

  /** A whole answer (or error) of the other shape in the client's; null when it was unreadable (failed over). */
  private translateAnswer(body: Buffer): Buffer | null {
    const model = this.llm!.model;
    const toOpenAi = this.dialect.shape === 'openai';
    if (this.status < 200 || this.status >= 300) return toOpenAi ? errorToOpenAi(body) : errorToAnthropic(body);
    try {
      return toOpenAi ? anthropicResponseToOpenAi(body, model) : openAiResponseToAnthropic(body, model);
    } catch (err) {
      if (!(err instanceof UnreadableAnswerError)) throw err;
      this.attemptFailed('server_error', `${this.status} ${err.message}`);
      return null;
    }
  }

  onError(error: UpstreamError): void {
    this.call = null;
    this.phase = Phase.None;
    if (!this.committed) {
      const reason: FailoverReason =
        error.kind === 'connect' || error.kind === 'connect_timeout' ? 'connect_error' : 'connection_error';
      return this.attemptFailed(reason, error.message);
    }
    this.provider!.health.failed(Date.now());
    this.cutStream(ErrorCode.upstreamUnavailable, `the provider connection failed mid-stream: ${error.message}`, 502);
  }

  // ---- streaming --------------------------------------------------------------------------------

  private commit(): void {
    this.committed = true;
    const headers = clientResponseHeaders(this.headers!);
    if (this.ctx.draining) headers.connection = 'close';
    this.res.writeHead(this.status, headers);
  }

  /** Writes the whole events a chunk completes, as metered and guarded. */
  private forwardEvents(chunk: Buffer): void {
    const out: Buffer[] = [];
    this.splitter!.push(chunk, (event) => this.pass(event, out));
    if (!this.ttftObserved && this.meter!.firstToken) this.observeFirstToken();
    if (this.streamGuard?.blocked) return this.blockStream();
    this.write(out);
  }

  /** One provider event: metered, translated when the provider is of the other shape, then guarded, into `out`. */
  private pass(event: Buffer, out: Buffer[]): void {
    if (!this.meter!.onEvent(event)) return;
    if (this.translator) {
      for (const e of this.translator.onEvent(event)) this.guard(e, out);
      return;
    }
    this.guard(event, out);
  }

  /** One event in the client's shape, through the output guard into `out`. */
  private guard(event: Buffer, out: Buffer[]): void {
    const guard = this.streamGuard;
    if (!guard) {
      out.push(event);
      return;
    }
    if (guard.blocked) return;
    for (const e of guard.onEvent(event)) out.push(e);
    const decisions = guard.takeDecisions();
    if (decisions.length) this.decide(decisions);
  }

  /** Text the output guard still holds (a stream that ends or is cut), released redacted. */
  private releaseHeld(out: Buffer[]): void {
    const guard = this.streamGuard;
    if (!guard || guard.blocked) return;
    for (const e of guard.end()) out.push(e);
    const decisions = guard.takeDecisions();
    if (decisions.length) this.decide(decisions);
  }

  private write(out: Buffer[]): void {
    if (!out.length) return;
    const data = out.length === 1 ? out[0] : Buffer.concat(out);
    if (this.streamed) this.streamed.update(data);
    else this.capturedStream?.push(data);
    if (this.cacheKey) (this.sent ??= []).push(data);
    this.res.write(data);
  }

  /** An output rule set to block fired mid-stream: nothing more of the answer reaches the client. */
  private blockStream(): void {
    const blocked = this.streamGuard!.blocked!;
    this.cutStream(ErrorCode.guardrailBlocked, `the answer was blocked by guardrail ${blocked.rule}: ${blocked.reason}`, 422);
  }

  private observeFirstToken(): void {
    this.ttftObserved = true;
    this.metersFor().ttft.observe((performance.now() - this.startedAt) / 1000);
  }

  /** Ends a committed stream early with an error event the agent's SDK raises as an error. */
  private cutStream(code: string, message: string, metricCode: number): void {
    this.call?.abort();
    this.call = null;
    this.phase = Phase.None;
    if (!this.res.writableEnded) {
      if (this.meter) {
        const out: Buffer[] = [];
        this.releaseHeld(out);
        this.write(out);
        this.res.write(this.dialect.errorEvent(code, message));
      }
      this.res.end();
    }
    this.complete(metricCode);
  }

  // ---- timeouts ------------------------------------------------------------------------------

  private receiving(): void {
    this.phase = Phase.Receiving;
    this.phaseSince = performance.now();
    this.seenActivity = this.activity;
  }

  /**
   * Called by the runtime's ticker with the current `performance.now()`: applies the first-byte,
   * idle and total timeouts. Accurate to one tick.
   */
  checkTimeouts(now: number): void {
    if (this.finished) return;
    const t = this.ctx.config.timeouts;
    if (now - this.startedAt >= t.totalMs) return this.onDeadline();
    if (this.phase === Phase.AwaitingFirstByte) {
      if (now - this.phaseSince >= t.firstByteMs) this.onTimeout('first');
    } else if (this.phase === Phase.Receiving) {
      if (this.activity !== this.seenActivity) {
        this.seenActivity = this.activity;
        this.phaseSince = now;
      } else if (now - this.phaseSince >= t.idleMs) {
        this.onTimeout('idle');
      }
    }
  }

  private onTimeout(phase: 'first' | 'idle'): void {
    this.phase = Phase.None;
    if (!this.committed) {
      this.call?.abort();
      const ms = phase === 'first' ? this.ctx.config.timeouts.firstByteMs : this.ctx.config.timeouts.idleMs;
      return this.attemptFailed('timeout', `no ${phase === 'first' ? 'response' : 'data'} within ${ms} ms`);
    }
    this.provider?.health.failed(Date.now());
    this.cutStream(ErrorCode.upstreamTimeout, `the provider sent nothing for ${this.ctx.config.timeouts.idleMs} ms mid-stream`, 504);
  }

  private onDeadline(): void {
    const message = `the request did not complete within ${this.ctx.config.timeouts.totalMs} ms`;
    if (this.committed) return this.cutStream(ErrorCode.upstreamTimeout, message, 504);
    this.call?.abort();
    this.call = null;
    this.abandonTrial();
    (this.failures ??= []).push(message);
    this.lastTimedOut = true;
    this.failAll();
  }

  // ---- endings ----------------------------------------------------------------------------------

  private allInCooldown(now: number): void {
    const wait = Math.min(...this.candidates.map((p) => p.health.msUntilTrial(now)));
    const seconds = Math.max(1, Math.ceil(wait / 1000));
    this.reject(503, ErrorCode.upstreamUnavailable, `every ${this.dialect.shape} provider is cooling down after repeated failures; retry in ${seconds} s`, {
      'retry-after': String(seconds),
    });
  }

  private failAll(): void {
    const timedOut = this.lastTimedOut;
    const summary = this.failures ? this.failures.join('; ') : `no ${this.dialect.shape} provider is configured`;
    if (timedOut) this.reject(504, ErrorCode.upstreamTimeout, `upstream timed out after ${this.attempts} attempt(s): ${summary}`);
    else this.reject(502, ErrorCode.upstreamUnavailable, `all providers failed after ${this.attempts} attempt(s): ${summary}`);
  }

  /** Answers with an error of our own, before anything was committed. */
  private reject(status: number, code: string, message: string, extra?: Record<string, string>): void {
    if (this.finished) return;
    if (!this.res.headersSent) {
      const body = this.dialect.errorBody(status, code, message);
      this.res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'x-cdk-agents-error': code,
        // The runtime already retried within its bounds: the SDK's own retries would multiply them.
        'x-should-retry': 'false',
        ...extra,
      });
      this.res.end(body);
    }
    this.committed = true;
    this.complete(status);
  }

  private onClientClose(): void {
    if (this.finished) return;
    // The client went away before the answer was complete: stop paying for it.
    this.call?.abort();
    this.call = null;
    this.abandonTrial();
    this.complete(CLIENT_CLOSED);
  }

  private abandonTrial(): void {
    this.trialHolder?.health.abandoned();
    this.trialHolder = null;
  }

  private metersFor(): RequestMeters {
    const model = this.servedModel ?? this.llm?.model ?? NO_MODEL;
    return this.ctx.metrics.for(this.identity.agent, this.cacheHit ? CACHE_PROVIDER : (this.provider?.name ?? NO_MODEL), model);
  }

  /** Meters, settles and audits the request once, whatever ended it. */
  private complete(code: number): void {
    if (this.finished) return;
    this.finished = true;
    this.phase = Phase.None;
    if (this.backoff) clearTimeout(this.backoff);
    this.ctx.inFlight.delete(this);
    this.ctx.metrics.inFlightOf(this.identity.agent).value--;

    const meters = this.metersFor();
    meters.request(code).inc();
    meters.duration.observe((performance.now() - this.startedAt) / 1000);
    const usage = this.llm && this.provider ? this.usage(code) : null;
    let cost = 0;
    if (usage) {
      if (usage.estimated) meters.estimated.inc();
      const price = this.ctx.prices.lookup(this.servedModel ?? this.llm!.model) ?? this.ctx.prices.lookup(this.llm!.model);
      if (!price) meters.unpriced.inc();
      cost = price ? costUsd(price, usage) : 0;
      recordUsage(meters, usage, cost);
    }
    if (this.reservation) {
      const tokens = usage ? usage.input + usage.output + usage.cacheRead + usage.cacheWrite : 0;
      this.ctx.policy.settle(this.reservation, { tokens, usd: cost });
      this.reservation = null;
    }
    this.recordRequest(code, usage, cost);
    this.store(code, usage);
  }

  /** Keeps a complete, successful answer in the cache (never a cut stream or a guarded refusal). */
  private store(code: number, usage: (TokenUsage & { estimated: boolean }) | null): void {
    if (!this.cacheKey || this.cacheHit || code !== 200 || this.status !== 200 || !this.sent || usage?.estimated) return;
    const type = this.headers?.['content-type'];
    this.ctx.cache!.set(this.cacheKey, { status: 200, contentType: typeof type === 'string' ? type : 'application/json', body: Buffer.concat(this.sent) });
  }

  // ---- decisions and audit --------------------------------------------------------------------

  /** Counts, audits and remembers guardrail decisions. */
  private decide(decisions: readonly GuardDecision[]): void {
    for (const d of decisions) {
      this.ctx.metrics.guardrailDecisions.child(d.direction, d.rule, d.action).inc();
      this.ctx.audit.record({
        kind: 'guardrail.decision',
        ...this.identityFields(),
        direction: d.direction,
        [AuditAttr.decision]: DECISION_OF[d.action],
        [AuditAttr.rule]: d.rule,
        [AuditAttr.reason]: d.reason,
        score: d.score,
        matches: d.count,
      });
      this.note(DECISION_OF[d.action], d.rule, d.reason);
    }
  }

  private note(decision: AuditDecision, rule: string, reason: string): void {
    if (SEVERITY[decision] <= SEVERITY[this.decision]) return;
    this.decision = decision;
    this.decisionRule = rule;
    this.decisionReason = reason;
  }

  private identityFields(): Record<string, unknown> {
    const identity = this.identity;
    return {
      [AuditAttr.caller]: this.ctx.config.mode === 'gateway' ? identity.agent : undefined,
      [AuditAttr.user]: identity.user,
      [AuditAttr.run]: identity.run,
      [AuditAttr.requestModel]: this.llm?.model,
    };
  }

  /**
   * The request's own audit record: who, what, how much, and what was decided. Written as JSON
   * text directly (AuditLog.recordMembers): it is made on every request.
   */
  private recordRequest(code: number, usage: (TokenUsage & { estimated: boolean }) | null, cost: number): void {
    const audit = this.ctx.audit;
    const llm = this.llm;
    let m = llm ? '"kind":"llm.request","gen_ai.operation.name":"chat"' : '"kind":"http.request"';
    const identity = this.identity;
    if (this.ctx.config.mode === 'gateway') m += `,"${AuditAttr.caller}":${JSON.stringify(identity.agent)}`;
    if (identity.user !== undefined) m += `,"${AuditAttr.user}":${JSON.stringify(identity.user)}`;
    if (identity.run !== undefined) m += `,"${AuditAttr.run}":${JSON.stringify(identity.run)}`;
    if (llm) m += `,"${AuditAttr.requestModel}":${JSON.stringify(llm.model)},"stream":${llm.stream}`;
    else m += `,"http.request.method":${JSON.stringify(this.req.method)},"url.path":${JSON.stringify(this.req.url)}`;
    if (this.provider) m += `,"${AuditAttr.provider}":${JSON.stringify(this.provider.name)}`;
    if (this.servedModel !== undefined) m += `,"${AuditAttr.responseModel}":${JSON.stringify(this.servedModel)}`;
    if (this.cacheHit) m += ',"cache":"hit"';
    m += `,"attempts":${this.attempts},"${AuditAttr.status}":${code},"${AuditAttr.latencyMs}":${Math.round(performance.now() - this.startedAt)}`;
    m += `,"${AuditAttr.decision}":"${this.decision}"`;
    if (this.decisionRule !== undefined) m += `,"${AuditAttr.rule}":${JSON.stringify(this.decisionRule)},"${AuditAttr.reason}":${JSON.stringify(this.decisionReason)}`;
    if (usage) {
      m +=
        `,"${AuditAttr.inputTokens}":${usage.input + usage.cacheRead + usage.cacheWrite},"${AuditAttr.outputTokens}":${usage.output}` +
        `,"${AuditAttr.cacheReadTokens}":${usage.cacheRead},"${AuditAttr.cacheWriteTokens}":${usage.cacheWrite}` +
        `,"usage_estimated":${usage.estimated},"${AuditAttr.costUsd}":${cost}`;
    }
    if (llm) {
      m += `,"${AuditAttr.inputMessages}":${JSON.stringify(audit.content(llm.raw))}`;
      let output: string | undefined;
      if (this.answer) output = audit.content(this.answer);
      else if (this.streamed) output = `sha256:${this.streamed.digest('hex')}`;
      else if (this.capturedStream) output = Buffer.concat(this.capturedStream).toString('utf8');
      if (output !== undefined) m += `,"${AuditAttr.outputMessages}":${JSON.stringify(output)}`;
    }
    if (this.failures) m += `,"failures":${JSON.stringify(this.failures)}`;
    audit.recordMembers(m);
  }

  /** The usage to bill: reported by the provider, or estimated when it reported none. */
  private usage(code: number): (TokenUsage & { estimated: boolean }) | null {
    if (this.meter) {
      if (this.meter.complete) return { ...this.meter.reported!, estimated: false };
      const partial = this.meter.reported;
      return {
        input: partial ? partial.input : estimateInputTokens(this.llm!.body),
        output: Math.max(partial?.output ?? 0, this.meter.outputEstimate),
        cacheRead: partial?.cacheRead ?? 0,
        cacheWrite: partial?.cacheWrite ?? 0,
        estimated: true,
      };
    }
    const body = this.answer;
    if (body && this.status >= 200 && this.status < 300) {
      // Billed from the provider's answer even when a guardrail changed or blocked what the client got.
      const reported = (this.foreign ? DIALECTS[this.provider!.shape] : this.dialect).usageFromBody(body);
      if (reported) return { ...reported, estimated: false };
      return { input: estimateInputTokens(this.llm!.body), output: tokensForBytes(body.length), cacheRead: 0, cacheWrite: 0, estimated: true };
    }
    if (code === CLIENT_CLOSED || (code >= 500 && this.status >= 200 && this.status < 300)) {
      // Gone or cut before the answer was whole: the prompt was sent, so bill what it cost.
      return { input: estimateInputTokens(this.llm!.body), output: tokensForBytes(this.bodyBytes), cacheRead: 0, cacheWrite: 0, estimated: true };
    }
    return null;
  }

  /** Cuts the exchange at the shutdown deadline. */
  terminate(): void {
    if (this.finished) return;
    if (this.committed) return this.cutStream(ErrorCode.upstreamUnavailable, 'the runtime is shutting down', 503);
    this.call?.abort();
    this.call = null;
    this.abandonTrial();
    this.reject(503, ErrorCode.upstreamUnavailable, 'the runtime is shutting down; retry', { 'retry-after': '1' });
  }
}

function asksForUsage(body: Record<string, unknown>): boolean {
  const options = body.stream_options as { include_usage?: unknown } | undefined;
  return options?.include_usage === true;
}

function pathOnly(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/**
 * The stuck-loop detector's fingerprint of a request: its model and newest message (an agent
 * stuck in a loop sends the same new turn again and again, whatever the history before it).
 */
function lastTurnHash(body: Record<string, unknown>): string {
  const messages = body.messages as unknown[];
  return hashOnce('sha1', `${String(body.model)}\u0000${JSON.stringify(messages[messages.length - 1])}`, 'base64');
}

/** Codes a gateway answers with on its own: decisions to pass to the agent, not provider failures. */
const POLICY_CODES = new Set(['budget_exceeded', 'rate_limited', 'loop_detected', 'budget_store_unavailable', 'guardrail_blocked', 'unauthenticated']);

function isPolicyAnswer(headers: ResponseHeaders): boolean {
  const code = headers['x-cdk-agents-error'];
  return typeof code === 'string' && POLICY_CODES.has(code);
}

/** The message of a provider's JSON error body, or its first bytes. */
function upstreamMessage(body: Buffer): string {
  const text = body.toString('utf8', 0, Math.min(body.length, 2048));
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown; type?: unknown } | string; message?: unknown };
    const err = parsed.error;
    const message = typeof err === 'object' && err ? err.message : typeof err === 'string' ? err : parsed.message;
    if (typeof message === 'string') return message.slice(0, 300);
  } catch {
    // not JSON
  }
  return text.slice(0, 200).replace(/\s+/g, ' ').trim();
}
