import type { FastifyRequest } from "fastify";
import type { Plan, ServeConfig } from "../core/config/serve-schema.ts";
import { ApiError } from "./http/api-error.ts";
import { assertSingleCredential } from "./http/request-checks.ts";
import type { LimitScope } from "./limits/limiter.ts";
import { hashKey, type ApiKeyRow } from "./store/key-store.ts";
import type { Store } from "./store/store.ts";

/** How long a key's row is trusted: a revocation bites within this. */
const KEY_CACHE_MS = 1_000;

/** A request's key, what its plan allows, and the limits it runs under. */
export interface Authenticated {
  key: ApiKeyRow;
  plan: Plan;
  scopes: string[] | null;
  /** The key's and its org's limits (the extraction throttle is added per request). */
  limits: LimitScope[];
}

/** API keys from the Authorization header, looked up by hash and cached for a second. */
export class KeyAuthenticator {
  private readonly cache = new Map<
    string,
    { row: ApiKeyRow | undefined; auth: Authenticated | undefined; until: number }
  >();

  constructor(
    private readonly store: Store,
    private readonly plans: ServeConfig["plans"],
  ) {}

  /** Forgets every cached key (after an admin revocation: it bites at once). */
  forget(): void {
    this.cache.clear();
  }

  async authenticate(request: FastifyRequest): Promise<Authenticated> {
    assertSingleCredential(request.raw.rawHeaders);
    const header = request.headers.authorization;
    const match = typeof header === "string" ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match)
      throw new ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", { code: "missing_api_key" });
    const secret = match[1]!;
    const hash = hashKey(secret);
    const now = Date.now();
    let cached = this.cache.get(hash);
    if (!cached || cached.until < now) {
      const row = await this.store.keyBySecret(secret);
      cached = {
        row,
        auth: row
          ? this.authenticated(row, row.rotated_from === null ? row.id : await this.store.rotationRoot(row))
          : undefined,
        until: now + KEY_CACHE_MS,
      };
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(hash, cached);
    }
    const row = cached.row;
    if (!row) throw new ApiError(401, "invalid API key", { code: "invalid_api_key" });
    if (row.revoked_at !== null && row.revoked_at <= now)
      throw new ApiError(401, `API key ${row.prefix}… has been revoked`, { code: "revoked_api_key" });
    if (row.expires_at !== null && row.expires_at <= now)
      throw new ApiError(401, `API key ${row.prefix}… has expired`, { code: "expired_api_key" });
    return cached.auth!;
  }

  /** What a key may do, worked out once per cache period rather than per request. */
  private authenticated(row: ApiKeyRow, limitId: string): Authenticated {
    // Its own keys only (a key's plan named `constructor` is no plan); a plan removed from the config since falls back
    // to the default.
    const plan = (Object.hasOwn(this.plans, row.plan) ? this.plans[row.plan] : undefined) ??
      this.plans.default ?? { topLogprobs: 0 };
    const limits: LimitScope[] = [
      // Under the first key of its rotations: a rotated key and its successor share one budget.
      {
        id: `key:${limitId}`,
        rpm: row.rpm ?? plan.rpm,
        tpm: row.tpm ?? plan.tpm,
        concurrency: row.concurrency ?? plan.concurrency,
      },
      { id: `org:${row.org_id}`, rpm: plan.orgRpm, tpm: plan.orgTpm, concurrency: plan.orgConcurrency },
    ];
    return {
      key: row,
      plan,
      scopes: row.scopes ? (JSON.parse(row.scopes) as string[]) : null,
      limits: limits.filter((s) => s.rpm || s.tpm || s.concurrency),
    };
  }
}
