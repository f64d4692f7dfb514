import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import type { SettleUsage } from "./store/ledger.ts";
import type { Store } from "./store/store.ts";

const FIRST_RETRY_MS = 1_000;
const LONGEST_RETRY_MS = 30_000;
/** At shutdown, the last try waits at most this long for the store. */
const LAST_TRY_MS = 5_000;

/**
 * Settlements the store could not take when their requests ended (PostgreSQL
 * unreachable, a SQLite journal that could not be written), tried again until
 * they land: after 1 s, doubling to every 30 s. Each keeps the usage it
 * should record — a streamed answer the client received is charged, a
 * withheld answer (the client was told nothing was charged) is recorded at
 * no cost. A settlement is idempotent by request id, so one that did land
 * after all (its reply lost with the connection) is not charged twice. What is
 * still pending when the server stops stays a hold, which recovery releases
 * (the next start of this instance, or the hourly sweep of any replica).
 */
export class SettlementRetry {
  private readonly pending = new Map<string, SettleUsage>();
  private timer: NodeJS.Timeout | undefined;
  private delay = FIRST_RETRY_MS;
  private running: Promise<void> | undefined;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  /** A settlement to try again later. */
  add(requestId: string, usage: SettleUsage): void {
    this.pending.set(requestId, usage);
    this.schedule();
  }

  /** Settlements not yet landed. */
  get size(): number {
    return this.pending.size;
  }

  private schedule(): void {
    if (this.timer || this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.retry().finally(() => {
        this.running = undefined;
        if (this.pending.size > 0) this.schedule();
      });
    }, this.delay);
    this.timer.unref();
  }

  /** One pass over what is pending; it stops at the first failure (the store is still away) and waits longer next time. */
  private async retry(): Promise<void> {
    for (const [requestId, usage] of this.pending) {
      try {
        const settled = await this.store.settle(requestId, usage);
        this.pending.delete(requestId);
        this.logger.log("info", "api.settle_retried", { requestId, settled, costMicros: usage.cost, outcome: usage.outcome });
      } catch (error) {
        this.delay = Math.min(this.delay * 2, LONGEST_RETRY_MS);
        this.logger.log("warn", "api.settle_retry_failed", { pending: this.pending.size, retryInMs: this.delay, error: errorMessage(error) });
        return;
      }
    }
    this.delay = FIRST_RETRY_MS;
  }

  /** At shutdown: one last try (bounded); what still fails is left to recovery. */
  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    if (this.pending.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.retry(), new Promise((resolve) => (timer = setTimeout(resolve, LAST_TRY_MS)))]);
    clearTimeout(timer);
    if (this.pending.size > 0) this.logger.log("error", "api.settlements_left_to_recovery", { pending: this.pending.size, requestIds: [...this.pending.keys()].slice(0, 100) });
  }
}
