/**
 * Model prices: exact ids and dated snapshots find their price, other ids are unpriced; the
 * cost arithmetic; per-deployment overrides.
 */
import fc from 'fast-check';
import { costUsd, DEFAULT_PRICES, findPrice, mergePrices, type ModelPrice, type TokenUsage } from '../../lib/spec/prices';

const ids = Object.keys(DEFAULT_PRICES);

describe('findPrice', () => {
  test('exact ids', () => {
    for (const id of ids) expect(findPrice(DEFAULT_PRICES, id)).toBe(DEFAULT_PRICES[id]);
    expect(findPrice(DEFAULT_PRICES, 'gpt-4o')).toEqual({ input: 2.5, output: 10, cacheRead: 1.25 });
  });

  test.each([
    ['claude-sonnet-4-5-20250929', 'claude-sonnet-4-5'],
    ['claude-haiku-4-5-20251001', 'claude-haiku-4-5'],
    ['claude-opus-4-1-20250805', 'claude-opus-4-1'],
    ['gpt-4o-2024-08-06', 'gpt-4o'],
    ['gpt-4o-mini-2024-07-18', 'gpt-4o-mini'],
    ['gpt-4.1-2025-04-14', 'gpt-4.1'],
    ['o3-2025-04-16', 'o3'],
    ['claude-sonnet-4-5-latest', 'claude-sonnet-4-5'],
    ['gpt-5-latest', 'gpt-5'],
  ])('snapshot %s takes the price of %s', (snapshot, base) => {
    expect(findPrice(DEFAULT_PRICES, snapshot)).toBe(DEFAULT_PRICES[base]);
  });

  test('a longer id is a different model, not its prefix', () => {
    expect(findPrice(DEFAULT_PRICES, 'gpt-4o-mini')).toBe(DEFAULT_PRICES['gpt-4o-mini']);
    expect(findPrice(DEFAULT_PRICES, 'gpt-4o-mini')).not.toEqual(DEFAULT_PRICES['gpt-4o']);
    expect(findPrice(DEFAULT_PRICES, 'gpt-5-mini')).toBe(DEFAULT_PRICES['gpt-5-mini']);
  });

  test.each([
    'claude-fable-5-2', // a version suffix names another model
    'claude-sonnet-4-7',
    'gpt-4o-audio-preview',
    'gpt-4o-2024', // not a whole date
    'gpt-4o-20240806x',
    'gpt-4o-240806',
    'gpt-4o-2024-08-06-extra',
    'gpt-4o-2024-08-06-latest', // one suffix only
    'GPT-4O',
    'latest',
    '-latest',
    '',
    'toString',
    '__proto__',
    'constructor',
  ])('%s is unpriced', (model) => {
    expect(findPrice(DEFAULT_PRICES, model)).toBeUndefined();
  });

  test('property: any dated snapshot of a priced id takes its price', () => {
    const dateArb = fc.date({ min: new Date('2020-01-01T00:00:00Z'), max: new Date('2035-12-31T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10));
    fc.assert(
      fc.property(fc.constantFrom(...ids), dateArb, fc.constantFrom('compact', 'dashed', 'latest'), (id, date, style) => {
        const suffix = style === 'compact' ? date.replace(/-/g, '') : style === 'dashed' ? date : 'latest';
        expect(findPrice(DEFAULT_PRICES, `${id}-${suffix}`)).toBe(DEFAULT_PRICES[id]);
      }),
    );
  });

  test('property: an id extended by anything but a snapshot suffix is unpriced', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ids),
        fc.stringMatching(/^-[a-z0-9.-]{1,12}$/).filter((s) => !/-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$/.test(s)),
        (id, extra) => {
          fc.pre(!(`${id}${extra}` in DEFAULT_PRICES));
          expect(findPrice(DEFAULT_PRICES, `${id}${extra}`)).toBeUndefined();
        },
      ),
    );
  });
});

