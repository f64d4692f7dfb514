import fc from "fast-check";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { teacherGguf } from "../../test/fixtures.ts";
import { freshStore } from "../../test/stores.ts";
import { serveSchema } from "../core/config/serve-schema.ts";
import { JsonLogger } from "../core/logger.ts";
import { EmbeddedServedModel } from "./models/embedded-model.ts";
import type { ServedModel } from "./models/served-model.ts";
import { startApi, type RunningApi } from "./server.ts";

const ADMIN = "admin-SECRET-token-4f1c9a";

describe("the admin API and the logs", () => {
  let api: RunningApi;
  let drop: () => Promise<void>;
  const lines: string[] = [];
  const admin = (path: string, init: RequestInit = {}, token = ADMIN) =>
    fetch(`${api.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...init.headers },
    });

  beforeAll(async () => {
    const fresh = await freshStore("sqlite", "admin");
    drop = fresh.drop;
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      freeTierMicros: 50_000,
      models: [
        {
          name: "avocado-tiny",
          gguf: teacherGguf("tiny-gemma"),
          price: { inputPerMillion: 1_000_000, outputPerMillion: 1_000_000 },
          maxTokens: 8,
        },
      ],
    });
    const models = new Map<string, ServedModel>([
      ["avocado-tiny", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-gemma"))],
    ]);
    const logger = new JsonLogger((text) => lines.push(...text.trimEnd().split("\n")), "info");
    logger.addSecret(ADMIN);
    api = await startApi({ config, workspace: "/nonexistent", adminToken: ADMIN, models, logger });
  });
  afterAll(async () => {
    await api?.close();
    await drop?.();
  });

  it("creates keys (shown once, free tier granted), credits, lists, reports usage, revokes at once, and audits", async () => {
    expect(
      (await admin("/admin/keys", { method: "POST", body: JSON.stringify({ org: "acme" }) }, "wrong")).status,
    ).toBe(401);
    const created = (await (
      await admin("/admin/keys", {
        method: "POST",
        body: JSON.stringify({ org: "acme", name: "app", scopes: ["avocado-tiny"], rpm: 100 }),
      })
    ).json()) as { key: string; id: string; prefix: string };
    expect(created.key.startsWith(created.prefix)).toBe(true);
    const credit = await admin("/admin/credits", {
      method: "POST",
      body: JSON.stringify({ org: "acme", amount: 1_000_000, idempotencyKey: "stripe-pi-1" }),
    });
    expect(await credit.json()).toMatchObject({ applied: true, balance: { available: 1_050_000, held: 0 } });
    expect(
      await (
        await admin("/admin/credits", {
          method: "POST",
          body: JSON.stringify({ org: "acme", amount: 1_000_000, idempotencyKey: "stripe-pi-1" }),
        })
      ).json(),
    ).toMatchObject({ applied: false });
    const listed = (await (await admin("/admin/keys?org=acme")).json()) as { data: Record<string, unknown>[] };
    expect(listed.data).toHaveLength(1);
    expect(JSON.stringify(listed)).not.toContain(created.key.slice(12));
    expect(listed.data[0]).not.toHaveProperty("hash");

    const client = new OpenAI({ apiKey: created.key, baseURL: `${api.url}/v1`, maxRetries: 0 });
    await client.chat.completions.create({
      model: "avocado-tiny",
      messages: [{ role: "user", content: "What is 25*12?" }],
      max_tokens: 4,
    });
    const usage = (await (await admin("/admin/usage?org=acme")).json()) as { data: { requests: number }[] };
    expect(usage.data[0]!.requests).toBe(1);
    expect(
      await (await admin(`/admin/keys/${created.id}/revoke`, { method: "POST", body: "{}" })).json(),
    ).toMatchObject({ id: created.id });
    await expect(client.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const unknown = await admin("/admin/keys/key_nope/revoke", { method: "POST", body: "{}" });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: "key_not_found" } });
    expect(await (await admin("/admin/audit")).json()).toMatchObject({ ok: true, problems: [] });
    for (const path of ["/health", "/v1/models", "/admin/keys"])
      expect((await admin(path)).headers.get("x-request-id"), path).toMatch(/^req_/);
  });

  it("refuses a plan the config does not define, and answers fuzzed admin requests with 4xx or 200, never 5xx, the ledger exact", async () => {
    for (const plan of ["gold", "constructor", "__proto__", ""]) {
      const refused = await admin("/admin/keys", { method: "POST", body: JSON.stringify({ org: "planless", plan }) });
      expect(refused.status, plan).toBe(400);
    }
    expect((await api.store.listKeys("planless")).length).toBe(0);
    const anyValue = fc.oneof(
      fc.string(),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.string(), { maxLength: 3 }),
      fc.constant(Number.MAX_SAFE_INTEGER),
      fc.constant(1e300),
    );
    const org = fc.constantFrom("fuzz-a", "fuzz-b", "ünï");
    const payload = fc.oneof(
      fc.dictionary(
        fc.constantFrom(
          "org",
          "name",
          "scopes",
          "plan",
          "rpm",
          "expiresAt",
          "amount",
          "idempotencyKey",
          "memo",
          "graceSeconds",
        ),
        anyValue,
      ),
      // Credits up to the ledger's ceiling and beyond it (refused, writing nothing).
      fc.record({
        org,
        amount: fc.oneof(fc.integer({ min: 1 }), fc.constant(Number.MAX_SAFE_INTEGER), fc.constant(2 ** 53 + 2)),
        idempotencyKey: fc.string({ minLength: 1, maxLength: 12 }),
      }),
      fc.record(
        {
          org,
          name: fc.string({ minLength: 1, maxLength: 10 }),
          plan: fc.constantFrom("default", "nope"),
          rpm: fc.oneof(fc.integer({ min: -1 }), fc.constant(null)),
          expiresAt: fc.oneof(fc.integer(), fc.constant(null)),
        },
        { requiredKeys: ["org"] },
      ),
      fc.record({ graceSeconds: fc.integer({ min: -5, max: 8 * 86_400 }) }),
    );
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          "POST /admin/keys",
          "GET /admin/keys",
          "POST /admin/keys/:id/revoke",
          "POST /admin/keys/:id/rotate",
          "POST /admin/credits",
          "GET /admin/usage",
        ),
        payload,
        fc.array(
          fc.tuple(
            fc.constantFrom("org", "from", "to", "limit"),
            fc.oneof(fc.string(), org, fc.constantFrom("2026-11-01", "2026-11-30")),
          ),
          { maxLength: 4 },
        ),
        fc.boolean(),
        async (route, value, query, knownKey) => {
          const [method, path] = route.split(" ") as [string, string];
          const id = knownKey ? ((await api.store.listKeys())[0]?.id ?? "key_none") : "key_none";
          const search = new URLSearchParams(query).toString();
          const response = await admin(
            `${path.replace(":id", id)}${method === "GET" && search ? `?${search}` : ""}`,
            method === "POST" ? { method, body: JSON.stringify(value) } : {},
          );
          const text = await response.text();
          statuses.add(response.status);
          expect(
            response.status === 200 || (response.status >= 400 && response.status < 500),
            `${route} ${JSON.stringify(value)}: ${response.status} ${text.slice(0, 200)}`,
          ).toBe(true);
        },
      ),
      { numRuns: 400, seed: 20261126 },
    );
    expect(statuses.has(200) && statuses.has(400) && statuses.has(404)).toBe(true);
    expect(await (await admin("/admin/audit")).json()).toMatchObject({ ok: true, problems: [] });
  }, 120_000);

  it("serves no weights or artifacts, and logs every request as JSON without keys or prompts", async () => {
    for (const path of [
      "/model.gguf",
      "/v1/models/avocado-tiny/weights",
      "/v1/files",
      "/admin/models/avocado-tiny/download",
      "/../teachers/tiny-gemma/model.gguf",
    ]) {
      const response = await fetch(`${api.url}${path}`);
      expect(response.status, path).toBe(404);
      // Every response has its request id, whatever answered it.
      expect(response.headers.get("x-request-id"), path).toMatch(/^req_/);
    }
    const { key } = await api.store.createKey({ org: "acme", name: "second" });
    const client = new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
    await client.chat.completions.create({
      model: "avocado-tiny",
      messages: [{ role: "user", content: "a very private prompt" }],
      max_tokens: 2,
    });
    // Log lines are written on the next turn of the server's event loop.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const access = lines
      .map((l) => JSON.parse(l) as { event: string; key?: string })
      .filter((l) => l.event === "api.request");
    expect(access.length).toBeGreaterThanOrEqual(2);
    expect(access.at(-1)).toMatchObject({ key: key.slice(0, 12), model: "avocado-tiny", outcome: "ok" });
    const everything = lines.join("\n");
    expect(everything).not.toContain(key);
    expect(everything).not.toContain(key.slice(12));
    expect(everything).not.toContain(ADMIN);
    expect(everything).not.toContain("a very private prompt");
  });
});
