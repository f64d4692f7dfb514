import OpenAI from "openai";
import { afterAll, describe, expect, it } from "vitest";
import { teacherGguf } from "../../../test/fixtures.ts";
import { freshStore } from "../../../test/stores.ts";
import { serveSchema } from "../../core/config/serve-schema.ts";
import { EmbeddedServedModel } from "../models/embedded-model.ts";
import type { ServedModel } from "../models/served-model.ts";
import { startApi, type RunningApi } from "../server.ts";
import type { Limiter } from "./limiter.ts";
import { MemoryLimiter } from "./memory-limiter.ts";
import { RedisLimiter } from "./redis-limiter.ts";

const REDIS_URL = process.env.AVOCADO_TEST_REDIS ?? "redis://127.0.0.1:6379";
const prefix = () => `avocado-test:${process.pid}:${Date.now()}:${Math.random().toString(36).slice(2)}`;

/** The limit suite every Limiter passes. */
for (const kind of ["memory", "redis"] as const) {
  describe(`${kind} limiter`, () => {
    const limiters: Limiter[] = [];
    const make = async () => {
      const limiter = kind === "memory" ? new MemoryLimiter() : await RedisLimiter.connect(REDIS_URL, prefix());
      limiters.push(limiter);
      return limiter;
    };
    afterAll(async () => {
      for (const limiter of limiters) await limiter.close();
    });

    it("admits a minute's RPM, then refuses with a Retry-After", async () => {
      const limiter = await make();
      const scope = [{ id: "key:a", rpm: 5 }];
      const results = [];
      for (let i = 0; i < 7; i++) results.push(await limiter.admit(`r${i}`, scope, 1));
      expect(results.filter((r) => r.ok)).toHaveLength(5);
      const refused = results.at(-1)!;
      expect(refused).toMatchObject({ ok: false, limit: "rpm", scope: "key:a" });
      expect(refused.ok ? 0 : refused.retryAfterMs).toBeGreaterThan(0);
    });

    it("takes prompt tokens up front and completion tokens as they stream (TPM)", async () => {
      const limiter = await make();
      const scope = [{ id: "key:t", tpm: 100 }];
      const first = await limiter.admit("t1", scope, 60);
      expect(first.ok).toBe(true);
      if (first.ok) first.lease.addTokens(30);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await limiter.admit("t2", scope, 20)).toMatchObject({ ok: false, limit: "tpm" });
      expect((await limiter.admit("t3", scope, 5)).ok).toBe(true);
    });

    it("counts every completion token of a stream that reports them one at a time", async () => {
      const limiter = await make();
      const scope = [{ id: "key:s", tpm: 1_000 }];
      const stream = await limiter.admit("s1", scope, 0);
      if (!stream.ok) throw new Error("refused");
      for (let i = 0; i < 900; i++) stream.lease.addTokens(1);
      await stream.lease.release();
      await new Promise((resolve) => setTimeout(resolve, 100));
      // ~100 left (plus what 100 ms refill): 150 do not fit, 50 do.
      expect(await limiter.admit("s2", scope, 150)).toMatchObject({ ok: false, limit: "tpm" });
      expect((await limiter.admit("s3", scope, 50)).ok).toBe(true);
    });

    it("holds concurrency until release, and a refusal in one scope takes nothing from the others", async () => {
      const limiter = await make();
      const key = { id: "key:c", concurrency: 1 };
      const org = { id: "org:c", rpm: 3 };
      const held = await limiter.admit("c1", [key, org], 1);
      expect(held.ok).toBe(true);
      expect(await limiter.admit("c2", [org, key], 1)).toMatchObject({
        ok: false,
        limit: "concurrency",
        scope: "key:c",
      });
      if (held.ok) await held.lease.release();
      expect((await limiter.admit("c3", [key, org], 1)).ok).toBe(true);
      // The refused request took no RPM from the org: 2 of its 3 are used.
      const other = { id: "key:other" };
      expect((await limiter.admit("c4", [other, org], 1)).ok).toBe(true);
      expect(await limiter.admit("c5", [other, org], 1)).toMatchObject({ ok: false, limit: "rpm", scope: "org:c" });
    });
  });
}

