/**
 * A push-to-pull bridge: a producer pushes values (from callbacks), a consumer
 * iterates them; `fail` ends the iteration with an error, `end` cleanly.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly values: T[] = [];
  private waiting: (() => void) | undefined;
  private ended = false;
  private error: { value: unknown } | undefined;

  push(value: T): void {
    if (this.ended) return;
    this.values.push(value);
    this.wake();
  }
  end(): void {
    this.ended = true;
    this.wake();
  }
  fail(error: unknown): void {
    if (this.ended) return;
    this.error = { value: error };
    this.ended = true;
    this.wake();
  }
  private wake(): void {
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const value = this.values.shift();
      if (value !== undefined) {
        yield value;
        continue;
      }
      if (this.ended) {
        if (this.error) throw this.error.value;
        return;
      }
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }
}
