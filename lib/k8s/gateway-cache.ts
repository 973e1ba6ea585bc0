/**
 * The gateway's response cache for deterministic requests. The runtime keeps it where the
 * store is: per pod in memory, or in Redis shared by every replica.
 */
import type { Duration, Size } from 'cdk8s';
import type { SidecarConfigInput } from '../spec';

/** Options of a response cache. */
export interface GatewayCacheOptions {
  /**
   * How long an answer is served from the cache.
   * @default Duration.minutes(5)
   */
  readonly ttl?: Duration;
  /**
   * Entries kept in memory; the least recently used go first. Size the gateway's memory for it.
   * @default 10000
   */
  readonly maxEntries?: number;
  /**
   * Answers larger than this are not cached.
   * @default Size.mebibytes(1)
   */
  readonly maxEntrySize?: Size;
  /**
   * Also cache requests that are not deterministic (temperature other than 0).
   * @default false
   */
  readonly cacheSampled?: boolean;
  /**
   * Also cache streamed answers (replayed whole).
   * @default false
   */
  readonly cacheStreams?: boolean;
}

export class GatewayCache {
  /** In each gateway pod's memory (needs a memory store). */
  public static memory(options: GatewayCacheOptions = {}): GatewayCache {
    return new GatewayCache(false, options);
  }

  /** In Redis, shared by every gateway replica (needs `store: BudgetStore.redis(...)`). */
  public static redis(options: GatewayCacheOptions = {}): GatewayCache {
    return new GatewayCache(true, options);
  }

  private constructor(
    /** Whether the cache lives in the Redis store. */
    public readonly inRedis: boolean,
    private readonly options: GatewayCacheOptions,
  ) {}

  /** @internal */
  public _toConfig(): NonNullable<SidecarConfigInput['cache']> {
    const o = this.options;
    return {
      ttlMs: o.ttl?.toMilliseconds(),
      maxEntries: o.maxEntries,
      maxBytes: o.maxEntrySize ? o.maxEntrySize.toKibibytes() * 1024 : undefined,
      sampled: o.cacheSampled,
      streams: o.cacheStreams,
    };
  }
}
