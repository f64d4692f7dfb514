import { refill, type Admission, type Lease, type LimitKind, type Limiter, type LimitScope } from "./limiter.ts";

interface Bucket {
  level: number;
  updated: number;
}

/** Everything held for one scope (a key, an org): its two buckets and its requests in flight. */
interface ScopeState {
  rpm: Bucket | undefined;
  tpm: Bucket | undefined;
  inFlight: number;
}

/** Limits held in this process: exact for one server, the default. */
export class MemoryLimiter implements Limiter {
  private readonly scopes = new Map<string, ScopeState>();

  constructor(private readonly now: () => number = Date.now) {}

  private state(id: string): ScopeState {
    let state = this.scopes.get(id);
    if (!state) {
      state = { rpm: undefined, tpm: undefined, inFlight: 0 };
      this.scopes.set(id, state);
    }
    return state;
  }

  /** The bucket refilled to `now` (a new bucket starts full). */
  private static refilled(bucket: Bucket | undefined, perMinute: number, now: number): Bucket {
    if (!bucket) return { level: perMinute, updated: now };
    bucket.level = refill(bucket.level, bucket.updated, perMinute, now);
    bucket.updated = now;
    return bucket;
  }

  async admit(_requestId: string, scopes: readonly LimitScope[], promptTokens: number): Promise<Admission> {
    const now = this.now();
    const states = scopes.map((scope) => this.state(scope.id));
    // Check every scope first, then take from all: a refusal takes nothing.
    for (let i = 0; i < scopes.length; i++) {
      const scope = scopes[i]!;
      const state = states[i]!;
      const refusal = (limit: LimitKind, retryAfterMs: number): Admission => ({ ok: false, limit, scope: scope.id, retryAfterMs: Math.max(1, Math.ceil(retryAfterMs)) });
      if (scope.rpm) {
        state.rpm = MemoryLimiter.refilled(state.rpm, scope.rpm, now);
        if (state.rpm.level < 1) return refusal("rpm", ((1 - state.rpm.level) * 60_000) / scope.rpm);
      }
      if (scope.tpm) {
        state.tpm = MemoryLimiter.refilled(state.tpm, scope.tpm, now);
        const need = Math.min(promptTokens, scope.tpm);
        if (state.tpm.level < need) return refusal("tpm", ((need - state.tpm.level) * 60_000) / scope.tpm);
      }
      if (scope.concurrency && state.inFlight >= scope.concurrency) return refusal("concurrency", 1_000);
    }
    for (let i = 0; i < scopes.length; i++) {
      const scope = scopes[i]!;
      const state = states[i]!;
      if (scope.rpm) state.rpm!.level -= 1;
      if (scope.tpm) state.tpm!.level -= promptTokens;
      if (scope.concurrency) state.inFlight++;
    }
    let released = false;
    const lease: Lease = {
      addTokens: (tokens) => {
        const at = this.now();
        for (let i = 0; i < scopes.length; i++) {
          const scope = scopes[i]!;
          if (scope.tpm) (states[i]!.tpm = MemoryLimiter.refilled(states[i]!.tpm, scope.tpm, at)).level -= tokens;
        }
      },
      release: async () => {
        if (released) return;
        released = true;
        for (let i = 0; i < scopes.length; i++) if (scopes[i]!.concurrency) states[i]!.inFlight--;
      },
    };
    return { ok: true, lease };
  }

  async close(): Promise<void> {}
}
