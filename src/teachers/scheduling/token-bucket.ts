import { refill } from "../../core/token-bucket.ts";
import { sleep } from "./sleep.ts";

/**
 * A token bucket refilled continuously at `perMinute` (`core/token-bucket.ts`). Its capacity is one
 * second's worth (at least 1), so requests are spread evenly instead of bursting
 * a minute's allowance at once. A take may leave the level negative (a request
 * larger than the capacity still runs); later takes wait for the debt to refill.
 */
export class TokenBucket {
  private level: number;
  private updated: number;
  private readonly capacity: number;
  private readonly perMs: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.perMs = perMinute / 60_000;
    this.capacity = Math.max(1, perMinute / 60);
    this.level = 1;
    this.updated = now();
  }

  private refill(): void {
    const now = this.now();
    this.level = refill(this.level, this.updated, this.perMinute, now, this.capacity);
    this.updated = now;
  }

  /** Waits (first come, first served) until a unit is available, then takes `amount`. */
  take(amount: number, signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(async () => {
      for (;;) {
        this.refill();
        if (this.level >= Math.min(1, amount)) break;
        await sleep(Math.ceil((Math.min(1, amount) - this.level) / this.perMs), signal);
      }
      this.level -= amount;
    });
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /** Corrects an earlier take (e.g. the true token count once a response is done). */
  adjust(amount: number): void {
    this.refill();
    this.level = Math.min(this.capacity, this.level - amount);
  }
}
