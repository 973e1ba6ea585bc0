/**
 * Response cache for deterministic requests: an exact match on the normalized request (its JSON
 * with keys sorted, so key order does not matter) within one tenant (the agent: agents never
 * share answers). In memory (least recently used first out) or in Redis when the store is Redis,
 * with a TTL. Only what the client was sent is kept (after the output guardrails).
 */
import { hash } from 'node:crypto';
import type { SidecarConfig } from '../../spec/config';
import { RedisReplyError, type RedisClient } from '../store/redis-client';

export interface CachedAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

type CacheConfig = NonNullable<SidecarConfig['cache']>;

export interface ResponseCache {
  /** The cached answer, or null (a miss, or the store failed: the request then goes upstream). */
  get(key: string): CachedAnswer | null | Promise<CachedAnswer | null>;
  set(key: string, answer: CachedAnswer): void;
}

/** Whether a request may be answered from the cache at all. */
export function cacheable(config: CacheConfig, body: Record<string, unknown>, stream: boolean): boolean {
  if (stream && !config.streams) return false;
  // Deterministic: temperature explicitly 0 (the APIs default to sampling), one choice.
  if (!config.sampled && body.temperature !== 0) return false;
  return body.n === undefined || body.n === 1;
}

/** The key of a request: tenant, API path and the request with its keys sorted. */
export function cacheKey(tenant: string, path: string, body: Record<string, unknown>): string {
  return `${tenant}:${hash('sha256', `${path}\u0000${canonicalJson(body)}`, 'base64url')}`;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return `{${Object.keys(obj)
      .sort()
      .filter((k) => obj[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

export class MemoryResponseCache implements ResponseCache {
  // A Map keeps insertion order: re-inserting on a hit makes it an LRU.
  private readonly entries = new Map<string, { answer: CachedAnswer; expiresAt: number }>();

  constructor(private readonly config: CacheConfig) {}

  get(key: string): CachedAnswer | null {
    const entry = this.entries.get(key);
    if (!entry) return null;
    this.entries.delete(key);
    if (entry.expiresAt <= Date.now()) return null;
    this.entries.set(key, entry);
    return entry.answer;
  }

  set(key: string, answer: CachedAnswer): void {
    if (answer.body.length > this.config.maxBytes) return;
    this.entries.delete(key);
    this.entries.set(key, { answer, expiresAt: Date.now() + this.config.ttlMs });
    while (this.entries.size > this.config.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }
}

export class RedisResponseCache implements ResponseCache {
  constructor(
    private readonly config: CacheConfig,
    private readonly client: RedisClient,
    private readonly prefix: string,
  ) {}

  get(key: string): Promise<CachedAnswer | null> {
    return this.client.call(['GET', `${this.prefix}cache:${key}`]).then(
      (reply) => {
        if (typeof reply !== 'string') return null;
        const nl = reply.indexOf('\n');
        const [status, contentType] = JSON.parse(reply.slice(0, nl)) as [number, string];
        return { status, contentType, body: Buffer.from(reply.slice(nl + 1), 'base64') };
      },
      () => null,
    );
  }

  set(key: string, answer: CachedAnswer): void {
    if (answer.body.length > this.config.maxBytes) return;
    const value = `${JSON.stringify([answer.status, answer.contentType])}\n${answer.body.toString('base64')}`;
    this.client.call(['SET', `${this.prefix}cache:${key}`, value, 'PX', this.config.ttlMs]).then(
      (reply) => reply instanceof RedisReplyError && undefined,
      () => undefined, // a cache that cannot store is only a slower cache
    );
  }
}
