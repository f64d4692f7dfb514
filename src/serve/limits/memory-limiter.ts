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

function refusal(limit: LimitKind, scope: string, retryAfterMs: number): Admission {
  return { ok: false, limit, scope, retryAfterMs: Math.max(1, Math.ceil(retryAfterMs)) };
}

/** A request's hold on its scopes (a class: no closures made per request on the hot path). */
class MemoryLease implements Lease {
  private released = false;
  constructor(
    private readonly scopes: readonly LimitScope[],
    private readonly states: ScopeState[],
    private readonly now: () => number,
  ) {}

  addTokens(tokens: number): void {
    const at = this.now();
    for (let i = 0; i < this.scopes.length; i++) {
      const scope = this.scopes[i]!;
      if (scope.tpm) (this.states[i]!.tpm = refilled(this.states[i]!.tpm, scope.tpm, at)).level -= tokens;
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    for (let i = 0; i < this.scopes.length; i++) if (this.scopes[i]!.concurrency) this.states[i]!.inFlight--;
  }
}

/** The bucket refilled to `now` (a new bucket starts full). */
function refilled(bucket: Bucket | undefined, perMinute: number, now: number): Bucket {
  if (!bucket) return { level: perMinute, updated: now };
  bucket.level = refill(bucket.level, bucket.updated, perMinute, now);
  bucket.updated = now;
  return bucket;
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

  async admit(_requestId: string, scopes: readonly LimitScope[], promptTokens: number): Promise<Admission> {
    const now = this.now();
    const states = scopes.map((scope) => this.state(scope.id));
    // Check every scope first, then take from all: a refusal takes nothing.
    for (let i = 0; i < scopes.length; i++) {
      const scope = scopes[i]!;
      const state = states[i]!;
      if (scope.rpm) {
        state.rpm = refilled(state.rpm, scope.rpm, now);
        if (state.rpm.level < 1) return refusal("rpm", scope.id, ((1 - state.rpm.level) * 60_000) / scope.rpm);
      }
      if (scope.tpm) {
        state.tpm = refilled(state.tpm, scope.tpm, now);
        const need = Math.min(promptTokens, scope.tpm);
        if (state.tpm.level < need) return refusal("tpm", scope.id, ((need - state.tpm.level) * 60_000) / scope.tpm);
      }
      if (scope.concurrency && state.inFlight >= scope.concurrency) return refusal("concurrency", scope.id, 1_000);
    }
    for (let i = 0; i < scopes.length; i++) {
      const scope = scopes[i]!;
      const state = states[i]!;
      if (scope.rpm) state.rpm!.level -= 1;
      if (scope.tpm) state.tpm!.level -= promptTokens;
      if (scope.concurrency) state.inFlight++;
    }
    return { ok: true, lease: new MemoryLease(scopes, states, this.now) };
  }

  available(): boolean {
    return true;
  }

  async close(): Promise<void> {}
}
