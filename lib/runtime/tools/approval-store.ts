/**
 * Where tool calls held for approval (and idempotent tool calls) are kept: in memory, or in
 * Redis so that every replica sees the same approvals.
 *
 * A call moves pending -> approved -> executing -> done, or pending -> denied, or
 * pending -> expired. Every move is one atomic check-and-set (synchronous in memory, a Lua
 * script in Redis), so however many approvals of one call arrive at once, on however many
 * processes, one claims approved -> executing and the tool runs once. A pending call past its
 * expiry is moved to expired by whichever operation touches it first, atomically too.
 */
import type { RedisClient, RespValue } from '../store/redis-client';
import { LuaScript, RedisReplyError, RedisUnavailableError } from '../store/redis-client';

export type ApprovalStatus = 'pending' | 'approved' | 'executing' | 'done' | 'denied' | 'expired';

export type ToolOutcome = 'success' | 'error' | 'timeout';

/** What the tool answered (or what we answered for it when it could not be reached). */
export interface ToolResult {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
  readonly outcome: ToolOutcome;
}

export interface ApprovalRecord {
  readonly id: string;
  readonly tool: string;
  readonly status: ApprovalStatus;
  /** false: an idempotent call of a tool without approval, kept for its replays only. */
  readonly requiresApproval: boolean;
  /** The call's JSON body as the agent sent it. */
  readonly arguments: string;
  /** sha256 of the body, to refuse an idempotency key reused with other arguments. */
  readonly bodyHash: string;
  readonly user?: string;
  readonly run?: string;
  readonly idempotencyKey?: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly decidedAt?: number;
  readonly approver?: string;
  readonly reason?: string;
  readonly startedAt?: number;
  readonly finishedAt?: number;
  readonly result?: ToolResult;
}

export type ApprovalPatch = Partial<Pick<ApprovalRecord, 'decidedAt' | 'approver' | 'reason' | 'startedAt' | 'finishedAt' | 'result'>>;

export interface Transition {
  /** The record after the call; undefined when there is no such record. */
  readonly record?: ApprovalRecord;
  /** This call moved the record to the requested status. */
  readonly changed: boolean;
  /** This call found the record pending past its expiry and moved it to expired. */
  readonly expired: boolean;
}

export interface ApprovalStore {
  /**
   * Stores a new record unless one with its id exists (an idempotent retry), in which case that
   * one is returned (expired first if it is pending past its expiry).
   */
  create(record: ApprovalRecord, now: number): Promise<{ record: ApprovalRecord; created: boolean; expired: boolean }>;
  /**
   * Moves a record whose status is one of `from` to `to`, applying `patch`, atomically. A
   * pending record past its expiry is expired first. With an empty `from` it only reads
   * (and expires).
   */
  transition(id: string, from: readonly ApprovalStatus[], to: ApprovalStatus, patch: ApprovalPatch, now: number): Promise<Transition>;
  /** Approvals (not plain idempotent calls) still kept, newest first. */
  list(now: number): Promise<ApprovalRecord[]>;
  /** Ids of pending approvals past their expiry, for the sweeper to expire. */
  dueForExpiry(now: number): Promise<string[]>;
  close(): void;
}

/** How long a decided call (and its result) stays readable after its last change. */
export const RETENTION_MS = 24 * 3_600_000;
const MAX_LISTED = 1_000;
/** In memory, at most this many calls are kept (idempotent calls included). */
const MAX_MEMORY_RECORDS = 100_000;

function movable(status: ApprovalStatus, from: readonly ApprovalStatus[]): boolean {
  return from.includes(status);
}

export class MemoryApprovalStore implements ApprovalStore {
  private readonly records = new Map<string, { record: ApprovalRecord; keepUntil: number }>();

  async create(record: ApprovalRecord, now: number): Promise<{ record: ApprovalRecord; created: boolean; expired: boolean }> {
    if (this.records.has(record.id)) {
      const { record: existing, expired } = this.touch(record.id, now)!;
      return { record: existing, created: false, expired };
    }
    this.records.set(record.id, { record, keepUntil: Math.max(record.expiresAt, now) + RETENTION_MS });
    // Bounded: the oldest calls go first (Map order is insertion order).
    if (this.records.size > MAX_MEMORY_RECORDS) this.records.delete(this.records.keys().next().value!);
    return { record, created: true, expired: false };
  }

  async transition(id: string, from: readonly ApprovalStatus[], to: ApprovalStatus, patch: ApprovalPatch, now: number): Promise<Transition> {
    const touched = this.touch(id, now);
    if (!touched) return { changed: false, expired: false };
    if (!movable(touched.record.status, from)) return { record: touched.record, changed: false, expired: touched.expired };
    const record: ApprovalRecord = { ...touched.record, ...patch, status: to };
    this.records.set(id, { record, keepUntil: now + RETENTION_MS });
    return { record, changed: true, expired: touched.expired };
  }

