/**
 * The limiter contract on Redis, shared by every replica: per request one round trip to reserve
 * (all checks, then all updates, atomically) and at most one to settle. Requests of the same
 * event-loop turn share one round trip for both: the settlements of requests that ended, summed
 * per key, and the reservations of requests that started. Keys expire with their windows.
 */
import { LuaScript, RedisReplyError, type RedisClient } from '../store/redis-client';
import type { Adjustment, Check, LimiterStore, ReserveResult, RunLimit } from './limiter-store';

/** Two adjustments of one key, summed (the key's kind decides the shape). */
function merge(prior: Adjustment | undefined, next: Adjustment): Adjustment {
  if (!prior) return next;
  if (prior.kind === 'r' && next.kind === 'r') return { ...prior, tokens: prior.tokens + next.tokens, usd: prior.usd + next.usd };
  if (prior.kind !== 'r' && next.kind !== 'r') return { ...prior, delta: prior.delta + next.delta };
  return next;
}

/**
 * One script call per event-loop turn: first the settlements of requests that ended (summed per
 * key), then the reservations of requests that started, each all-or-nothing, in arrival order.
 *
 * KEYS: the adjusted keys, then one per check, request after request.
 * ARGV[1]: now (ms). ARGV[2]: the number of adjustments, then per adjustment its kind and values:
 *   b delta | g delta intervalMs | r tokensDelta usdDelta
 * A key whose window already ended is left alone (it is gone, or belongs to a new window).
 * Then the number of requests and, per request, its number of checks and per check:
 *   b amount limit ttlMs
 *   g amount intervalMs windowMs
 *   r maxIterations maxDurationMs maxRepeats hash ttlMs tokens maxTokens usd maxUsd
 * Returns one {1, iterations} or {0, index, retryAfterMs, runLimit} per request.
 *
 * Rate and run checks are read first; budgets are then incremented optimistically (one command
 * each instead of a read and a write) and rolled back if one would pass its limit; only when all
 * pass are the rate and run states written.
 */
