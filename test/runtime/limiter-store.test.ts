/**
 * The limiter stores, memory and Redis, on the same cases with an explicit clock: budget
 * windows, GCRA with no double burst across a window boundary, run guards, settlement, and
 * all-or-nothing reservations. The Redis store runs against a real redis-server.
 */
import fc from 'fast-check';
import { MemoryLimiterStore, type Check, type LimiterStore } from '../../lib/runtime/policy/limiter-store';
import { RedisLimiterStore } from '../../lib/runtime/policy/redis-limiter-store';
import { RedisClient } from '../../lib/runtime/store/redis-client';
import { RedisServer } from '../support/redis';

let redis: RedisServer;
let client: RedisClient;

beforeAll(async () => {
  redis = await RedisServer.start();
  client = new RedisClient({ host: '127.0.0.1', port: redis.port, db: 0, commandTimeoutMs: 1_000 });
  while (!client.isUp) await new Promise((r) => setTimeout(r, 10));
});

afterAll(async () => {
  client?.close();
  await redis?.stop();
});

const MINUTE = 60_000;

/** A run check with everything off unless given. */
function runCheck(key: string, over: Partial<Extract<Check, { kind: 'r' }>>): Check {
  return { kind: 'r', key, maxIterations: 0, maxDurationMs: 0, maxRepeats: 0, hash: '', ttlMs: MINUTE, tokens: 0, maxTokens: 0, usd: 0, maxUsd: 0, ...over };
}
let keySeq = 0;
const key = (name: string) => `t${process.pid}:${++keySeq}:${name}`;

const stores: Array<[string, () => LimiterStore]> = [
  ['memory', () => new MemoryLimiterStore()],
  ['redis', () => new RedisLimiterStore(client)],
];

