import type { LlamaContext, LlamaContextSequence } from "node-llama-cpp";

/** A pool of context sequences: a request waits for a free one. */
export class SequencePool {
  private readonly free: LlamaContextSequence[] = [];
  private readonly waiters: ((sequence: LlamaContextSequence) => void)[] = [];
  constructor(context: LlamaContext, count: number) {
    for (let i = 0; i < count; i++) this.free.push(context.getSequence());
  }
  /**
   * A free sequence, or the first to be freed; a request cancelled while it waits leaves the queue (rejecting with its
   * signal's reason).
   */
  async acquire(signal?: AbortSignal): Promise<LlamaContextSequence> {
    signal?.throwIfAborted();
    const sequence = this.free.pop();
    if (sequence) return sequence;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(signal!.reason);
      };
      const waiter = (sequence: LlamaContextSequence) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(sequence);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }
  release(sequence: LlamaContextSequence): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(sequence);
    else this.free.push(sequence);
  }
}
