/**
 * Budget arithmetic, model-based: random sequences of reservations (alone and several in one
 * event-loop turn), settlements with any real usage (below or above the estimate), releases and
 * clock advances, run through the policy engine on the memory store and on the Redis store (a
 * real redis-server), against a model kept alongside. After every step:
 * - admission is exactly the model's: admitted iff no applicable key is at its limit and none
 *   would pass it with this reservation (budgets and the run's token and dollar caps alike);
 * - every key of the current windows, and every run record, holds what the model says (the
 *   reservations outstanding plus the usage settled): nothing leaks, nothing is released twice,
 *   nothing is ever negative;
 * and at the end, with every reservation settled or released exactly once, each key holds the
 * sum of the settled usage, and spend passed its cap by no more than the documented bound: the
 * estimation error of the requests outstanding when the last one was admitted.
 *
 * Amounts are whole tokens and multiples of 1/64 dollar, so sums are exact in both stores.
 */
import fc from 'fast-check';
import { RuntimeMetrics } from '../../lib/runtime/metering/metrics';
import { MemoryLimiterStore } from '../../lib/runtime/policy/limiter-store';
import { PolicyEngine, windowOf, type Identity, type Reservation } from '../../lib/runtime/policy/policy-engine';
import { RedisClient } from '../../lib/runtime/store/redis-client';
import { parseSidecarConfig, type SidecarConfigInput } from '../../lib/spec/config';
import { RedisServer } from '../support/redis';

const AGENT = 'model-agent';
const AGENT_TOKENS_PER_MINUTE = 1_000;
const USER_USD_PER_HOUR = 3;
const RUN_MAX_TOKENS = 2_500;
const RUN_MAX_USD = 6;
const USERS = ['u1', 'u2'];
const RUNS = ['r1', 'r2'];
const START = Date.UTC(2026, 10, 26, 12, 0, 0);

interface Cost {
  tokens: number;
  usd: number;
}

type Op =
  | { kind: 'reserve'; requests: Array<{ user: number; run: number; cost: Cost }> }
  | { kind: 'settle'; pick: number; usage: Cost }
  | { kind: 'release'; pick: number }
  | { kind: 'advance'; ms: number };

const usd = fc.integer({ min: 1, max: 64 }).map((k) => k / 64);
const costArb = fc.record({ tokens: fc.integer({ min: 1, max: 400 }), usd });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('reserve' as const), requests: fc.array(fc.record({ user: fc.nat(1), run: fc.nat(1), cost: costArb }), { minLength: 1, maxLength: 3 }) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('settle' as const),
      pick: fc.nat(),
      // Real usage from nothing to twice the estimate: the estimate is wrong both ways.
      usage: fc.record({ tokens: fc.integer({ min: 0, max: 800 }), usd: fc.integer({ min: 0, max: 128 }).map((k) => k / 64) }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 90_000 }) }) },
);

/** One budget key as the model sees it. */
interface ModelKey {
  readonly limit: number;
  readonly unit: 'tokens' | 'usd';
  /** The window's end; a settlement after end + the engine's 60 s slack may find the key gone. */
  readonly end: number;
  value: number;
  /** Reservations outstanding when the last one on this key was admitted (itself included). */
  lastAdmitted: Set<Outstanding>;
  /** A settlement came so late the store may have expired the key: its value is the store's business. */
  late: boolean;
}

interface Outstanding {
  readonly reservation: Reservation;
  readonly cost: Cost;
  readonly keys: ModelKey[];
  readonly run: string;
  used?: Cost;
}

/** What the store under test exposes for assertions. */
interface StoreView {
  budget(key: string): Promise<number>;
  run(key: string): Promise<Cost>;
  /** Waits until settlements sent so far are applied. */
  flush(): Promise<void>;
}

function engineConfig(store: SidecarConfigInput['store']): ReturnType<typeof parseSidecarConfig> {
  return parseSidecarConfig({
    version: 1,
    agent: { name: AGENT },
    providers: [{ name: 'openai', type: 'openai' }],
    budgets: [
      { scope: 'agent', unit: 'tokens', period: 'minute', limit: AGENT_TOKENS_PER_MINUTE },
      { scope: 'user', unit: 'usd', period: 'hour', limit: USER_USD_PER_HOUR },
    ],
    loopGuard: { maxTokens: RUN_MAX_TOKENS, maxCostUsd: RUN_MAX_USD },
    store,
  });
}

