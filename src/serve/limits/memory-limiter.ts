import { refill, type Admission, type Lease, type LimitKind, type Limiter, type LimitScope } from "./limiter.ts";

interface Bucket {
  level: number;
  updated: number;
}

/** Limits held in this process: exact for one server, the default. */
export class MemoryLimiter implements Limiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  private bucket(key: string, perMinute: number, now: number): Bucket {
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = { level: perMinute, updated: now };
      this.buckets.set(key, bucket);
    }
    bucket.level = refill(bucket.level, bucket.updated, perMinute, now);
    bucket.updated = now;
    return bucket;
  }

  async admit(_requestId: string, scopes: readonly LimitScope[], promptTokens: number): Promise<Admission> {
    const now = this.now();
    // Check every scope first, then take from all: a refusal takes nothing.
    for (const scope of scopes) {
      const refusal = (limit: LimitKind, retryAfterMs: number): Admission => ({ ok: false, limit, scope: scope.id, retryAfterMs: Math.max(1, Math.ceil(retryAfterMs)) });
      if (scope.rpm) {
        const bucket = this.bucket(`${scope.id}:rpm`, scope.rpm, now);
        if (bucket.level < 1) return refusal("rpm", ((1 - bucket.level) * 60_000) / scope.rpm);
      }
      if (scope.tpm) {
        const bucket = this.bucket(`${scope.id}:tpm`, scope.tpm, now);
        const need = Math.min(promptTokens, scope.tpm);
        if (bucket.level < need) return refusal("tpm", ((need - bucket.level) * 60_000) / scope.tpm);
      }
      if (scope.concurrency && (this.inFlight.get(scope.id) ?? 0) >= scope.concurrency) return refusal("concurrency", 1_000);
    }
    for (const scope of scopes) {
      if (scope.rpm) this.buckets.get(`${scope.id}:rpm`)!.level -= 1;
      if (scope.tpm) this.buckets.get(`${scope.id}:tpm`)!.level -= promptTokens;
      if (scope.concurrency) this.inFlight.set(scope.id, (this.inFlight.get(scope.id) ?? 0) + 1);
    }
    let released = false;
    const lease: Lease = {
      addTokens: (tokens) => {
        for (const scope of scopes) if (scope.tpm) this.bucket(`${scope.id}:tpm`, scope.tpm, this.now()).level -= tokens;
      },
      release: async () => {
        if (released) return;
        released = true;
        for (const scope of scopes) if (scope.concurrency) this.inFlight.set(scope.id, (this.inFlight.get(scope.id) ?? 1) - 1);
      },
    };
    return { ok: true, lease };
  }

  async close(): Promise<void> {}
}
