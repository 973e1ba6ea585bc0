/**
 * Price lookups for the request path: the prefix search runs once per distinct model id.
 */
import { findPrice, mergePrices, type ModelPrice, type PriceTable } from '../../spec/prices';

export class PriceBook {
  private readonly table: PriceTable;
  private readonly cache = new Map<string, ModelPrice | null>();

  constructor(overrides: PriceTable | undefined) {
    this.table = mergePrices(overrides);
  }

  lookup(model: string): ModelPrice | undefined {
    let price = this.cache.get(model);
    if (price === undefined) {
      price = findPrice(this.table, model) ?? null;
      // Bounded: ids come from requests, and an agent could send any number of them.
      if (this.cache.size < 10_000) this.cache.set(model, price);
    }
    return price ?? undefined;
  }
}