const metrics = new RuntimeMetrics(10, { version: 'test', mode: 'sidecar' }, () => []);

/** Runs `ops` against `engine` and the model side by side, checking after every step. */
async function check(engine: PolicyEngine, view: StoreView, prefix: string, ops: readonly Op[]): Promise<void> {
  let now = START;
  const keys = new Map<string, ModelKey>();
  const runs = new Map<string, Cost>(RUNS.map((r) => [`${prefix}r:${AGENT}:${r}`, { tokens: 0, usd: 0 }]));
  const outstanding: Outstanding[] = [];
  const done: Outstanding[] = [];

  const keyOf = (name: string, limit: number, unit: ModelKey['unit'], end: number): ModelKey => {
    let key = keys.get(name);
    if (!key) keys.set(name, (key = { limit, unit, end, value: 0, lastAdmitted: new Set(), late: false }));
    return key;
  };
  const budgetKeys = (user: string): ModelKey[] => {
    const minute = windowOf('minute', now);
    const hour = windowOf('hour', now);
    return [
      keyOf(`${prefix}b:agent:${AGENT}:tokens:minute:${minute.start}`, AGENT_TOKENS_PER_MINUTE, 'tokens', minute.end),
      keyOf(`${prefix}b:user:${AGENT}:${user}:usd:hour:${hour.start}`, USER_USD_PER_HOUR, 'usd', hour.end),
    ];
  };
  const amountOf = (key: ModelKey, cost: Cost) => (key.unit === 'tokens' ? cost.tokens : cost.usd);
  const fits = (used: number, amount: number, limit: number) => used < limit && used + amount <= limit;

  const settle = (o: Outstanding, used: Cost) => {
    engine.settle(o.reservation, used, now);
    o.used = used;
    for (const key of o.keys) {
      key.value += amountOf(key, used) - amountOf(key, o.cost);
      if (now >= key.end + 60_000) key.late = true;
    }
    const run = runs.get(o.run)!;
    run.tokens += used.tokens - o.cost.tokens;
    run.usd += used.usd - o.cost.usd;
    outstanding.splice(outstanding.indexOf(o), 1);
    done.push(o);
  };

  const verify = async (step: string) => {
    await view.flush();
    for (const [name, key] of keys) {
      const stored = await view.budget(name);
      expect({ step, name, stored: stored >= 0 }).toEqual({ step, name, stored: true });
      if (now < key.end && !key.late) expect({ step, name, stored }).toEqual({ step, name, stored: key.value });
    }
    for (const [name, expected] of runs) expect({ step, name, stored: await view.run(name) }).toEqual({ step, name, stored: expected });
  };

  for (const [i, op] of ops.entries()) {
    if (op.kind === 'advance') {
      now += op.ms;
    } else if (op.kind === 'reserve') {
      // Several reservations in one turn: on Redis they share one script call, applied in order.
      const planned = op.requests.map(({ user, run, cost }) => {
        const identity: Identity = { agent: AGENT, user: USERS[user], run: RUNS[run] };
        return { identity, cost, keys: budgetKeys(USERS[user]), run: `${prefix}r:${AGENT}:${RUNS[run]}`, answer: engine.reserve(identity, cost, () => '', now) };
      });
      for (const p of planned) {
        const answer = await p.answer;
        const runState = runs.get(p.run)!;
        const admit =
          p.keys.every((k) => fits(k.value, amountOf(k, p.cost), k.limit)) &&
          fits(runState.tokens, p.cost.tokens, RUN_MAX_TOKENS) &&
          fits(runState.usd, p.cost.usd, RUN_MAX_USD);
        expect({ step: i, admitted: answer.ok }).toEqual({ step: i, admitted: admit });
        if (!answer.ok) {
          expect([answer.status, answer.code]).toEqual([429, answer.scope === 'run' ? 'loop_detected' : 'budget_exceeded']);
          continue;
        }
        const o: Outstanding = { reservation: answer, cost: p.cost, keys: p.keys, run: p.run };
        outstanding.push(o);
        for (const key of p.keys) {
          key.value += amountOf(key, p.cost);
          key.lastAdmitted = new Set([...outstanding.filter((x) => x.keys.includes(key))]);
        }
        runState.tokens += p.cost.tokens;
        runState.usd += p.cost.usd;
      }
    } else if (outstanding.length) {
      const o = outstanding[op.pick % outstanding.length];
      settle(o, op.kind === 'settle' ? op.usage : { tokens: 0, usd: 0 });
    }
    await verify(`op ${i} (${op.kind})`);
  }

  // Everything still outstanding ends now: released, as for a failed request.
  for (const o of [...outstanding]) settle(o, { tokens: 0, usd: 0 });
  await verify('all settled');
  for (const [name, key] of keys) {
    const settledHere = done.filter((o) => o.keys.includes(key));
    const spent = settledHere.reduce((sum, o) => sum + amountOf(key, o.used!), 0);
    // No leak: the key is exactly what was really used.
    if (!key.late && now < key.end + 60_000) expect({ name, stored: await view.budget(name) }).toEqual({ name, stored: spent });
    // Overspend only by the estimation error of the requests admitted together.
    const bound = key.limit + [...key.lastAdmitted].reduce((sum, o) => sum + Math.max(0, amountOf(key, o.used!) - amountOf(key, o.cost)), 0);
    expect(spent).toBeLessThanOrEqual(bound);
  }
  for (const [name, run] of runs) {
    const settledHere = done.filter((o) => o.run === name);
    expect(run).toEqual({ tokens: settledHere.reduce((s, o) => s + o.used!.tokens, 0), usd: settledHere.reduce((s, o) => s + o.used!.usd, 0) });
  }
}