describe.each(stores)('%s store', (_name, make) => {
  let store: LimiterStore;
  beforeEach(() => {
    store = make();
  });
  afterEach(() => (store as MemoryLimiterStore).close?.());

  test('a budget admits until the next request would exceed it, and counts only what is admitted', async () => {
    const budget = (amount: number): Check => ({ kind: 'b', key: k, amount, limit: 10, ttlMs: MINUTE });
    const k = key('budget');
    const t = 1_000_000;
    expect(await store.reserve([budget(4)], t)).toEqual({ ok: true, iterations: 0 });
    expect(await store.reserve([budget(4)], t)).toEqual({ ok: true, iterations: 0 });
    const rejected = await store.reserve([budget(4)], t);
    expect(rejected.ok).toBe(false);
    expect(rejected).toMatchObject({ index: 0 });
    // 8 used: a request of 2 still fits, then nothing does.
    expect((await store.reserve([budget(2)], t)).ok).toBe(true);
    expect((await store.reserve([budget(0)], t)).ok).toBe(false);
  });

  test('settlement corrects a reservation to the real usage and releases what was not used', async () => {
    const k = key('settle');
    const t = 2_000_000;
    const budget = (amount: number): Check => ({ kind: 'b', key: k, amount, limit: 100, ttlMs: MINUTE });
    expect((await store.reserve([budget(90)], t)).ok).toBe(true);
    expect((await store.reserve([budget(20)], t)).ok).toBe(false);
    await store.settle([{ kind: 'b', key: k, delta: 15 - 90 }], t); // used 15 of the 90 reserved
    expect((await store.reserve([budget(80)], t)).ok).toBe(true); // 15 + 80 = 95
    expect((await store.reserve([budget(10)], t)).ok).toBe(false);
    await store.settle([{ kind: 'b', key: k, delta: -80 }], t); // released on an error
    expect((await store.reserve([budget(80)], t)).ok).toBe(true);
  });

  test('a reservation is all or nothing: one failing check leaves every other key untouched', async () => {
    const a = key('a');
    const b = key('b');
    const t = 3_000_000;
    expect((await store.reserve([{ kind: 'b', key: b, amount: 9, limit: 10, ttlMs: MINUTE }], t)).ok).toBe(true);
    const both: Check[] = [
      { kind: 'b', key: a, amount: 5, limit: 10, ttlMs: MINUTE },
      { kind: 'b', key: b, amount: 5, limit: 10, ttlMs: MINUTE },
    ];
    expect(await store.reserve(both, t)).toMatchObject({ ok: false, index: 1 });
    // `a` was not charged by the failed reservation: 10 still fit.
    expect((await store.reserve([{ kind: 'b', key: a, amount: 10, limit: 10, ttlMs: MINUTE }], t)).ok).toBe(true);
  });

  test('GCRA: a full burst right before a minute boundary leaves nothing right after it (no double burst)', async () => {
    const k = key('gcra');
    const limit = 30;
    const rate = (amount = 1): Check => ({ kind: 'g', key: k, amount, intervalMs: MINUTE / limit, windowMs: MINUTE });
    const boundary = 60 * MINUTE; // a wall-clock minute boundary
    let admitted = 0;
    for (let i = 0; i < limit + 5; i++) if ((await store.reserve([rate()], boundary - 100)).ok) admitted++;
    expect(admitted).toBe(limit);
    // A fixed-window counter would admit another `limit` here.
    let after = 0;
    for (let i = 0; i < limit; i++) if ((await store.reserve([rate()], boundary + 100)).ok) after++;
    expect(after).toBe(0);
    // The rate refills smoothly: one per interval.
    const rejected = await store.reserve([rate()], boundary + 1_000);
    expect(rejected.ok).toBe(false);
    expect(!rejected.ok && rejected.retryAfterMs).toBeGreaterThan(0);
    expect(!rejected.ok && rejected.retryAfterMs).toBeLessThanOrEqual(MINUTE / limit);
    expect((await store.reserve([rate()], boundary - 100 + MINUTE / limit + 1))).toMatchObject({ ok: true });
  });

  test('GCRA property: in any 60 s window, admitted units never exceed twice the limit, and a full minute after a burst the limit is available again', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 3_000 }), { minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: 20 }), async (gaps, limit) => {
        const k = key('gcra-prop');
        let t = 10_000_000;
        const admittedAt: number[] = [];
        for (const gap of gaps) {
          t += gap;
          if ((await store.reserve([{ kind: 'g', key: k, amount: 1, intervalMs: MINUTE / limit, windowMs: MINUTE }], t)).ok) admittedAt.push(t);
        }
        for (const start of admittedAt) {
          const inWindow = admittedAt.filter((x) => x >= start && x < start + MINUTE).length;
          expect(inWindow).toBeLessThanOrEqual(2 * limit);
        }
        let fresh = 0;
        for (let i = 0; i < limit; i++) if ((await store.reserve([{ kind: 'g', key: k, amount: 1, intervalMs: MINUTE / limit, windowMs: MINUTE }], t + MINUTE)).ok) fresh++;
        expect(fresh).toBe(limit);
      }),
      { numRuns: 25 },
    );
  });

  test('a token rate limit is charged the reservation and corrected by settlement', async () => {
    const k = key('tpm');
    const t = 20_000_000;
    const tokens = (amount: number): Check => ({ kind: 'g', key: k, amount, intervalMs: MINUTE / 1_000, windowMs: MINUTE });
    expect((await store.reserve([tokens(900)], t)).ok).toBe(true);
    expect((await store.reserve([tokens(200)], t)).ok).toBe(false);
    await store.settle([{ kind: 'g', key: k, delta: 100 - 900, intervalMs: MINUTE / 1_000 }], t);
    expect((await store.reserve([tokens(850)], t)).ok).toBe(true);
    // More than a whole minute's worth can never pass: no Retry-After helps.
    expect(await store.reserve([tokens(5_000)], t + 10 * MINUTE)).toEqual({ ok: false, index: 0, retryAfterMs: -1 });
  });

  test('run guard: iterations are counted and capped, wall time is capped, repeats trip the detector', async () => {
    const k = key('run');
    const t = 30_000_000;
    const run = (hash: string, now: number, max = { iterations: 0, duration: 0, repeats: 0 }): Promise<unknown> =>
      store.reserve([runCheck(k, { maxIterations: max.iterations, maxDurationMs: max.duration, maxRepeats: max.repeats, hash })], now);
    expect(await run('a', t)).toEqual({ ok: true, iterations: 1 });
    expect(await run('b', t)).toEqual({ ok: true, iterations: 2 });
    expect(await run('c', t, { iterations: 3, duration: 0, repeats: 0 })).toEqual({ ok: true, iterations: 3 });
    expect(await run('d', t, { iterations: 3, duration: 0, repeats: 0 })).toEqual({ ok: false, index: 0, retryAfterMs: -1, run: 'iterations' });
    // Wall time from the first call.
    expect(await run('e', t + 5_000, { iterations: 0, duration: 5_000, repeats: 0 })).toMatchObject({ ok: true });
    expect(await run('f', t + 5_001, { iterations: 0, duration: 5_000, repeats: 0 })).toMatchObject({ ok: false, run: 'duration' });
    // The same new turn three times in a row trips maxRepeats 3; a different turn resets it.
    const k2 = key('repeat');
    const rep = (hash: string) => store.reserve([runCheck(k2, { maxRepeats: 3, hash })], t);
    expect((await rep('x')).ok).toBe(true);
    expect((await rep('x')).ok).toBe(true);
    expect((await rep('y')).ok).toBe(true);
    expect((await rep('y')).ok).toBe(true);
    expect(await rep('y')).toMatchObject({ ok: false, run: 'repeats' });
  });

  test('a run\'s tokens and dollars are capped in its record, reserved up front and settled to the real usage', async () => {
    const k = key('run-spend');
    const t = 40_000_000;
    const call = (tokens: number, usd: number) => store.reserve([runCheck(k, { tokens, maxTokens: 1_000, usd, maxUsd: 1 })], t);
    expect((await call(600, 0.1)).ok).toBe(true);
    expect(await call(600, 0.1)).toMatchObject({ ok: false, run: 'tokens' });
    // The first call used only 100 of its 600 tokens.
    await store.settle([{ kind: 'r', key: k, tokens: -500, usd: 0 }], t);
    expect((await call(600, 0.1)).ok).toBe(true); // 700
    expect(await call(100, 0.95)).toMatchObject({ ok: false, run: 'usd' }); // 0.2 + 0.95 > 1
    expect((await call(100, 0.5)).ok).toBe(true); // 800 tokens, $0.7
    // A refused call left nothing behind: its iteration and spend were not recorded.
    expect(await call(200, 0.3)).toEqual({ ok: true, iterations: 4 }); // exactly 1000 and $1.0
    expect(await call(0, 0)).toMatchObject({ ok: false, run: 'tokens' }); // at the cap: refused
  });

  test('budget keys expire with their window', async () => {
    const k = key('expiry');
    expect((await store.reserve([{ kind: 'b', key: k, amount: 10, limit: 10, ttlMs: 200 }], Date.now())).ok).toBe(true);
    expect((await store.reserve([{ kind: 'b', key: k, amount: 1, limit: 10, ttlMs: 200 }], Date.now())).ok).toBe(false);
    await new Promise((r) => setTimeout(r, 400));
    expect((await store.reserve([{ kind: 'b', key: k, amount: 1, limit: 10, ttlMs: 200 }], Date.now())).ok).toBe(true);
  });
});

test('Redis keys carry TTLs bounded by their windows', async () => {
  const store = new RedisLimiterStore(client);
  const k = key('ttl');
  await store.reserve([{ kind: 'b', key: k, amount: 1, limit: 5, ttlMs: 90_000 }], Date.now());
  const ttl = Number(redis.cli('PTTL', k));
  expect(ttl).toBeGreaterThan(80_000);
  expect(ttl).toBeLessThanOrEqual(90_000);
});
