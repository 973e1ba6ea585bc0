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

/** When the default table was last checked against the providers' published prices. */
export const DEFAULT_PRICES_AS_OF = '2026-11';

/**
 * List prices (standard tier, short context) of current OpenAI and Anthropic models. A dated
 * snapshot id (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`) or `-latest` alias takes the
 * price of its base id; any other unknown id is unpriced. Override or extend per deployment
 * with the config's `prices`: list prices change, and negotiated ones differ.
 */
export const DEFAULT_PRICES: PriceTable = {
  // OpenAI
  'gpt-5.5': { input: 5, output: 30, cacheRead: 0.5 },
  'gpt-5.5-pro': { input: 30, output: 180 },
  'gpt-5.4': { input: 2.5, output: 15, cacheRead: 0.25 },
  'gpt-5.4-mini': { input: 0.75, output: 4.5, cacheRead: 0.075 },
  'gpt-5.4-nano': { input: 0.2, output: 1.25, cacheRead: 0.02 },
  'gpt-5.4-pro': { input: 30, output: 180 },
  'gpt-5': { input: 1.25, output: 10, cacheRead: 0.125 },
  'gpt-5-mini': { input: 0.25, output: 2, cacheRead: 0.025 },
  'gpt-5-nano': { input: 0.05, output: 0.4, cacheRead: 0.005 },
  'gpt-4.1': { input: 2, output: 8, cacheRead: 0.5 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6, cacheRead: 0.1 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4, cacheRead: 0.025 },
  'gpt-4o': { input: 2.5, output: 10, cacheRead: 1.25 },
  'gpt-4o-mini': { input: 0.15, output: 0.6, cacheRead: 0.075 },
  'o3': { input: 2, output: 8, cacheRead: 0.5 },
  'o4-mini': { input: 1.1, output: 4.4, cacheRead: 0.275 },
  // Anthropic (cache writes at the 5-minute TTL price)
  'claude-fable-5-1': { input: 10, output: 50, cacheRead: 0.25, cacheWrite: 12.5 },
  'claude-mythos-5-1': { input: 10, output: 50, cacheRead: 0.25, cacheWrite: 12.5 },
  'claude-fable-5': { input: 10, output: 50, cacheRead: 1, cacheWrite: 12.5 },
  'claude-mythos-5': { input: 10, output: 50, cacheRead: 1, cacheWrite: 12.5 },
  'claude-opus-5-5': { input: 4, output: 20, cacheRead: 0.2, cacheWrite: 5 },
  'claude-opus-5': { input: 5, output: 25, cacheRead: 0.5, cacheWrite: 6.25 },
  'claude-opus-4-8': { input: 5, output: 25, cacheRead: 0.5, cacheWrite: 6.25 },
  'claude-opus-4-7': { input: 5, output: 25, cacheRead: 0.5, cacheWrite: 6.25 },
  'claude-opus-4-6': { input: 5, output: 25, cacheRead: 0.5, cacheWrite: 6.25 },
  'claude-opus-4-5': { input: 5, output: 25, cacheRead: 0.5, cacheWrite: 6.25 },
  'claude-opus-4-1': { input: 15, output: 75, cacheRead: 1.5, cacheWrite: 18.75 },
  'claude-sonnet-5-5': { input: 2, output: 10, cacheRead: 0.1, cacheWrite: 2.5 },
  'claude-sonnet-5': { input: 2, output: 10, cacheRead: 0.2, cacheWrite: 2.5 },
  'claude-sonnet-4-6': { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 },
  'claude-sonnet-4-5': { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 },
  'claude-sonnet-4': { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 },
  // Haiku 5.5 costs five times as much past 100k prompt tokens; this is the short-prompt price.
  'claude-haiku-5-5': { input: 0.1, output: 0.5, cacheRead: 0.01, cacheWrite: 0.125 },
  'claude-haiku-4-5': { input: 1, output: 5, cacheRead: 0.1, cacheWrite: 1.25 },
};

/** `-20250929`, `-2024-08-06`, `-latest`: suffixes naming a snapshot of the same model. */
const SNAPSHOT_SUFFIX = /-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$/;

/**
 * Finds a model's price: the exact id, or the base id of a dated snapshot or `-latest` alias.
 * Returns undefined for an unpriced model (a version suffix like `-5-2` is a different model).
 */
export function findPrice(table: PriceTable, model: string): ModelPrice | undefined {
  // Own properties only: a model named "constructor" must not find Object.prototype's.
  if (Object.hasOwn(table, model)) return table[model];
  const m = SNAPSHOT_SUFFIX.exec(model);
  const base = m ? model.slice(0, m.index) : undefined;
  return base !== undefined && Object.hasOwn(table, base) ? table[base] : undefined;
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
