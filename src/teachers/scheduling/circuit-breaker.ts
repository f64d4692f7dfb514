export type CircuitState = "closed" | "open" | "half-open";

/**
 * Stops sending to a failing teacher: after `failures` consecutive failures
 * the circuit opens for `cooldownMs`; then one trial request is let through
 * (half-open), and its outcome closes or re-opens the circuit.
 */
export class CircuitBreaker {
  private consecutive = 0;
  private openedAt = 0;
  private trialInFlight = false;
  state: CircuitState = "closed";

  constructor(
    private readonly failures: number,
    private readonly cooldownMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether a request may go now; in half-open, only the one trial may. */
  allow(): boolean {
    if (this.state === "closed") return true;
    if (this.state === "open" && this.now() - this.openedAt >= this.cooldownMs) this.state = "half-open";
    if (this.state === "half-open" && !this.trialInFlight) {
      this.trialInFlight = true;
      return true;
    }
    return false;
  }

  /** Milliseconds until the circuit lets a trial through. */
  retryInMs(): number {
    return Math.max(0, this.cooldownMs - (this.now() - this.openedAt));
  }

  onSuccess(): void {
    this.consecutive = 0;
    this.trialInFlight = false;
    this.state = "closed";
  }

  onFailure(): void {
    this.trialInFlight = false;
    this.consecutive++;
    if (this.state === "half-open" || this.consecutive >= this.failures) {
      this.state = "open";
      this.openedAt = this.now();
    }
  }

  /** A request that ended without saying anything about the server's health (cancelled, client error). */
  onNeutral(): void {
    this.trialInFlight = false;
  }
}