const opsArb = fc.array(opArb, { minLength: 1, maxLength: 40 });

test('memory store: admission, balances and settlement follow the model exactly', async () => {
  await fc.assert(
    fc.asyncProperty(opsArb, async (ops) => {
      const engine = new PolicyEngine(engineConfig({ type: 'memory' }), metrics, null);
      const store = (engine as unknown as { primary: MemoryLimiterStore }).primary as unknown as {
        values: Map<string, { value: number; expiresAt: number }>;
        runs: Map<string, { tokens: number; usd: number }>;
      };
      const view: StoreView = {
        budget: async (key) => store.values.get(key)?.value ?? 0,
        run: async (key) => {
          const r = store.runs.get(key);
          return { tokens: r?.tokens ?? 0, usd: r?.usd ?? 0 };
        },
        flush: async () => undefined,
      };
      try {
        await check(engine, view, '', ops);
      } finally {
        engine.close();
      }
    }),
    { numRuns: 300 },
  );
});

describe('Redis store', () => {
  let redis: RedisServer;
  let client: RedisClient;
  beforeAll(async () => {
    redis = await RedisServer.start();
    client = new RedisClient({ host: '127.0.0.1', port: redis.port, db: 0, commandTimeoutMs: 2_000 });
    expect(await client.waitUntilUp(5_000)).toBe(true);
  });
  afterAll(async () => {
    client?.close();
    await redis?.stop();
  });

  test('admission, balances and settlement follow the model exactly, several reservations per script call included', async () => {
    let runNo = 0;
    await fc.assert(
      fc.asyncProperty(opsArb, async (ops) => {
        const prefix = `m${++runNo}:`;
        const engine = new PolicyEngine(engineConfig({ type: 'redis', url: redis.url, keyPrefix: prefix, commandTimeoutMs: 2_000 }), metrics, client);
        const view: StoreView = {
          budget: async (key) => Number((await client.call(['GET', key])) ?? 0),
          run: async (key) => {
            const [tokens, dollars] = (await client.call(['HMGET', key, 'tk', 'us'])) as Array<string | null>;
            return { tokens: Number(tokens ?? 0), usd: Number(dollars ?? 0) };
          },
          // Settlements leave in the next turn's script call; a command after it is answered after it.
          flush: async () => {
            await new Promise((resolve) => setImmediate(resolve));
            await client.call(['PING']);
          },
        };
        try {
          await check(engine, view, prefix, ops);
        } finally {
          engine.close();
        }
      }),
      { numRuns: 60 },
    );
  }, 60_000);
});