  async list(now: number): Promise<ApprovalRecord[]> {
    this.prune(now);
    const out: ApprovalRecord[] = [];
    for (const { record } of this.records.values()) if (record.requiresApproval) out.push(record);
    return out.sort((a, b) => b.createdAt - a.createdAt).slice(0, MAX_LISTED);
  }

  async dueForExpiry(now: number): Promise<string[]> {
    this.prune(now);
    const ids: string[] = [];
    for (const { record } of this.records.values()) if (record.status === 'pending' && record.expiresAt <= now) ids.push(record.id);
    return ids;
  }

  close(): void {
    this.records.clear();
  }

  /** The record, expired first when it is pending past its expiry. */
  private touch(id: string, now: number): { record: ApprovalRecord; expired: boolean } | undefined {
    const entry = this.records.get(id);
    if (!entry) return undefined;
    if (entry.record.status === 'pending' && entry.record.expiresAt <= now) {
      const record: ApprovalRecord = { ...entry.record, status: 'expired', decidedAt: now };
      this.records.set(id, { record, keepUntil: now + RETENTION_MS });
      return { record, expired: true };
    }
    return { record: entry.record, expired: false };
  }

  private prune(now: number): void {
    for (const [id, entry] of this.records) if (entry.keepUntil <= now) this.records.delete(id);
  }
}

// ---- Redis ---------------------------------------------------------------------------------
// A record is a hash: the status and the expiry are fields the scripts read; everything else is
// stored verbatim (the call's arguments are never decoded and re-encoded by Lua's cjson).
// Pending approvals are also in a sorted set by expiry (for the sweeper), and every approval in
// an index by creation time (for the approvers' list).

/** Expires a pending record past its expiry. KEYS: record, pending set. ARGV[1] now, ARGV[2] id. */
const EXPIRE_IF_DUE = `
local function expireIfDue(now, id)
  local status = redis.call('HGET', KEYS[1], 'status')
  if status == 'pending' and tonumber(redis.call('HGET', KEYS[1], 'expiresAt')) <= now then
    redis.call('HSET', KEYS[1], 'status', 'expired', 'decidedAt', ARGV[1])
    redis.call('ZREM', KEYS[2], id)
    return 'expired', 1
  end
  return status, 0
end
`;

/**
 * KEYS: record, pending set, index. ARGV: now, id, keepMs, pending score (expiresAt, or '' when
 * not an approval), field, value, ...
 * Returns {1} when created, {0, expired, fields} when the record exists.
 */
const CREATE = new LuaScript(`${EXPIRE_IF_DUE}
local now = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  local _, expired = expireIfDue(now, ARGV[2])
  return {0, expired, redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return {1}
`);

/**
 * KEYS: record, pending set. ARGV: now, id, keepMs, to, n, from1..fromN, field, value, ...
 * Returns {changed, expired, fields} ({0, 0} without a record).
 */
const TRANSITION = new LuaScript(`${EXPIRE_IF_DUE}
local now = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return {0, 0}
end
local status, expired = expireIfDue(now, ARGV[2])
local n = tonumber(ARGV[5])
local changed = 0
for i = 1, n do
  if ARGV[5 + i] == status then changed = 1 end
end
if changed == 1 then
  local fields = {'status', ARGV[4]}
  for i = 6 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
  if status == 'pending' then redis.call('ZREM', KEYS[2], ARGV[2]) end
end
if changed == 1 or expired == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {changed, expired, redis.call('HGETALL', KEYS[1])}
`);

export class RedisApprovalStore implements ApprovalStore {
  private readonly pendingKey: string;
  private readonly indexKey: string;
  private readonly firstConnect: Promise<void>;

