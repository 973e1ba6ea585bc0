/**
 * Per-provider circuit breaker. After `threshold` consecutive failures a provider is skipped
 * for `cooldownMs` (longer if it asked for more with Retry-After); then one trial request is let
 * through, and its outcome closes or reopens the circuit.
 */

export type Admission = 'closed' | 'trial' | false;

export class ProviderHealth {
  private failures = 0;
  private openUntil = 0;
  private trialInFlight = false;

  constructor(
    private readonly threshold: number,
    private readonly cooldownMs: number,
  ) {}

  /** Whether a request may go to the provider now; 'trial' claims the single half-open slot. */
  admit(now: number): Admission {
    if (this.openUntil === 0) return 'closed';
    if (now < this.openUntil || this.trialInFlight) return false;
    this.trialInFlight = true;
    return 'trial';
  }

  succeeded(): void {
    this.failures = 0;
    this.openUntil = 0;
    this.trialInFlight = false;
  }

  failed(now: number, retryAfterMs = 0): void {
    this.failures++;
    if (this.trialInFlight || this.failures >= this.threshold) {
      this.openUntil = now + Math.max(this.cooldownMs, retryAfterMs);
    }
    this.trialInFlight = false;
  }

  /** The trial request ended without a verdict (client gone): let another one try. */
  abandoned(): void {
    this.trialInFlight = false;
  }

  /** Open (skipped), counting the half-open state as closed. */
  isOpen(now: number): boolean {
    return this.openUntil > now;
  }

  /** Milliseconds until the provider takes a trial request again (0 if it does now). */
  msUntilTrial(now: number): number {
    return Math.max(0, this.openUntil - now);
  }
}
