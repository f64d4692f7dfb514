/**
 * A concurrency limit that adapts to the server (AIMD, as TCP does): halved
 * when the server says it is overloaded (429, 503), grown by one after a
 * window of successes, never above the configured maximum.
 */
export class AdaptiveLimit {
  private active = 0;
  private successes = 0;
  private readonly waiters: (() => void)[] = [];
  limit: number;

  constructor(
    readonly maximum: number,
    private readonly adaptive: boolean,
  ) {
    this.limit = maximum;
  }

  get inFlight(): number {
    return this.active;
  }

  async acquire(signal?: AbortSignal): Promise<void> {
    if (this.active < this.limit && this.waiters.length === 0) {
      this.active++;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener("abort", onAbort);
        this.active++;
        resolve();
      };
      const onAbort = () => {
        const index = this.waiters.indexOf(grant);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(signal?.reason as Error);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(grant);
    });
  }

  release(): void {
    this.active--;
    this.drain();
  }

  private drain(): void {
    while (this.active < this.limit && this.waiters.length > 0) this.waiters.shift()!();
  }

  onSuccess(): void {
    if (!this.adaptive || this.limit >= this.maximum) return;
    if (++this.successes >= this.limit) {
      this.successes = 0;
      this.limit++;
      this.drain();
    }
  }

  onOverload(): void {
    if (!this.adaptive) return;
    this.successes = 0;
    this.limit = Math.max(1, Math.floor(this.limit / 2));
  }
}