describe("two Redis limiters (two replicas' connections)", () => {
  it("a replica renews the slots of its requests in flight; those of a replica that died lapse within the lease", async () => {
    const shared = prefix();
    const leaseTtlMs = 600;
    const [a, b, dying] = [
      await RedisLimiter.connect(REDIS_URL, shared, undefined, { leaseTtlMs }),
      await RedisLimiter.connect(REDIS_URL, shared, undefined, { leaseTtlMs }),
      await RedisLimiter.connect(REDIS_URL, shared, undefined, { leaseTtlMs }),
    ];
    try {
      // A request running three times its lease on replica a keeps its slot.
      const scope = [{ id: "key:long", concurrency: 1 }];
      const long = await a.admit("long", scope, 1);
      if (!long.ok) throw new Error("refused");
      await new Promise((resolve) => setTimeout(resolve, 3 * leaseTtlMs));
      expect(await b.admit("during", scope, 1)).toMatchObject({ ok: false, limit: "concurrency" });
      await long.lease.release();
      const after = await b.admit("after", scope, 1);
      expect(after.ok).toBe(true);
      if (after.ok) await after.lease.release();

      // A replica dies holding a slot (its connection gone, nothing released): the slot is free again within the lease.
      const orphanScope = [{ id: "key:orphan", concurrency: 1 }];
      expect((await dying.admit("orphan", orphanScope, 1)).ok).toBe(true);
      await dying.close();
      expect(await b.admit("blocked", orphanScope, 1)).toMatchObject({ ok: false, limit: "concurrency" });
      await new Promise((resolve) => setTimeout(resolve, leaseTtlMs + 100));
      const freed = await b.admit("freed", orphanScope, 1);
      expect(freed.ok).toBe(true);
      if (freed.ok) await freed.lease.release();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("a slot released on one is free on the other as soon as release resolves", async () => {
    const shared = prefix();
    const [a, b] = [await RedisLimiter.connect(REDIS_URL, shared), await RedisLimiter.connect(REDIS_URL, shared)];
    try {
      const scope = [{ id: "key:alternating", concurrency: 1 }];
      for (let i = 0; i < 50; i++) {
        const [first, second] = i % 2 === 0 ? [a, b] : [b, a];
        const held = await first.admit(`r${i}`, scope, 1);
        if (!held.ok) throw new Error(`request ${i} refused: ${held.limit}`);
        await held.lease.release();
        const next = await second.admit(`n${i}`, scope, 1);
        expect(next.ok, `request ${i}`).toBe(true);
        if (next.ok) await next.lease.release();
      }
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe("two replicas sharing Redis and one PostgreSQL store", () => {
  const apis: RunningApi[] = [];
  let drop: (() => Promise<void>) | undefined;
  afterAll(async () => {
    for (const api of apis) await api.close();
    await drop?.();
  });

  it("enforce a key's RPM once, not once per replica", async () => {
    const fresh = await freshStore("postgres", "replicas");
    drop = fresh.drop;
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      redis: REDIS_URL,
      redisPrefix: prefix(),
      plans: { default: { rpm: 6, topLogprobs: 0 } },
      models: [
        {
          name: "avocado-tiny",
          gguf: teacherGguf("tiny-qwen"),
          price: { inputPerMillion: 1, outputPerMillion: 1 },
          maxTokens: 4,
        },
      ],
    });
    for (let i = 0; i < 2; i++) {
      const models = new Map<string, ServedModel>([
        ["avocado-tiny", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-qwen"))],
      ]);
      apis.push(await startApi({ config, workspace: "/nonexistent", models }));
    }
    const { key } = await apis[0]!.store.createKey({ org: "replicated", name: "k" });
    await apis[0]!.store.grant("replicated", 1_000_000, "r");
    const clients = apis.map((api) => new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 }));
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        clients[i % 2]!.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 1,
        }).then(
          () => 200,
          (error: { status?: number }) => error.status,
        ),
      ),
    );
    expect(outcomes.filter((s) => s === 200)).toHaveLength(6);
    expect(outcomes.filter((s) => s === 429)).toHaveLength(14);
  });
});
