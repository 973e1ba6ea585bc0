/**
 * Model prices in USD per million tokens, and the cost arithmetic the runtime meters with.
 *
 * Input is billed for tokens that were neither read from nor written to a prompt cache;
 * cache reads and writes have their own prices (OpenAI reports cache reads only, Anthropic both).
 */

/** USD per million tokens. */
export interface ModelPrice {
  readonly input: number;
  readonly output: number;
  /** @default - the input price */
  readonly cacheRead?: number;
  /** @default - the input price */
  readonly cacheWrite?: number;
}

/** Token counts of one request, in the four metered types. `input` excludes cached tokens. */
export interface TokenUsage {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
}

export type PriceTable = Readonly<Record<string, ModelPrice>>;

/** The date the default table was last checked against the providers' price pages. */
export const DEFAULT_PRICES_AS_OF = '2026-11-01';

/**
 * List prices of current OpenAI and Anthropic models. A model id with a date or version
 * suffix (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`) takes the price of its longest
 * listed prefix. Override or extend per deployment with the config's `prices`.
 */
export const DEFAULT_PRICES: PriceTable = {
  // OpenAI
  'gpt-5': { input: 1.25, output: 10, cacheRead: 0.125 },
  'gpt-5-mini': { input: 0.25, output: 2, cacheRead: 0.025 },
  'gpt-5-nano': { input: 0.05, output: 0.4, cacheRead: 0.005 },
  'gpt-4.1': { input: 2, output: 8, cacheRead: 0.5 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6, cacheRead: 0.1 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4, cacheRead: 0.025 },
  'gpt-4o': { input: 2.5, output: 10, cacheRead: 1.25 },
  'gpt-4o-mini': { input: 0.15, output: 0.6, cacheRead: 0.075 },
  'o1': { input: 15, output: 60, cacheRead: 7.5 },
  'o3': { input: 2, output: 8, cacheRead: 0.5 },
  'o3-mini': { input: 1.1, output: 4.4, cacheRead: 0.55 },
  'o4-mini': { input: 1.1, output: 4.4, cacheRead: 0.275 },
  // Anthropic (cache writes at the 5-minute TTL price)
  'claude-opus-4-5': { input: 5, output: 25, cacheRead: 0.5, cacheWrite: 6.25 },
  'claude-opus-4-1': { input: 15, output: 75, cacheRead: 1.5, cacheWrite: 18.75 },
  'claude-opus-4': { input: 15, output: 75, cacheRead: 1.5, cacheWrite: 18.75 },
  'claude-sonnet-4-5': { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 },
  'claude-sonnet-4': { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 },
  'claude-3-7-sonnet': { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 },
  'claude-haiku-4-5': { input: 1, output: 5, cacheRead: 0.1, cacheWrite: 1.25 },
  'claude-3-5-haiku': { input: 0.8, output: 4, cacheRead: 0.08, cacheWrite: 1 },
};

/**
 * Finds a model's price: the exact id first, then the longest listed id that is a prefix of
 * it followed by `-` (a dated or versioned variant). Returns undefined for an unpriced model.
 */
export function findPrice(table: PriceTable, model: string): ModelPrice | undefined {
  const exact = table[model];
  if (exact) return exact;
  let best: string | undefined;
  for (const id of Object.keys(table)) {
    if (model.length > id.length && model.startsWith(id) && model.charCodeAt(id.length) === 45 /* - */) {
      if (!best || id.length > best.length) best = id;
    }
  }
  return best === undefined ? undefined : table[best];
}

/** Cost of one request in USD. */
export function costUsd(price: ModelPrice, usage: TokenUsage): number {
  return (
    (usage.input * price.input +
      usage.output * price.output +
      usage.cacheRead * (price.cacheRead ?? price.input) +
      usage.cacheWrite * (price.cacheWrite ?? price.input)) /
    1_000_000
  );
}

/** The default table with per-deployment overrides laid over it. */
export function mergePrices(overrides: PriceTable | undefined): PriceTable {
  return overrides ? { ...DEFAULT_PRICES, ...overrides } : DEFAULT_PRICES;
}
