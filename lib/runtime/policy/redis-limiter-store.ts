/**
 * The limiter contract on Redis, shared by every replica: per request one round trip to reserve
 * (all checks, then all updates, atomically) and at most one to settle. Requests of the same
 * event-loop turn share those round trips: their reservations go in one script call, their
 * settlements are summed per key into another. Keys expire with their windows.
 */
import { LuaScript, RedisReplyError, type RedisClient } from '../store/redis-client';
import type { Adjustment, Check, LimiterStore, ReserveResult } from './limiter-store';

/**
 * Reserves for several requests at once (those of one event-loop turn), each all-or-nothing.
 * KEYS: one per check, request after request. ARGV[1]: now (ms), ARGV[2]: the number of
 * requests, then per request its number of checks and, per check, its kind and parameters:
 *   b amount limit ttlMs | g amount intervalMs windowMs | r maxIterations maxDurationMs maxRepeats hash ttlMs
 * Returns one {1, iterations} or {0, index, retryAfterMs} per request.
 */
const RESERVE = new LuaScript(`
local now = tonumber(ARGV[1])
local requests = tonumber(ARGV[2])
local a = 3
local k = 0
local results = {}
for r = 1, requests do
  local n = tonumber(ARGV[a])
  a = a + 1
  local plan = {}
  local failed = nil
  for i = 1, n do
    local key = KEYS[k + i]
    local kind = ARGV[a]
    if kind == 'b' then
      if not failed then
        local amount, limit, ttl = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3])
        local current = redis.call('GET', key)
        local used = tonumber(current or '0')
        if used >= limit or used + amount > limit then
          local left = redis.call('PTTL', key)
          if left < 0 then left = ttl end
          failed = {0, i - 1, left}
        else
          plan[i] = {amount, ttl, current}
        end
      end
      a = a + 4
    elseif kind == 'g' then
      if not failed then
        local amount, interval, window = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3])
        local tat = tonumber(redis.call('GET', key) or '0')
        if tat < now then tat = now end
        local nxt = tat + amount * interval
        if nxt - now > window + 0.001 then
          if amount * interval > window then failed = {0, i - 1, -1} else failed = {0, i - 1, math.ceil(nxt - now - window)} end
        else
          plan[i] = {nxt}
        end
      end
      a = a + 4
    else
      if not failed then
        local maxIter, maxDur, maxRep, hash, ttl = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]), ARGV[a+4], tonumber(ARGV[a+5])
        local st = redis.call('HMGET', key, 'n', 't', 'h', 'r')
        local iter = tonumber(st[1] or '0') + 1
        local started = tonumber(st[2] or now)
        local rep = 1
        if hash ~= '' and st[3] == hash then rep = tonumber(st[4] or '0') + 1 end
        if (maxIter > 0 and iter > maxIter) or (maxDur > 0 and now - started > maxDur) or (maxRep > 0 and rep >= maxRep) then
          failed = {0, i - 1, -1}
        else
          plan[i] = {iter, started, hash, rep, ttl}
        end
      end
      a = a + 6
    end
    plan[i] = plan[i] or false
    if plan[i] then plan[i].kind = kind end
  end
  if failed then
    results[r] = failed
  else
    local iterations = 0
    for i = 1, n do
      local key = KEYS[k + i]
      local p = plan[i]
      if p.kind == 'b' then
        if p[3] then redis.call('INCRBYFLOAT', key, p[1]) else redis.call('SET', key, p[1], 'PX', p[2]) end
      elseif p.kind == 'g' then
        redis.call('SET', key, p[1], 'PX', math.ceil(p[1] - now) + 1000)
      else
        redis.call('HSET', key, 'n', p[1], 't', p[2], 'h', p[3], 'r', p[4])
        redis.call('PEXPIRE', key, p[5])
        iterations = p[1]
      end
    end
    results[r] = {1, iterations}
  end
  k = k + n
end
return results
`);

/**
 * KEYS: one per adjustment. ARGV[1]: now, then per adjustment: b delta | g delta intervalMs.
 * A key whose window already ended is left alone (it is gone, or it belongs to a new window).
 */
