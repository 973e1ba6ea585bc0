/**
 * The limiter contract on Redis, shared by every replica: one script call to reserve (all checks
 * then all updates, atomically) and one to settle. Keys expire with their windows.
 */
import { LuaScript, RedisReplyError, type RedisClient } from '../store/redis-client';
import type { Adjustment, Check, LimiterStore, ReserveResult } from './limiter-store';

/**
 * KEYS: one per check. ARGV[1]: now (ms), then per check its kind and parameters:
 *   b amount limit ttlMs | g amount intervalMs windowMs | r maxIterations maxDurationMs maxRepeats hash ttlMs
 * Returns {1, iterations} or {0, index, retryAfterMs}.
 */
const RESERVE = new LuaScript(`
local now = tonumber(ARGV[1])
local a = 2
local plan = {}
for i = 1, #KEYS do
  local kind = ARGV[a]
  if kind == 'b' then
    local amount, limit, ttl = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3])
    a = a + 4
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    if used >= limit or used + amount > limit then
      local left = redis.call('PTTL', KEYS[i])
      if left < 0 then left = ttl end
      return {0, i - 1, left}
    end
    plan[i] = {amount, ttl}
  elseif kind == 'g' then
    local amount, interval, window = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3])
    a = a + 4
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat < now then tat = now end
    local nxt = tat + amount * interval
    if nxt - now > window + 0.001 then
      if amount * interval > window then return {0, i - 1, -1} end
      return {0, i - 1, math.ceil(nxt - now - window)}
    end
    plan[i] = {nxt}
  else
    local maxIter, maxDur, maxRep, hash, ttl = tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]), ARGV[a+4], tonumber(ARGV[a+5])
    a = a + 6
    local st = redis.call('HMGET', KEYS[i], 'n', 't', 'h', 'r')
    local iter = tonumber(st[1] or '0') + 1
    local started = tonumber(st[2] or now)
    local rep = 1
    if hash ~= '' and st[3] == hash then rep = tonumber(st[4] or '0') + 1 end
    if (maxIter > 0 and iter > maxIter) or (maxDur > 0 and now - started > maxDur) or (maxRep > 0 and rep >= maxRep) then
      return {0, i - 1, -1}
    end
    plan[i] = {iter, started, hash, rep, ttl}
  end
end
local iterations = 0
a = 2
for i = 1, #KEYS do
  local kind = ARGV[a]
  local p = plan[i]
  if kind == 'b' then
    a = a + 4
    redis.call('INCRBYFLOAT', KEYS[i], p[1])
    if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], p[2]) end
  elseif kind == 'g' then
    a = a + 4
    redis.call('SET', KEYS[i], p[1], 'PX', math.ceil(p[1] - now) + 1000)
  else
    a = a + 6
    redis.call('HSET', KEYS[i], 'n', p[1], 't', p[2], 'h', p[3], 'r', p[4])
    redis.call('PEXPIRE', KEYS[i], p[5])
    iterations = p[1]
  end
end
return {1, iterations}
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
    if redis.call('EXISTS', KEYS[i]) == 1 then
      local v = tonumber(redis.call('INCRBYFLOAT', KEYS[i], delta))
      if v < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
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

export class RedisLimiterStore implements LimiterStore {
  constructor(private readonly client: RedisClient) {}

  async reserve(checks: readonly Check[], now: number): Promise<ReserveResult> {
    const keys: string[] = [];
    const args: Array<string | number> = [now];
    for (const c of checks) {
      keys.push(c.key);
      if (c.kind === 'b') args.push('b', c.amount, c.limit, Math.ceil(c.ttlMs));
      else if (c.kind === 'g') args.push('g', c.amount, c.intervalMs, c.windowMs);
      else args.push('r', c.maxIterations, c.maxDurationMs, c.maxRepeats, c.hash, c.ttlMs);
    }
    const reply = await this.client.eval(RESERVE, keys, args);
    if (reply instanceof RedisReplyError) throw reply;
    const [ok, a, b] = reply as number[];
    return ok === 1 ? { ok: true, iterations: a } : { ok: false, index: a, retryAfterMs: b };
  }

  async settle(adjustments: readonly Adjustment[], now: number): Promise<void> {
    if (!adjustments.length) return;
    const keys: string[] = [];
    const args: Array<string | number> = [now];
    for (const a of adjustments) {
      keys.push(a.key);
      if (a.kind === 'b') args.push('b', a.delta);
      else args.push('g', a.delta, a.intervalMs);
    }
    const reply = await this.client.eval(SETTLE, keys, args);
    if (reply instanceof RedisReplyError) throw reply;
  }
}
