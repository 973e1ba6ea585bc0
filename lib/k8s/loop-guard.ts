/** Guards per agent run (x-agent-run-id): a tripped guard answers loop_detected. */
import type { Duration } from 'cdk8s';
import type { SidecarConfigInput } from '../spec';

/** Options for `LoopGuard.of`; give at least one limit. */
export interface LoopGuardOptions {
  /**
   * LLM calls per run.
   * @default - no limit
   */
  readonly maxIterations?: number;
  /**
   * Tokens per run, all types.
   * @default - no limit
   */
  readonly maxTokens?: number;
  /**
   * Cost per run in USD.
   * @default - no limit
   */
  readonly maxCostUsd?: number;
  /**
   * Wall time from a run's first call.
   * @default - no limit
   */
  readonly maxDuration?: Duration;
  /**
   * Stuck-loop detector: the same request this many times in a row trips the guard (>= 2).
   * @default - off
   */
  readonly maxRepeats?: number;
  /**
   * How long a run's state is kept after its last call.
   * @default Duration.hours(24)
   */
  readonly runTtl?: Duration;
}

export class LoopGuard {
  public static of(options: LoopGuardOptions): LoopGuard {
    const { maxIterations, maxTokens, maxCostUsd, maxDuration, maxRepeats } = options;
    if ([maxIterations, maxTokens, maxCostUsd, maxDuration, maxRepeats].every((v) => v === undefined)) {
      throw new Error("'loopGuard': LoopGuard.of() needs at least one limit (maxIterations, maxTokens, maxCostUsd, maxDuration or maxRepeats).");
    }
    return new LoopGuard(options);
  }

  private constructor(public readonly options: LoopGuardOptions) {}

  /** @internal */
  public _toConfig(): NonNullable<SidecarConfigInput['loopGuard']> {
    const o = this.options;
    return {
      maxIterations: o.maxIterations,
      maxTokens: o.maxTokens,
      maxCostUsd: o.maxCostUsd,
      maxDurationMs: o.maxDuration?.toMilliseconds(),
      maxRepeats: o.maxRepeats,
      runTtlMs: o.runTtl?.toMilliseconds(),
    };
  }
}
