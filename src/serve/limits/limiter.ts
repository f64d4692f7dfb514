import { AvocadoError } from "../../core/errors.ts";

/**
 * Request limits of the paid API: per scope (a key, an org) requests per
 * minute, tokens per minute and requests in flight. Buckets hold a minute's
 * allowance and refill continuously; TPM takes prompt tokens up front and
 * completion tokens as they stream (the bucket may go into debt: later
 * requests wait until it refills).
 */
export interface LimitScope {
  /** e.g. "key:key_abc" or "org:org_xyz". */
  id: string;
  rpm?: number | null;
  tpm?: number | null;
  concurrency?: number | null;
}

export type LimitKind = "rpm" | "tpm" | "concurrency";

export type Admission =
  { ok: true; lease: Lease } | { ok: false; limit: LimitKind; scope: string; retryAfterMs: number };

export interface Lease {
  /** Completion tokens as they are produced (TPM). */
  addTokens(tokens: number): void;
  /** Ends the request (concurrency); idempotent, and never rejects (a slot it cannot free yet is freed later). */
  release(): Promise<void>;
}

export interface Limiter {
  /**
   * Throws LimiterUnavailableError when the limits cannot be checked (their store is unreachable): nothing was taken.
   */
  admit(requestId: string, scopes: readonly LimitScope[], promptTokens: number): Promise<Admission>;
  /** Whether admit can answer now (for /health). */
  available(): boolean;
  close(): Promise<void>;
}

/**
 * The limits cannot be checked now (Redis unreachable or not answering): the request is refused, nothing taken or
 * charged.
 */
export class LimiterUnavailableError extends AvocadoError {
  constructor(cause: unknown) {
    super(
      "limits_unavailable",
      `the rate limits cannot be checked: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
}

/** A limit's bucket holds a minute's allowance: see `core/token-bucket.ts`. */
export { refill } from "../../core/token-bucket.ts";
