import { createServer, connect, type Server, type Socket } from "node:net";
import OpenAI from "openai";
import { afterAll, describe, expect, it } from "vitest";
import { teacherGguf } from "../../../test/fixtures.ts";
import { freshStore } from "../../../test/stores.ts";
import { serveSchema } from "../../core/config/serve-schema.ts";
import { EmbeddedServedModel } from "../models/embedded-model.ts";
import type { ServedModel } from "../models/served-model.ts";
import { startApi, type RunningApi } from "../server.ts";
import type { Logger } from "../../core/logger.ts";
import { LimiterUnavailableError, type Limiter } from "./limiter.ts";
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
      expect(await limiter.admit("c2", [org, key], 1)).toMatchObject({ ok: false, limit: "concurrency", scope: "key:c" });
      if (held.ok) await held.lease.release();
      expect((await limiter.admit("c3", [key, org], 1)).ok).toBe(true);
      // The refused request took no RPM from the org: 2 of its 3 are used.
      const other = { id: "key:other" };
      expect((await limiter.admit("c4", [other, org], 1)).ok).toBe(true);
      expect(await limiter.admit("c5", [other, org], 1)).toMatchObject({ ok: false, limit: "rpm", scope: "org:c" });
    });
  });
}

/**
 * A TCP relay in front of the machine's Redis that can be cut and restored on
 * the same port: a network partition, while Redis itself keeps its state.
 */
class Partition {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  async up(): Promise<void> {
    const target = new URL(REDIS_URL);
    this.server = createServer((client) => {
      const redis = connect(Number(target.port || 6379), target.hostname);
      for (const socket of [client, redis]) {
        this.sockets.add(socket);
        socket.on("error", () => undefined);
        socket.on("close", () => {
          this.sockets.delete(socket);
          client.destroy();
          redis.destroy();
        });
      }
      client.pipe(redis).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, "127.0.0.1", resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  async cut(): Promise<void> {
    const closed = new Promise((resolve) => this.server!.close(resolve));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
}

const until = async (condition: () => boolean, ms = 10_000) => {
  for (const stop = Date.now() + ms; !condition(); ) {
    if (Date.now() > stop) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

describe("Redis unreachable", () => {
  it("refuses to start with a clear error, naming the URL without its password", async () => {
    const partition = new Partition();
    await partition.up();
    await partition.cut();
    await expect(RedisLimiter.connect(`redis://:secret@127.0.0.1:${partition.port}`, prefix())).rejects.toThrow(new RegExp(`cannot reach Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${partition.port}`));
  });

  it("mid-service: admit fails fast, a slot freed meanwhile is freed once Redis is back, and the outage is logged once", async () => {
    const partition = new Partition();
    await partition.up();
    const events: string[] = [];
    const logger: Logger = { log: (_level, event) => void events.push(event), addSecret: () => undefined };
    const limiter = await RedisLimiter.connect(partition.url, prefix(), logger);
    try {
      const scope = [{ id: "key:p", concurrency: 1 }];
      const held = await limiter.admit("p1", scope, 1);
      if (!held.ok) throw new Error("refused");
      await partition.cut();
      await until(() => !limiter.available());
      const started = Date.now();
      await expect(limiter.admit("p2", scope, 1)).rejects.toBeInstanceOf(LimiterUnavailableError);
      expect(Date.now() - started).toBeLessThan(1_000);
      // Never rejects; the slot stays taken in Redis until the link is back.
      await held.lease.release();
      held.lease.addTokens(5);
      await partition.up();
      await until(() => limiter.available());
      // The slot p1 held was freed after the reconnection (without it, p3 waits out the 15-minute lease).
      await until(() => events.includes("limits.redis_ready"));
      let admitted = await limiter.admit("p3", scope, 1);
      for (let i = 0; i < 50 && !admitted.ok; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        admitted = await limiter.admit(`p3-${i}`, scope, 1);
      }
      expect(admitted.ok).toBe(true);
      expect(events.filter((e) => e === "limits.redis_unavailable")).toHaveLength(1);
      expect(events.filter((e) => e === "limits.redis_ready")).toHaveLength(1);
    } finally {
      await limiter.close();
      await partition.cut();
    }
  });

  it("the API answers 503 limits_unavailable with a Retry-After, charges nothing, and /health says so", async () => {
    const partition = new Partition();
    await partition.up();
    const fresh = await freshStore("sqlite", "redis_down");
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      redis: partition.url,
      redisPrefix: prefix(),
      plans: { default: { rpm: 100, topLogprobs: 0 } },
      models: [{ name: "avocado-tiny", gguf: teacherGguf("tiny-qwen"), price: { inputPerMillion: 1, outputPerMillion: 1 }, maxTokens: 4 }],
    });
    const models = new Map<string, ServedModel>([["avocado-tiny", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-qwen"))]]);
    const api = await startApi({ config, workspace: "/nonexistent", models });
    try {
      const { key } = await api.store.createKey({ org: "partitioned", name: "k" });
      await api.store.grant("partitioned", 1_000_000, "p");
      const client = new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
      const ask = () => client.chat.completions.create({ model: "avocado-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 1 });
      await ask();
      await partition.cut();
      const refused = await ask().then(
        () => undefined,
        (error: { status?: number; code?: string; headers?: Headers }) => error,
      );
      expect([refused?.status, refused?.code, refused?.headers?.get("retry-after")]).toEqual([503, "limits_unavailable", "1"]);
      const health = await fetch(`${api.url}/health`);
      expect([health.status, await health.json()]).toEqual([503, { ok: false, ledger: "ok", limits: "unavailable", models: { "avocado-tiny": "ok" } }]);
      const [usage] = await api.store.usage();
      expect(usage?.requests).toBe(1);
      expect((await api.store.audit()).ok).toBe(true);
    } finally {
      await api.close();
      await partition.cut();
      await fresh.drop();
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
      models: [{ name: "avocado-tiny", gguf: teacherGguf("tiny-qwen"), price: { inputPerMillion: 1, outputPerMillion: 1 }, maxTokens: 4 }],
    });
    for (let i = 0; i < 2; i++) {
      const models = new Map<string, ServedModel>([["avocado-tiny", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-qwen"))]]);
      apis.push(await startApi({ config, workspace: "/nonexistent", models }));
    }
    const { key } = await apis[0]!.store.createKey({ org: "replicated", name: "k" });
    await apis[0]!.store.grant("replicated", 1_000_000, "r");
    const clients = apis.map((api) => new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 }));
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        clients[i % 2]!.chat.completions.create({ model: "avocado-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 1 }).then(
          () => 200,
          (error: { status?: number }) => error.status,
        ),
      ),
    );
    expect(outcomes.filter((s) => s === 200)).toHaveLength(6);
    expect(outcomes.filter((s) => s === 429)).toHaveLength(14);
  });
});
