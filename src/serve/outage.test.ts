// Outages of the services the API depends on, as a network partition (a TCP
// relay cut and restored in front of the machine's real Redis and PostgreSQL):
// clear errors, 503s rather than 500s or hangs, no crash, nothing lost or
// charged twice, and service back when the link is.
import OpenAI from "openai";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { failureOf, scratchFolder, teacherGguf } from "../../test/fixtures.ts";
import { Partition, streamCutMidway, targetOf, until } from "../../test/partition.ts";
import { freshStore, POSTGRES_URL } from "../../test/stores.ts";
import { serveSchema } from "../core/config/serve-schema.ts";
import type { Logger } from "../core/logger.ts";
import { LimiterUnavailableError } from "./limits/limiter.ts";
import { RedisLimiter } from "./limits/redis-limiter.ts";
import { EmbeddedServedModel } from "./models/embedded-model.ts";
import type { ServedModel } from "./models/served-model.ts";
import { startApi } from "./server.ts";
import { Store } from "./store/store.ts";

const REDIS_URL = process.env.AVOCADO_TEST_REDIS ?? "redis://127.0.0.1:6379";
const prefix = () => `avocado-test:${process.pid}:${Date.now()}:${Math.random().toString(36).slice(2)}`;

describe("Redis unreachable", () => {
  it("refuses to start with a clear error, naming the URL without its password", async () => {
    const partition = new Partition(targetOf(REDIS_URL, 6379));
    await partition.up();
    await partition.cut();
    await expect(RedisLimiter.connect(`redis://:secret@127.0.0.1:${partition.port}`, prefix())).rejects.toThrow(
      new RegExp(`cannot reach Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${partition.port}`),
    );
  });

  it("mid-service: admit fails fast, a slot freed meanwhile is freed once Redis is back, and the outage is logged once", async () => {
    const partition = new Partition(targetOf(REDIS_URL, 6379));
    await partition.up();
    const events: string[] = [];
    const logger: Logger = { log: (_level, event) => void events.push(event), addSecret: () => undefined };
    const limiter = await RedisLimiter.connect(partition.relayed(REDIS_URL), prefix(), logger);
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
      // The slot p1 held was freed after the reconnection (without it, p3 waits for the lease to lapse).
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

  it("an admission that timed out gives back the slot it may still have taken", async () => {
    const partition = new Partition(targetOf(REDIS_URL, 6379));
    await partition.up();
    const limiter = await RedisLimiter.connect(partition.relayed(REDIS_URL), prefix());
    try {
      const scope = [{ id: "key:slow", concurrency: 1 }];
      partition.delayMs = 2_500;
      // Past the 2 s command timeout: refused, though Redis runs the script (and takes the slot) half a second later.
      await expect(limiter.admit("s1", scope, 1)).rejects.toBeInstanceOf(LimiterUnavailableError);
      partition.delayMs = 0;
      let admitted = false;
      for (let i = 0; i < 40 && !admitted; i++) {
        admitted = (await limiter.admit(`s2-${i}`, scope, 1)).ok;
        if (!admitted) await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(admitted).toBe(true);
    } finally {
      await limiter.close();
      await partition.cut();
    }
  });

  it("the API answers 503 limits_unavailable with a Retry-After, charges nothing, and /health says so", async () => {
    const partition = new Partition(targetOf(REDIS_URL, 6379));
    await partition.up();
    const fresh = await freshStore("sqlite", "redis_down");
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      redis: partition.relayed(REDIS_URL),
      redisPrefix: prefix(),
      plans: { default: { rpm: 100, topLogprobs: 0 } },
      models: [
        {
          name: "avocado-tiny",
          gguf: teacherGguf("tiny-qwen"),
          price: { inputPerMillion: 1, outputPerMillion: 1 },
          maxTokens: 4,
        },
      ],
    });
    const models = new Map<string, ServedModel>([
      ["avocado-tiny", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-qwen"))],
    ]);
    const api = await startApi({ config, workspace: scratchFolder("outage"), models });
    try {
      const { key } = await api.store.createKey({ org: "partitioned", name: "k" });
      await api.store.grant("partitioned", 1_000_000, "p");
      const client = new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
      const ask = () =>
        client.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 1,
        });
      await ask();
      await partition.cut();
      const refused = await failureOf(ask());
      expect([refused?.status, refused?.code, refused?.headers?.get("retry-after")]).toEqual([
        503,
        "limits_unavailable",
        "1",
      ]);
      const health = await fetch(`${api.url}/health`);
      expect([health.status, await health.json()]).toEqual([
        503,
        { ok: false, ledger: "ok", limits: "unavailable", models: { "avocado-tiny": "ok" } },
      ]);
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

describe("PostgreSQL unreachable", () => {
  it("refuses to start with a clear error, naming the URL without its password", async () => {
    const partition = new Partition(targetOf(POSTGRES_URL, 5432));
    await partition.up();
    await partition.cut();
    await expect(Store.open(partition.relayed("postgres://postgres:secret@127.0.0.1:5432/test"))).rejects.toThrow(
      /cannot reach PostgreSQL at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/test/,
    );
  });

  it("survives the database closing its connections, answers 503 during a partition, and settles a stream cut off from it once it is back", async () => {
    const fresh = await freshStore("postgres", "outage");
    await fresh.store.close();
    const partition = new Partition(targetOf(POSTGRES_URL, 5432));
    await partition.up();
    const application = `avocado_outage_${process.pid}`;
    const events: string[] = [];
    const logger: Logger = { log: (_level, event) => void events.push(event), addSecret: () => undefined };
    const config = serveSchema.parse({
      port: 0,
      store: `${partition.relayed(fresh.url)}&application_name=${application}`,
      plans: { default: { rpm: 1_000, topLogprobs: 0 } },
      models: [
        {
          name: "avocado-tiny",
          gguf: teacherGguf("tiny-qwen"),
          price: { inputPerMillion: 1_000_000, outputPerMillion: 4_000_000 },
          maxTokens: 256,
        },
      ],
    });
    const models = new Map<string, ServedModel>([
      ["avocado-tiny", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-qwen"))],
    ]);
    const api = await startApi({ config, workspace: scratchFolder("outage"), models, logger });
    try {
      const { key } = await api.store.createKey({ org: "outage", name: "k" });
      await api.store.grant("outage", 10_000_000, "o");
      const org = (await api.store.orgByName("outage"))!.id;
      const client = new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
      const ask = () =>
        client.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 2,
        });
      await ask();

      // The database closes every connection (a restart, a failover): the server lives on and opens new ones.
      const admin = new pg.Client({ connectionString: POSTGRES_URL });
      await admin.connect();
      await admin.query("select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1", [
        application,
      ]);
      await admin.end();
      await until(() => events.includes("store.connection_lost"));
      await ask();

      // Cut off: 503 with a Retry-After, not a 500 or a hang; /health says so.
      await partition.cut();
      const refused = await failureOf(ask());
      expect([refused?.status, refused?.code, refused?.headers?.get("retry-after")]).toEqual([
        503,
        "ledger_unavailable",
        "1",
      ]);
      const health = await fetch(`${api.url}/health`);
      expect([health.status, ((await health.json()) as { ledger: string }).ledger]).toEqual([503, "unavailable"]);

      // Cut off mid-stream: the client reads its whole answer; its charge lands once the database is back.
      await partition.up();
      const usage = await streamCutMidway(client, "avocado-tiny", partition);
      expect(usage?.completion_tokens).toBeGreaterThan(20);
      expect(events).toContain("api.settle_failed");
      await partition.up();
      await until(() => events.includes("api.settle_retried"), 20_000);

      expect(await api.store.openHolds()).toEqual([]);
      const rows = await api.store.usage();
      const charged = rows.reduce((sum, row) => sum + row.cost, 0);
      expect(rows.reduce((sum, row) => sum + row.requests, 0)).toBe(3);
      expect(charged).toBeGreaterThanOrEqual(usage!.prompt_tokens * 1 + usage!.completion_tokens * 4);
      expect(await api.store.balance(org)).toEqual({ available: 10_000_000 - charged, held: 0 });
      expect((await api.store.audit()).problems).toEqual([]);
    } finally {
      await api.close();
      await partition.cut();
      await fresh.drop();
    }
  });

  /**
   * A server on a fresh PostgreSQL store reached through a relay (`partition`), a key of an org with credit, a request
   * to make, and what closes it all.
   */
  async function partitionedApi(name: string, storeTimeoutMs: number, logger?: Logger) {
    const partition = new Partition(targetOf(POSTGRES_URL, 5432));
    await partition.up();
    const fresh = await freshStore("postgres", name);
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: partition.relayed(fresh.url),
      storeTimeoutMs,
      models: [
        {
          name: "avocado-tiny",
          gguf: teacherGguf("tiny-qwen"),
          price: { inputPerMillion: 1_000_000, outputPerMillion: 1_000_000 },
          maxTokens: 4,
        },
      ],
    });
    const models = new Map<string, ServedModel>([
      ["avocado-tiny", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-qwen"))],
    ]);
    const api = await startApi({ config, workspace: scratchFolder("outage"), models, logger });
    const { key } = await api.store.createKey({ org: name, name: "k" });
    await api.store.grant(name, 1_000_000, "g");
    const client = new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
    const ask = () =>
      client.chat.completions.create({
        model: "avocado-tiny",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 2,
      });
    const close = async () => {
      await api.close();
      await partition.cut();
      await fresh.drop();
    };
    return { api, ask, partition, close };
  }

  it("a connection that breaks in the middle of a query fails that request with a 503, and the server lives on", async () => {
    const events: string[] = [];
    const logger: Logger = { log: (_level, event) => void events.push(event), addSecret: () => undefined };
    const { api, ask, partition, close } = await partitionedApi("midquery", 10_000, logger);
    try {
      await ask();
      // The next request's queries reach the database a second late; the link breaks while the first is on its way.
      partition.delayMs = 1_000;
      const pending = failureOf(ask());
      await new Promise((resolve) => setTimeout(resolve, 300));
      await partition.cut();
      const refused = await pending;
      expect([refused?.status, refused?.code]).toEqual([503, "ledger_unavailable"]);
      expect(events).toContain("store.connection_lost");
      partition.delayMs = 0;
      await partition.up();
      await ask();
      expect(await api.store.openHolds()).toEqual([]);
      expect((await api.store.audit()).problems).toEqual([]);
    } finally {
      await close();
    }
  });

  it("a network that drops everything without closing (a black hole) gives 503 soon after storeTimeoutMs, not a hang, and that connection is not used again", async () => {
    const { api, ask, partition, close } = await partitionedApi("blackhole", 300);
    try {
      await ask();
      // Nothing sent reaches the database for a minute, and nothing closes: the server's own timeout never hears of the
      // query.
      partition.delayMs = 60_000;
      const started = Date.now();
      const refused = await failureOf(ask());
      expect([refused?.status, refused?.code]).toEqual([503, "ledger_unavailable"]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_200);
      expect(Date.now() - started).toBeLessThan(5_000);
      // The link is healthy again: the requests that follow get connections that work (the lost one was closed).
      partition.delayMs = 0;
      for (let i = 0; i < 3; i++) await ask();
      expect(await api.store.openHolds()).toEqual([]);
      expect((await api.store.audit()).problems).toEqual([]);
    } finally {
      await close();
    }
  });

  it("a table locked by maintenance gives 503 after storeTimeoutMs rather than a hang, and service resumes when the lock goes", async () => {
    const fresh = await freshStore("postgres", "locked");
    await fresh.store.close();
    const schema = /search_path=([a-z0-9_]+)/.exec(decodeURIComponent(fresh.url))![1]!;
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      storeTimeoutMs: 500,
      models: [
        {
          name: "avocado-tiny",
          gguf: teacherGguf("tiny-qwen"),
          price: { inputPerMillion: 1_000_000, outputPerMillion: 1_000_000 },
          maxTokens: 4,
        },
      ],
    });
    const models = new Map<string, ServedModel>([
      ["avocado-tiny", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-qwen"))],
    ]);
    const api = await startApi({ config, workspace: scratchFolder("outage"), models });
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    try {
      const { key } = await api.store.createKey({ org: "locked", name: "k" });
      await api.store.grant("locked", 1_000_000, "l");
      const client = new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
      const ask = () =>
        client.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 2,
        });
      await ask();
      await admin.connect();
      await admin.query("begin");
      await admin.query(`lock table ${schema}.balances in access exclusive mode`);
      const started = Date.now();
      const refused = await failureOf(ask());
      expect([refused?.status, refused?.code]).toEqual([503, "ledger_unavailable"]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(400);
      expect(Date.now() - started).toBeLessThan(5_000);
      await admin.query("rollback");
      await ask();
      expect(await api.store.openHolds()).toEqual([]);
      expect((await api.store.audit()).problems).toEqual([]);
    } finally {
      await admin.end().catch(() => undefined);
      await api.close();
      await fresh.drop();
    }
  });
});