  /** Keys: `${prefix}ap:${agent}:<id>` per record, `${prefix}ap-pending:${agent}`, `${prefix}ap-index:${agent}`. */
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly agent: string,
    /** How long a call made right after start waits for the first connection. */
    connectWaitMs = 2_000,
  ) {
    this.pendingKey = `${prefix}ap-pending:${agent}`;
    this.indexKey = `${prefix}ap-index:${agent}`;
    this.firstConnect = new Promise<void>((resolve) => {
      const deadline = Date.now() + connectWaitMs;
      const poll = () => {
        if (redis.isUp || Date.now() >= deadline) return resolve();
        setTimeout(poll, 10).unref();
      };
      poll();
    });
  }

  private key(id: string): string {
    return `${this.prefix}ap:${this.agent}:${id}`;
  }

  async create(record: ApprovalRecord, now: number): Promise<{ record: ApprovalRecord; created: boolean; expired: boolean }> {
    const keepMs = Math.max(record.expiresAt - now, 0) + RETENTION_MS;
    const reply = await this.eval(CREATE, [this.key(record.id), this.pendingKey, this.indexKey], [now, record.id, keepMs, record.requiresApproval ? record.expiresAt : '', ...toFields(record)]);
    const [created, expired, fields] = reply as [number, number?, RespValue[]?];
    if (created === 1) return { record, created: true, expired: false };
    return { record: fromFields(record.id, fields as string[]), created: false, expired: expired === 1 };
  }

  async transition(id: string, from: readonly ApprovalStatus[], to: ApprovalStatus, patch: ApprovalPatch, now: number): Promise<Transition> {
    const reply = await this.eval(TRANSITION, [this.key(id), this.pendingKey], [now, id, RETENTION_MS, to, from.length, ...from, ...patchFields(patch)]);
    const [changed, expired, fields] = reply as [number, number, RespValue[]?];
    if (!fields) return { changed: false, expired: false };
    return { record: fromFields(id, fields as string[]), changed: changed === 1, expired: expired === 1 };
  }

  async list(now: number): Promise<ApprovalRecord[]> {
    await this.ready();
    await this.call(['ZREMRANGEBYSCORE', this.indexKey, '-inf', now - 30 * RETENTION_MS]);
    const ids = (await this.call(['ZREVRANGE', this.indexKey, 0, MAX_LISTED - 1])) as string[];
    const all = await Promise.all(ids.map((id) => this.call(['HGETALL', this.key(id)])));
    const out: ApprovalRecord[] = [];
    const gone: string[] = [];
    all.forEach((fields, i) => {
      if (Array.isArray(fields) && fields.length) out.push(fromFields(ids[i], fields as string[]));
      else gone.push(ids[i]);
    });
    if (gone.length) await this.call(['ZREM', this.indexKey, ...gone]);
    return out;
  }

  async dueForExpiry(now: number): Promise<string[]> {
    if (!this.redis.isUp) return [];
    return (await this.call(['ZRANGEBYSCORE', this.pendingKey, '-inf', now, 'LIMIT', 0, 100])) as string[];
  }

  close(): void {
    // The connection is shared with the rest of the runtime, which closes it.
  }

  private ready(): Promise<void> {
    return this.redis.isUp ? Promise.resolve() : this.firstConnect;
  }

  private async call(args: ReadonlyArray<string | number>): Promise<RespValue> {
    return check(await this.redis.call(args));
  }

  private async eval(script: LuaScript, keys: string[], args: ReadonlyArray<string | number>): Promise<RespValue> {
    await this.ready();
    return check(await this.redis.eval(script, keys, args));
  }
}

function check(reply: RespValue): RespValue {
  if (reply instanceof RedisReplyError) throw new RedisUnavailableError(`approval store: ${reply.message}`);
  return reply;
}

const NUMBER_FIELDS = ['createdAt', 'expiresAt', 'decidedAt', 'startedAt', 'finishedAt'] as const;
const STRING_FIELDS = ['tool', 'status', 'arguments', 'bodyHash', 'user', 'run', 'idempotencyKey', 'approver', 'reason'] as const;

function toFields(record: ApprovalRecord): string[] {
  const out: string[] = ['requiresApproval', record.requiresApproval ? '1' : '0'];
  for (const f of STRING_FIELDS) if (record[f] !== undefined) out.push(f, record[f] as string);
  for (const f of NUMBER_FIELDS) if (record[f] !== undefined) out.push(f, String(record[f]));
  if (record.result) out.push('result', JSON.stringify(record.result));
  return out;
}

function patchFields(patch: ApprovalPatch): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) continue;
    out.push(key, key === 'result' ? JSON.stringify(value) : String(value));
  }
  return out;
}

function fromFields(id: string, flat: string[]): ApprovalRecord {
  const h: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) h[flat[i]] = flat[i + 1];
  const num = (f: string) => (h[f] === undefined ? undefined : Number(h[f]));
  return {
    id,
    tool: h.tool,
    status: h.status as ApprovalStatus,
    requiresApproval: h.requiresApproval === '1',
    arguments: h.arguments ?? '',
    bodyHash: h.bodyHash ?? '',
    user: h.user,
    run: h.run,
    idempotencyKey: h.idempotencyKey,
    createdAt: num('createdAt')!,
    expiresAt: num('expiresAt')!,
    decidedAt: num('decidedAt'),
    approver: h.approver,
    reason: h.reason,
    startedAt: num('startedAt'),
    finishedAt: num('finishedAt'),
    result: h.result ? (JSON.parse(h.result) as ToolResult) : undefined,
  };
}
