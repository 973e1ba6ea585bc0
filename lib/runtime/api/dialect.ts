/**
 * What the proxy needs to know about one wire API: how to check a request, where usage sits
 * in its answers, and how its errors look. One implementation per API shape.
 */
import type { ApiShape } from '../../spec/providers';
import type { TokenUsage } from '../../spec/prices';

/** A request the API would reject: answered with 400 before anything goes upstream. */
export interface RequestProblem {
  readonly message: string;
  /** The offending body field. */
  readonly param?: string;
}

/** Watches a streamed answer event by event. */
export interface StreamMeter {
  /** Inspects one whole event; returns false to keep it from the client. */
  onEvent(event: Buffer): boolean;
  /** Usage as reported by the provider; null until its usage event(s) arrived. */
  readonly reported: TokenUsage | null;
  /** True once the provider's final usage arrived (the counts will not change). */
  readonly complete: boolean;
  /** True once the first generated content (text, tool call) went by. */
  readonly firstToken: boolean;
  /** Output tokens estimated from the streamed text so far. */
  readonly outputEstimate: number;
}

export interface ApiDialect {
  readonly shape: ApiShape;
  /** Checks a parsed JSON body the way the provider would, or returns null when it is fine. */
  checkRequest(body: Record<string, unknown>): RequestProblem | null;
  /** Usage from a whole (non-streamed) response body, or null when it has none. */
  usageFromBody(body: Buffer): TokenUsage | null;
  /** A meter for a streamed answer. `dropInjectedUsage`: the client did not ask for the usage event. */
  newStreamMeter(dropInjectedUsage: boolean): StreamMeter;
  /** A JSON error body in this API's shape. `code` is the stable code agents branch on. */
  errorBody(status: number, code: string, message: string, param?: string): string;
  /** The same error as a stream event, for failures after the stream has started. */
  errorEvent(code: string, message: string): string;
}

/** The error type the APIs use for a rejected request. */
export const INVALID_REQUEST = 'invalid_request_error';