const APPLY = new LuaScript(`
local now = tonumber(ARGV[1])
local adjustments = tonumber(ARGV[2])
local a = 3
for i = 1, adjustments do
  local kind = ARGV[a]
  if kind == 'b' then
    local delta = ARGV[a+1]
    a = a + 2
    local v = tonumber(redis.call('INCRBYFLOAT', KEYS[i], delta))
    if v == tonumber(delta) and redis.call('PTTL', KEYS[i]) == -1 then
      redis.call('DEL', KEYS[i]) -- its window had ended: the increment made a key without expiry
    elseif v < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
  elseif kind == 'g' then
    local delta, interval = tonumber(ARGV[a+1]), tonumber(ARGV[a+2])
    a = a + 3
    local tat = redis.call('GET', KEYS[i])
    if tat then
      local nxt = tonumber(tat) + delta * interval
      if nxt > now then redis.call('SET', KEYS[i], nxt, 'PX', math.ceil(nxt - now) + 1000) else redis.call('DEL', KEYS[i]) end
    end
  else
    local tokens, usd = ARGV[a+1], ARGV[a+2]
    a = a + 3
    if redis.call('EXISTS', KEYS[i]) == 1 then
      if tonumber(tokens) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[i], 'tk', tokens) end
      if tonumber(usd) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[i], 'us', usd) end
    end
  end
end
local requests = tonumber(ARGV[a])
a = a + 1
local k = adjustments
local results = {}
for r = 1, requests do
  local n = tonumber(ARGV[a])
  a = a + 1
  local checks = {}
  for i = 1, n do
    local kind = ARGV[a]
    local c = {kind = kind, key = KEYS[k + i], at = a}
    checks[i] = c
    if kind == 'r' then a = a + 10 else a = a + 4 end
  end
  local failed = nil
  -- Reads: rate limits and run guards.
  for i = 1, n do
    local c = checks[i]
    if failed then break end
    local at = c.at
    if c.kind == 'g' then
      local amount, interval, window = tonumber(ARGV[at+1]), tonumber(ARGV[at+2]), tonumber(ARGV[at+3])
      local tat = tonumber(redis.call('GET', c.key) or '0')
      if tat < now then tat = now end
      local nxt = tat + amount * interval
      if nxt - now > window + 0.001 then
        if amount * interval > window then failed = {0, i - 1, -1} else failed = {0, i - 1, math.ceil(nxt - now - window)} end
      end
      c.value = nxt
    elseif c.kind == 'r' then
      local maxIter, maxDur, maxRep, hash = tonumber(ARGV[at+1]), tonumber(ARGV[at+2]), tonumber(ARGV[at+3]), ARGV[at+4]
      local tokens, maxTokens, usd, maxUsd = tonumber(ARGV[at+6]), tonumber(ARGV[at+7]), tonumber(ARGV[at+8]), tonumber(ARGV[at+9])
      local st = redis.call('HMGET', c.key, 'n', 't', 'h', 'r', 'tk', 'us')
      local iter = tonumber(st[1] or '0') + 1
      local started = tonumber(st[2] or now)
      local rep = 1
      if hash ~= '' and st[3] == hash then rep = tonumber(st[4] or '0') + 1 end
      local tk = tonumber(st[5] or '0') + tokens
      local us = tonumber(st[6] or '0') + usd
      local limit = nil
      if maxIter > 0 and iter > maxIter then limit = 'iterations'
      elseif maxDur > 0 and now - started > maxDur then limit = 'duration'
      elseif maxRep > 0 and rep >= maxRep then limit = 'repeats'
      elseif maxTokens > 0 and (tk - tokens >= maxTokens or tk > maxTokens) then limit = 'tokens'
      elseif maxUsd > 0 and (us - usd >= maxUsd or us > maxUsd) then limit = 'usd' end
      if limit then failed = {0, i - 1, -1, limit} end
      c.value = {iter, started, hash, rep, tk, us, tonumber(ARGV[at+5])}
    end
  end
  -- Budgets, optimistically.
  local applied = {}
  if not failed then
    for i = 1, n do
      local c = checks[i]
      if c.kind == 'b' then
        local amount, limit, ttl = tonumber(ARGV[c.at+1]), tonumber(ARGV[c.at+2]), ARGV[c.at+3]
        local v = tonumber(redis.call('INCRBYFLOAT', c.key, amount))
        local fresh = (v == amount) and redis.call('PTTL', c.key) == -1
        if fresh then redis.call('PEXPIRE', c.key, ttl) end
        applied[#applied + 1] = {c.key, amount, fresh}
        if v > limit or v - amount >= limit then
          local left = redis.call('PTTL', c.key)
          if left < 0 then left = tonumber(ttl) end
          failed = {0, i - 1, left}
          break
        end
      end
    end
    if failed then
      for _, b in ipairs(applied) do
        if b[3] then redis.call('DEL', b[1]) else redis.call('INCRBYFLOAT', b[1], -b[2]) end
      end
    end
  end
  if failed then
    results[r] = failed
  else
    local iterations = 0
    for i = 1, n do
      local c = checks[i]
      if c.kind == 'g' then
        redis.call('SET', c.key, c.value, 'PX', math.ceil(c.value - now) + 1000)
      elseif c.kind == 'r' then
        local v = c.value
        redis.call('HSET', c.key, 'n', v[1], 't', v[2], 'h', v[3], 'r', v[4], 'tk', v[5], 'us', v[6])
        redis.call('PEXPIRE', c.key, v[7])
        iterations = v[1]
      end
    end
    results[r] = {1, iterations}
  end
  k = k + n
end
return results
`);

interface Batch {
  readonly now: number;
  readonly adjustments: Map<string, Adjustment>;
  readonly settled: Array<{ resolve(): void; reject(err: Error): void }>;
  readonly requests: Array<{ checks: readonly Check[]; resolve(result: ReserveResult): void; reject(err: Error): void }>;
}

export class RedisLimiterStore implements LimiterStore {
  /** What this event-loop turn has to send: one script call at its end. */
  private batch: Batch | null = null;
  /** Script calls sent and not answered yet. */
  private readonly pending = new Set<Promise<unknown>>();

  constructor(private readonly client: RedisClient) {}

