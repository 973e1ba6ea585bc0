/**
 * Requests with costs that are easy to reason about, for budget tests: a model priced at $1 per
 * thousand tokens (input and output alike) and a fixed max_tokens.
 */
import type OpenAI from 'openai';
import { estimateInputTokens } from '../../lib/runtime/metering/estimate';
import type { RedisServer } from './redis';

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

/**
 * Proves that `user`'s tokens budget of `limit` holds exactly `billed` tokens, from the outside:
 * a request reserving one token more than what is left is refused, and one reserving exactly
 * what is left is admitted. So no reservation of an earlier request is still held (a leak), and
 * none was given back twice (an under-count). The admitted request's own usage adds to the budget.
 */
export async function expectBudgetHolds(openai: OpenAI, user: string, limit: number, billed: number): Promise<void> {
  const messages = [{ role: 'user' as const, content: 'x' }];
  const rest = limit - billed - estimateInputTokens({ messages });
  const ask = (maxTokens: number) => outcome(openai.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: maxTokens, messages }, { headers: { 'x-agent-user': user } }));
  expect({ billed, oneTokenOver: await ask(rest + 1) }).toEqual({ billed, oneTokenOver: '429 budget_exceeded' });
  expect({ billed, exactlyWhatIsLeft: await ask(rest) }).toEqual({ billed, exactlyWhatIsLeft: 200 });
}

/** What a user's tokens budget holds in Redis (default key prefix), 0 when it has no key. */
export function redisTokensUsed(redis: RedisServer, user: string, agent = 'test-agent'): number {
  const keys = redis.cli('KEYS', `cdka:b:user:${agent}:${user}:tokens:*`).split('\n').filter(Boolean);
  expect(keys.length).toBeLessThanOrEqual(1);
  return keys.length ? Number(redis.cli('GET', keys[0])) : 0;
}
