/**
 * Where budgets, rate limits, run state and pending approvals live: in each pod's memory, or in
 * Redis shared by every replica.
 */
import type { Duration } from 'cdk8s';
import type { INetworkPolicyPeer } from 'cdk8s-plus-28';
import { checkPort } from './network';
import type { SecretKey } from './secrets';

/** What the runtime does when Redis cannot be reached. */
export enum StoreUnavailableBehavior {
  /** Reject (503 budget_store_unavailable): spend can never exceed a budget. */
  FAIL_CLOSED = 'fail-closed',
  /** Allow, unenforced. */
  FAIL_OPEN = 'fail-open',
  /** Enforce per process until Redis is back. */
  LOCAL = 'local',
}

/** Options for `BudgetStore.redis`. */
export interface RedisStoreOptions {
  /**
   * redis://HOST:PORT[/DB], or rediss:// for TLS; no credentials in the URL. Exactly one of `url` and `urlSecret`.
   * @default - none
   */
  readonly url?: string;
  /**
   * A Secret holding the URL, for an endpoint only known once the cloud side is applied. The
   * runtime reads it at start: a changed URL takes a rollout (`kubectl rollout restart`).
   * @default - none
   */
  readonly urlSecret?: SecretKey;
  /**
   * The Redis port, for the egress NetworkPolicy when the URL is a secret.
   * @default 6379
   */
  readonly port?: number;
  /**
   * ACL user (Redis 6+).
   * @default - the default user
   */
  readonly username?: string;
  /**
   * AUTH password or token, mounted only into the runtime container.
   * @default - no AUTH
   */
  readonly passwordSecret?: SecretKey;
  /**
   * PEM bundle to trust for rediss:// (e.g. cert-manager's `ca.crt`).
   * @default - the system CAs
   */
  readonly tlsCaSecret?: SecretKey;
  /**
   * When Redis cannot be reached.
   * @default StoreUnavailableBehavior.FAIL_CLOSED
   */
  readonly onUnavailable?: StoreUnavailableBehavior;
  /**
   * A store call slower than this counts as Redis being unavailable.
   * @default Duration.millis(250)
   */
  readonly commandTimeout?: Duration;
  /**
   * Key prefix, to share one Redis between platforms.
   * @default 'cdka:'
   */
  readonly keyPrefix?: string;
  /**
   * The Redis pods (or a NetworkPolicyIpBlock for a managed Redis), for the egress NetworkPolicy.
   * @default - the URL's port to any pod and any address
   */
  readonly peer?: INetworkPolicyPeer;
}

export class BudgetStore {
  /** Each pod keeps its own counters (one replica, zero setup). */
  public static memory(): BudgetStore {
    return new BudgetStore(undefined);
  }

  /** Redis, shared by every replica. */
  public static redis(options: RedisStoreOptions): BudgetStore {
    if ((options.url === undefined) === (options.urlSecret === undefined)) {
      throw new Error("'store': BudgetStore.redis needs exactly one of 'url' and 'urlSecret'.");
    }
    if (options.urlSecret) {
      if (options.port !== undefined) checkPort("'store': 'port'", options.port);
      return new BudgetStore(options, undefined, options.port ?? 6379);
    }
    const match = /^rediss?:\/\/([^/\s:@[\]]+|\[[0-9a-fA-F:.]+\])(?::(\d+))?(\/\d{1,2})?$/.exec(options.url!);
    if (!match) {
      throw new Error(
        `'store': BudgetStore.redis url ('${options.url}') must be redis://HOST:PORT[/DB] or rediss://HOST:PORT[/DB], without credentials (use username and passwordSecret).`,
      );
    }
    const port = match[2] ? Number(match[2]) : 6379;
    checkPort("'store': the Redis port", port);
    return new BudgetStore(options, match[1], port);
  }

  private constructor(
    /** The Redis options, for a Redis store. */
    public readonly redis: RedisStoreOptions | undefined,
    /** The Redis host, for a Redis store with a literal URL. */
    public readonly host?: string,
    /** The Redis TCP port, for a Redis store. */
    public readonly port?: number,
  ) {}

  /** Whether every replica shares the counters. */
  public get isShared(): boolean {
    return this.redis !== undefined;
  }
}
