import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { createHash, timingSafeEqual } from "node:crypto";
import { InputError } from "../core/errors.ts";
import { ApiError } from "./http/api-error.ts";
import type { ApiKeyRow, Store } from "./store/store.ts";

const newKeySchema = z
  .object({
    org: z.string().min(1).max(128),
    name: z.string().min(1).max(128).default("key"),
    scopes: z.array(z.string()).nullish(),
    plan: z.string().default("default"),
    rpm: z.number().int().min(1).nullish(),
    tpm: z.number().int().min(1).nullish(),
    concurrency: z.number().int().min(1).nullish(),
    expiresAt: z.number().int().nullish(),
  })
  .strict();
const creditSchema = z
  .object({
    org: z.string().min(1),
    amount: z.number().int().min(1),
    idempotencyKey: z.string().min(1).max(200),
    memo: z.string().default("credit"),
  })
  .strict();

/** Constant-time comparison of bearer tokens (of their hashes, so lengths do not leak either). */
export function sameToken(presented: string, expected: string): boolean {
  const digest = (text: string) => createHash("sha256").update(text).digest();
  return timingSafeEqual(digest(presented), digest(expected));
}

/** A key as the admin API and the CLI show it: never the secret, never its hash. */
export function publicKey(row: ApiKeyRow & { org?: string }) {
  return {
    id: row.id,
    prefix: row.prefix,
    name: row.name,
    org: row.org,
    org_id: row.org_id,
    scopes: row.scopes ? (JSON.parse(row.scopes) as string[]) : null,
    plan: row.plan,
    limits: { rpm: row.rpm, tpm: row.tpm, concurrency: row.concurrency },
    expires_at: row.expires_at,
    revoked_at: row.revoked_at,
    created_at: row.created_at,
    rotated_from: row.rotated_from,
  };
}

function body<T extends z.ZodType>(schema: T, value: unknown, what = "body"): z.infer<T> {
  const result = schema.safeParse(value ?? {});
  if (!result.success)
    throw new ApiError(400, result.error.issues.map((i) => `${i.path.join(".") || what}: ${i.message}`).join("; "), {
      code: "invalid_value",
    });
  return result.data;
}

/** Query strings: each parameter once (a repeated one arrives as an array), days as YYYY-MM-DD. */
const day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "a day as YYYY-MM-DD");
const keysQuery = z.object({ org: z.string().min(1).optional() }).strict();
const usageQuery = z.object({ org: z.string().min(1).optional(), from: day.optional(), to: day.optional() }).strict();

/** What the admin API (and `/metrics`, unless public) checks: its own bearer token, never an API key. */
export function adminCheck(adminToken: string | undefined): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    if (!adminToken)
      throw new ApiError(403, "the admin API is disabled (set the admin token's environment variable)", {
        code: "admin_disabled",
      });
    const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? "");
    if (!match || !sameToken(match[1]!, adminToken))
      throw new ApiError(401, "invalid admin token", { code: "invalid_admin_token" });
  };
}

/** Refuses a plan that `serve.plans` does not define (its own keys only: `constructor` is no plan). */
export function checkPlan(plans: Record<string, unknown>, plan: string): void {
  if (!Object.hasOwn(plans, plan)) throw new InputError(`no plan '${plan}' (plans: ${Object.keys(plans).join(", ")})`);
}

/**
 * A new key: the org's free tier first (idempotent per org), so that a credit
 * the ledger refuses leaves no key behind; then the key.
 */
export async function createKeyWithFreeTier(
  store: Store,
  freeTierMicros: number,
  spec: Parameters<Store["createKey"]>[0],
): ReturnType<Store["createKey"]> {
  if (freeTierMicros > 0) await store.grant(spec.org, freeTierMicros, `free-tier:${spec.org}`, "free tier");
  return store.createKey(spec);
}

/** The admin API, behind its own bearer token (never an API key). */
export function registerAdmin(
  app: FastifyInstance,
  options: {
    store: Store;
    adminToken: string | undefined;
    freeTierMicros: number;
    plans: Record<string, unknown>;
    forgetKey: () => void;
  },
): void {
  const { store } = options;
  const requireAdmin = adminCheck(options.adminToken);

  app.post("/admin/keys", async (request) => {
    await requireAdmin(request);
    const spec = body(newKeySchema, request.body);
    checkPlan(options.plans, spec.plan);
    const created = await createKeyWithFreeTier(store, options.freeTierMicros, {
      org: spec.org,
      name: spec.name,
      scopes: spec.scopes ?? null,
      plan: spec.plan,
      limits: spec,
      expiresAt: spec.expiresAt ?? null,
    });
    return { key: created.key, ...publicKey(created.row), note: "the key is shown only once" };
  });
  app.get("/admin/keys", async (request) => {
    await requireAdmin(request);
    const { org } = body(keysQuery, request.query, "query");
    return { data: (await store.listKeys(org)).map(publicKey) };
  });
  const existingKey = async (request: FastifyRequest) => {
    const id = (request.params as { id: string }).id;
    const row = await store.keyById(id);
    if (!row) throw new ApiError(404, `no key '${id}'`, { code: "key_not_found" });
    return row;
  };
  app.post("/admin/keys/:id/revoke", async (request) => {
    await requireAdmin(request);
    const row = await store.revokeKey((await existingKey(request)).id);
    options.forgetKey();
    return publicKey(row);
  });
  app.post("/admin/keys/:id/rotate", async (request) => {
    await requireAdmin(request);
    const { graceSeconds } = body(
      z
        .object({
          graceSeconds: z
            .number()
            .int()
            .min(0)
            .max(7 * 86_400)
            .default(0),
        })
        .strict(),
      request.body,
    );
    const created = await store.rotateKey((await existingKey(request)).id, graceSeconds * 1000);
    options.forgetKey();
    return { key: created.key, ...publicKey(created.row), note: "the key is shown only once" };
  });
  app.post("/admin/credits", async (request) => {
    await requireAdmin(request);
    const credit = body(creditSchema, request.body);
    const applied = await store.grant(credit.org, credit.amount, credit.idempotencyKey, credit.memo);
    const org = await store.orgByName(credit.org);
    return { applied, balance: await store.balance(org!.id) };
  });
  app.get("/admin/usage", async (request) => {
    await requireAdmin(request);
    const query = body(usageQuery, request.query, "query");
    const org = query.org ? await store.orgByName(query.org) : undefined;
    if (query.org && !org) throw new ApiError(404, `no org '${query.org}'`, { code: "org_not_found" });
    return { data: await store.usage({ orgId: org?.id, from: query.from, to: query.to }) };
  });
  app.get("/admin/audit", async (request) => {
    await requireAdmin(request);
    return store.audit();
  });
}
