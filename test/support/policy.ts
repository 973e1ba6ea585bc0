/**
 * Requests with costs that are easy to reason about, for budget tests: a model priced at $1 per
 * thousand tokens (input and output alike) and a fixed max_tokens.
 */
import { estimateInputTokens } from '../../lib/runtime/metering/estimate';

export const MODEL = 'test-model';
export const PRICES = { [MODEL]: { input: 1_000, output: 1_000 } };
export const MAX_TOKENS = 100;

export function chatBody(content: string) {
  return { model: MODEL, max_tokens: MAX_TOKENS, messages: [{ role: 'user' as const, content }] };
}

/** Tokens (and thousandths of a dollar) the sidecar reserves for chatBody(content): its prompt estimate plus max_tokens. */
export function reservedTokens(content: string): number {
  return estimateInputTokens(chatBody(content)) + MAX_TOKENS;
}

/** The HTTP status of a call, or "status code" of the API error it raised. */
export function outcome(p: Promise<unknown>): Promise<number | string> {
  return p.then(
    () => 200,
    (e: { status?: number; code?: string }) => `${e.status} ${e.code}`,
  );
}