  /** Reserves in this turn's call: one round trip for the request, shared with the others. */
  reserve(checks: readonly Check[], now: number): Promise<ReserveResult> {
    const batch = this.current(now);
    return new Promise((resolve, reject) => batch.requests.push({ checks, resolve, reject }));
  }

  /**
   * Settles in this turn's call. Concurrent requests mostly correct the same keys (the agent's,
   * the team's budget), so their deltas are summed per key.
   */
  settle(adjustments: readonly Adjustment[], now: number): Promise<void> {
    if (!adjustments.length) return Promise.resolve();
    const batch = this.current(now);
    for (const a of adjustments) batch.adjustments.set(a.key, merge(batch.adjustments.get(a.key), a));
    return new Promise((resolve, reject) => batch.settled.push({ resolve, reject }));
  }

  async read(keys: readonly string[]): Promise<number[]> {
    if (!keys.length) return [];
    const values = (await this.client.call(['MGET', ...keys])) as Array<string | Buffer | null>;
    return values.map((v) => (v === null ? 0 : Number(v.toString())) || 0);
  }

  /**
   * Resolves once what was reserved and settled so far has reached Redis (or failed): the batch
   * of this turn sent, every call answered. A process about to close its connection waits for
   * this, or the settlements of its last requests would be lost and their reservations counted
   * in full until their windows end.
   */
  async flush(): Promise<void> {
    // A reply may settle or release more (a request cut while its reservation was in flight
    // releases it when the reply comes): repeat until nothing is queued or in flight, a few
    // rounds at most (each is one round trip, bounded by the command timeout).
    for (let round = 0; round < 5 && (this.batch || this.pending.size); round++) {
      if (this.batch) await new Promise((resolve) => setImmediate(resolve));
      await Promise.allSettled([...this.pending]);
    }
  }

  private current(now: number): Batch {
    if (!this.batch) {
      this.batch = { now, adjustments: new Map(), settled: [], requests: [] };
      setImmediate(() => this.send());
    }
    return this.batch;
  }

  private send(): void {
    const batch = this.batch!;
    this.batch = null;
    const keys: string[] = [];
    const adjusted: Array<string | number> = [];
    let count = 0;
    for (const a of batch.adjustments.values()) {
      if (a.kind === 'r' ? a.tokens === 0 && a.usd === 0 : a.delta === 0) continue;
      count++;
      keys.push(a.key);
      if (a.kind === 'b') adjusted.push('b', a.delta);
      else if (a.kind === 'g') adjusted.push('g', a.delta, a.intervalMs);
      else adjusted.push('r', a.tokens, a.usd);
    }
    const args: Array<string | number> = [batch.now, count, ...adjusted, batch.requests.length];
    for (const request of batch.requests) {
      args.push(request.checks.length);
      for (const c of request.checks) {
        keys.push(c.key);
        if (c.kind === 'b') args.push('b', c.amount, c.limit, Math.ceil(c.ttlMs));
        else if (c.kind === 'g') args.push('g', c.amount, c.intervalMs, c.windowMs);
        else args.push('r', c.maxIterations, c.maxDurationMs, c.maxRepeats, c.hash, c.ttlMs, c.tokens, c.maxTokens, c.usd, c.maxUsd);
      }
    }
    const fail = (err: Error) => {
      for (const w of batch.settled) w.reject(err);
      for (const r of batch.requests) r.reject(err);
    };
    if (!count && !batch.requests.length) {
      for (const w of batch.settled) w.resolve();
      return;
    }
    const call = this.client.eval(APPLY, keys, args);
    this.pending.add(call);
    call.then(
      () => this.pending.delete(call),
      () => this.pending.delete(call),
    );
    call.then((reply) => {
      if (reply instanceof RedisReplyError) return fail(reply);
      for (const w of batch.settled) w.resolve();
      const results = reply as Array<[number, number, number?, RunLimit?]>;
      batch.requests.forEach((r, i) => {
        const [ok, a, b, run] = results[i];
        r.resolve(ok === 1 ? { ok: true, iterations: a } : { ok: false, index: a, retryAfterMs: b!, run });
      });
    }, fail);
  }
}