const SETTLE = new LuaScript(`
local now = tonumber(ARGV[1])
local a = 2
for i = 1, #KEYS do
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
  else
    local delta, interval = tonumber(ARGV[a+1]), tonumber(ARGV[a+2])
    a = a + 3
    local tat = redis.call('GET', KEYS[i])
    if tat then
      local nxt = tonumber(tat) + delta * interval
      if nxt > now then redis.call('SET', KEYS[i], nxt, 'PX', math.ceil(nxt - now) + 1000) else redis.call('DEL', KEYS[i]) end
    end
  end
end
return 1
`);

interface PendingSettlement {
  readonly adjustments: Map<string, Adjustment>;
  readonly waiters: Array<{ resolve(): void; reject(err: Error): void }>;
}

export class RedisLimiterStore implements LimiterStore {
  /** Settlements of the current event-loop turn, merged by key into one script call. */
  private pending: PendingSettlement | null = null;
  /** Reservations of the current event-loop turn, sent together. */
  private reserving: {
    readonly now: number;
    readonly requests: Array<{ checks: readonly Check[]; resolve(result: ReserveResult): void; reject(err: Error): void }>;
  } | null = null;

  constructor(private readonly client: RedisClient) {}

  /**
   * Reservations of one event-loop turn go to Redis in one script call: each is still checked and
   * applied all-or-nothing, in arrival order, and each request still costs one round trip.
   */
  reserve(checks: readonly Check[], now: number): Promise<ReserveResult> {
    let batch = this.reserving;
    if (!batch) {
      batch = this.reserving = { now, requests: [] };
      setImmediate(() => this.sendReservations());
    }
    return new Promise((resolve, reject) => batch!.requests.push({ checks, resolve, reject }));
  }

  private sendReservations(): void {
    const batch = this.reserving!;
    this.reserving = null;
    const keys: string[] = [];
    const args: Array<string | number> = [batch.now, batch.requests.length];
    for (const request of batch.requests) {
      args.push(request.checks.length);
      for (const c of request.checks) {
        keys.push(c.key);
        if (c.kind === 'b') args.push('b', c.amount, c.limit, Math.ceil(c.ttlMs));
        else if (c.kind === 'g') args.push('g', c.amount, c.intervalMs, c.windowMs);
        else args.push('r', c.maxIterations, c.maxDurationMs, c.maxRepeats, c.hash, c.ttlMs);
      }
    }
    this.client.eval(RESERVE, keys, args).then(
      (reply) => {
        if (reply instanceof RedisReplyError) return batch.requests.forEach((r) => r.reject(reply));
        const results = reply as number[][];
        batch.requests.forEach((r, i) => {
          const [ok, a, b] = results[i];
          r.resolve(ok === 1 ? { ok: true, iterations: a } : { ok: false, index: a, retryAfterMs: b });
        });
      },
      (err: Error) => batch.requests.forEach((r) => r.reject(err)),
    );
  }

  /**
   * Settlements are merged per event-loop turn: concurrent requests mostly correct the same keys
   * (the agent's, the team's budget), so one script call with summed deltas replaces many.
   */
  settle(adjustments: readonly Adjustment[], now: number): Promise<void> {
    if (!adjustments.length) return Promise.resolve();
    let batch = this.pending;
    if (!batch) {
      batch = this.pending = { adjustments: new Map(), waiters: [] };
      setImmediate(() => this.flush(now));
    }
    for (const a of adjustments) {
      const merged = batch.adjustments.get(a.key);
      batch.adjustments.set(a.key, merged ? { ...a, delta: merged.delta + a.delta } : a);
    }
    return new Promise((resolve, reject) => batch!.waiters.push({ resolve, reject }));
  }

  private flush(now: number): void {
    const batch = this.pending!;
    this.pending = null;
    const keys: string[] = [];
    const args: Array<string | number> = [now];
    for (const a of batch.adjustments.values()) {
      if (a.delta === 0) continue;
      keys.push(a.key);
      if (a.kind === 'b') args.push('b', a.delta);
      else args.push('g', a.delta, a.intervalMs);
    }
    const done = keys.length ? this.client.eval(SETTLE, keys, args) : Promise.resolve(1 as const);
    done.then(
      (reply) => {
        if (reply instanceof RedisReplyError) for (const w of batch.waiters) w.reject(reply);
        else for (const w of batch.waiters) w.resolve();
      },
      (err: Error) => {
        for (const w of batch.waiters) w.reject(err);
      },
    );
  }
}
