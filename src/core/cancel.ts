/** Something told when a cancellation fires (an object, so a handler can be its own listener without a closure). */
export interface CancelListener {
  handleEvent(): void;
}

/**
 * One request's cancellation (its client went away, its hold did not
 * commit, another of its choices failed), cheap to make. Every request needs
 * one and few are ever cancelled, while an AbortController costs ~3 µs to make
 * in Node 20 (an EventTarget) and its listeners more again: on the gateway's
 * hot path that was ~4 % of a request's CPU. `signal` makes a real AbortSignal
 * only for what needs one (the embedded engine).
 */
export class Cancel {
  aborted = false;
  reason: unknown = undefined;
  private listeners: CancelListener[] | undefined;
  private controller: AbortController | undefined;

  /** A cancellation that fires when `signal` does (an upstream health check's timeout, a caller's own signal). */
  static from(signal: AbortSignal): Cancel {
    const cancel = new Cancel();
    if (signal.aborted) cancel.abort(signal.reason);
    else signal.addEventListener("abort", () => cancel.abort(signal.reason), { once: true });
    return cancel;
  }

  /** Fires once: every listener is told, and the signal (if one was made) aborts with the same reason. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
    const listeners = this.listeners;
    this.listeners = undefined;
    for (const listener of listeners ?? []) listener.handleEvent();
  }

  /** Tells `listener` when this fires (never if it already has: check `aborted` first). */
  listen(listener: CancelListener): void {
    if (this.aborted) return;
    (this.listeners ??= []).push(listener);
  }

  unlisten(listener: CancelListener): void {
    const listeners = this.listeners;
    if (!listeners) return;
    const index = listeners.indexOf(listener);
    if (index >= 0) listeners.splice(index, 1);
  }

  /**
   * A cancellation that fires with this one, and may also fire on its own (the choices of one request, stopped together
   * when one fails).
   */
  child(): Cancel {
    const child = new Cancel();
    if (this.aborted) child.abort(this.reason);
    else this.listen({ handleEvent: () => child.abort(this.reason) });
    return child;
  }

  /** An AbortSignal that aborts with this (made on first use). */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }
}