describe('costUsd', () => {
  const usage = (u: Partial<TokenUsage>): TokenUsage => ({ input: 0, output: 0, cacheRead: 0, cacheWrite: 0, ...u });

  test('per-million prices for each token type', () => {
    const gpt4o = DEFAULT_PRICES['gpt-4o']; // 2.5 in, 10 out, 1.25 cache read
    expect(costUsd(gpt4o, usage({ input: 1_000_000 }))).toBeCloseTo(2.5, 12);
    expect(costUsd(gpt4o, usage({ output: 1_000_000 }))).toBeCloseTo(10, 12);
    expect(costUsd(gpt4o, usage({ cacheRead: 1_000_000 }))).toBeCloseTo(1.25, 12);
    expect(costUsd(gpt4o, usage({ input: 1_000_000, output: 500_000, cacheRead: 2_000_000 }))).toBeCloseTo(2.5 + 5 + 2.5, 12);

    const sonnet = DEFAULT_PRICES['claude-sonnet-4-5']; // 3 in, 15 out, 0.3 read, 3.75 write
    expect(costUsd(sonnet, { input: 1200, output: 350, cacheRead: 10_000, cacheWrite: 2_000 })).toBeCloseTo(
      (1200 * 3 + 350 * 15 + 10_000 * 0.3 + 2_000 * 3.75) / 1e6,
      12,
    );
    expect(costUsd(sonnet, usage({}))).toBe(0);
  });

  test('cache reads and writes default to the input price when the model has none', () => {
    const price: ModelPrice = { input: 3, output: 15 };
    expect(costUsd(price, usage({ cacheRead: 1_000_000 }))).toBeCloseTo(3, 12);
    expect(costUsd(price, usage({ cacheWrite: 1_000_000 }))).toBeCloseTo(3, 12);
    // gpt-5.5-pro in the table has no cache prices.
    expect(costUsd(DEFAULT_PRICES['gpt-5.5-pro'], usage({ cacheRead: 1_000_000, cacheWrite: 1_000_000 }))).toBeCloseTo(60, 12);
    // gpt-4o has a cache-read price but no cache-write price.
    expect(costUsd(DEFAULT_PRICES['gpt-4o'], usage({ cacheWrite: 1_000_000 }))).toBeCloseTo(2.5, 12);
  });

  test('a cache price of 0 is a price, not a missing one', () => {
    expect(costUsd({ input: 5, output: 10, cacheRead: 0, cacheWrite: 0 }, usage({ cacheRead: 1_000_000, cacheWrite: 1_000_000 }))).toBe(0);
  });

  test('property: the sum of the four parts, linear in the usage', () => {
    const priceArb = fc.record(
      {
        input: fc.double({ min: 0, max: 200, noNaN: true }),
        output: fc.double({ min: 0, max: 200, noNaN: true }),
        cacheRead: fc.double({ min: 0, max: 200, noNaN: true }),
        cacheWrite: fc.double({ min: 0, max: 200, noNaN: true }),
      },
      { requiredKeys: ['input', 'output'] },
    );
    const usageArb = fc.record({ input: fc.nat(5_000_000), output: fc.nat(1_000_000), cacheRead: fc.nat(5_000_000), cacheWrite: fc.nat(5_000_000) });
    fc.assert(
      fc.property(priceArb, usageArb, usageArb, (price, a, b) => {
        const expected =
          (a.input * price.input + a.output * price.output + a.cacheRead * (price.cacheRead ?? price.input) + a.cacheWrite * (price.cacheWrite ?? price.input)) / 1e6;
        const cost = costUsd(price, a);
        expect(cost).toBeGreaterThanOrEqual(0);
        expect(Math.abs(cost - expected)).toBeLessThanOrEqual(1e-9 * Math.max(1, expected));
        const sum = { input: a.input + b.input, output: a.output + b.output, cacheRead: a.cacheRead + b.cacheRead, cacheWrite: a.cacheWrite + b.cacheWrite };
        const together = costUsd(price, sum);
        expect(Math.abs(together - (cost + costUsd(price, b)))).toBeLessThanOrEqual(1e-9 * Math.max(1, together));
      }),
    );
  });
});

describe('mergePrices', () => {
  test('without overrides, the default table', () => {
    expect(mergePrices(undefined)).toBe(DEFAULT_PRICES);
  });

  test('overrides replace whole entries, additions are found, the rest is untouched', () => {
    const before = JSON.stringify(DEFAULT_PRICES);
    const merged = mergePrices({
      'gpt-4o': { input: 1, output: 2 },
      'my-finetune': { input: 0.5, output: 0.5, cacheRead: 0.1 },
    });
    expect(merged['gpt-4o']).toEqual({ input: 1, output: 2 });
    // The negotiated price has no cache-read price: cache reads cost the overridden input price.
    expect(costUsd(findPrice(merged, 'gpt-4o')!, { input: 0, output: 0, cacheRead: 1_000_000, cacheWrite: 0 })).toBeCloseTo(1, 12);
    expect(findPrice(merged, 'gpt-4o-2024-08-06')).toEqual({ input: 1, output: 2 });
    expect(findPrice(merged, 'my-finetune')).toEqual({ input: 0.5, output: 0.5, cacheRead: 0.1 });
    expect(findPrice(merged, 'my-finetune-latest')).toEqual({ input: 0.5, output: 0.5, cacheRead: 0.1 });
    expect(merged['gpt-4o-mini']).toBe(DEFAULT_PRICES['gpt-4o-mini']);
    expect(Object.keys(merged).sort()).toEqual([...ids, 'my-finetune'].sort());
    // The defaults themselves are not modified.
    expect(JSON.stringify(DEFAULT_PRICES)).toBe(before);
    expect(DEFAULT_PRICES['gpt-4o']).toEqual({ input: 2.5, output: 10, cacheRead: 1.25 });
  });

  test('an override for a dated snapshot wins over its base id', () => {
    const merged = mergePrices({ 'gpt-4o-2024-05-13': { input: 5, output: 15 } });
    expect(findPrice(merged, 'gpt-4o-2024-05-13')).toEqual({ input: 5, output: 15 });
    expect(findPrice(merged, 'gpt-4o-2024-08-06')).toBe(DEFAULT_PRICES['gpt-4o']);
  });
});
