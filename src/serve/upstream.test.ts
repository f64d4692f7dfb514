import { createServer, request as httpRequest } from "node:http";
import { connect, type AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failureOf, teacherGguf } from "../../test/fixtures.ts";
import { OpenAiCompatibleTestServer } from "../../test/openai-compatible-server.ts";
import { until } from "../../test/partition.ts";
import { freshStore } from "../../test/stores.ts";
import { serveSchema } from "../core/config/serve-schema.ts";
import { EmbeddedEngine } from "../engine/embedded-engine.ts";
import { startApi, type RunningApi } from "./server.ts";
import { LedgerUnavailableError } from "./store/ledger.ts";
import { SqliteLedger } from "./store/sqlite-ledger.ts";
import { Store } from "./store/store.ts";

const ADMIN = "admin-token-for-the-upstream-test";

describe("avocado serve in front of a pool of upstream OpenAI-compatible servers (real models)", () => {
  const upstreams: OpenAiCompatibleTestServer[] = [];
  let api: RunningApi;
  let drop: () => Promise<void>;
  let client: OpenAI;

  beforeAll(async () => {
    for (let i = 0; i < 2; i++)
      upstreams.push(
        await new OpenAiCompatibleTestServer(await EmbeddedEngine.load(teacherGguf("tiny-gemma"), { sequences: 1 }), {
          model: "tiny-gemma",
        }).start(),
      );
    const fresh = await freshStore("sqlite", "upstream");
    drop = fresh.drop;
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      models: [
        {
          name: "avocado-pool",
          upstreams: upstreams.map((u) => u.baseUrl),
          upstreamModel: "tiny-gemma",
          price: { inputPerMillion: 1_000_000, outputPerMillion: 1_000_000 },
          maxTokens: 16,
        },
      ],
    });
    api = await startApi({ config, workspace: "/nonexistent", adminToken: ADMIN });
    const { key } = await api.store.createKey({ org: "pool", name: "k" });
    await api.store.grant("pool", 100_000_000, "pool");
    client = new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await api?.close();
    for (const upstream of upstreams) {
      await upstream.stop().catch(() => undefined);
      await upstream.engine.dispose();
    }
    await drop?.();
  });

  it("spreads concurrent requests over the upstreams and meters the upstream's own token counts", async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        client.chat.completions.create({
          model: "avocado-pool",
          messages: [{ role: "user", content: "Convert 20 kg to g." }],
          max_tokens: 12,
          temperature: 0,
          presence_penalty: 0.25,
        }),
      ),
    );
    // The penalties go through to the upstream, as OpenAI-compatible servers take them.
    expect(upstreams.flatMap((u) => u.received.map((r) => r.body))).toContainEqual(
      expect.objectContaining({ presence_penalty: 0.25 }),
    );
    expect(new Set(results.map((r) => r.choices[0]!.message.content)).size).toBe(1);
    expect(
      upstreams.map((u) => u.received.filter((r) => r.path === "/v1/chat/completions").length).every((n) => n > 0),
    ).toBe(true);
    const usage = await api.store.usage();
    expect(usage.reduce((sum, row) => sum + row.prompt_tokens, 0)).toBe(
      results.reduce((sum, r) => sum + r.usage!.prompt_tokens, 0),
    );
    // A JSON schema goes through too (vLLM enforces it with its own guided decoding).
    const schema = { type: "object", properties: { grams: { type: "integer", minimum: 0 } }, required: ["grams"] };
    await client.chat.completions.create({
      model: "avocado-pool",
      messages: [{ role: "user", content: "Convert 20 kg to g." }],
      max_tokens: 4,
      response_format: { type: "json_schema", json_schema: { name: "grams", schema, strict: true } },
    });
    expect(upstreams.flatMap((u) => u.received.map((r) => r.body))).toContainEqual(
      expect.objectContaining({
        response_format: { type: "json_schema", json_schema: { name: "grams", schema, strict: true } },
      }),
    );
  });

  it("streams through the pool, and fails over when an upstream goes down", async () => {
    const stream = await client.chat.completions.create({
      model: "avocado-pool",
      messages: [{ role: "user", content: "Convert 20 kg to g." }],
      max_tokens: 12,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      usage = chunk.usage ?? usage;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(usage?.completion_tokens).toBeGreaterThan(0);
    await upstreams[0]!.stop();
    for (let i = 0; i < 4; i++) {
      const answer = await client.chat.completions.create({
        model: "avocado-pool",
        messages: [{ role: "user", content: "Convert 20 kg to g." }],
        max_tokens: 12,
        temperature: 0,
      });
      expect(answer.choices[0]!.message.content!.length).toBeGreaterThan(0);
    }
    expect((await api.store.audit()).problems).toEqual([]);
    // One upstream left: the server is still healthy for a load balancer.
    const health = await fetch(`${api.url}/health`);
    expect([health.status, await health.json()]).toEqual([
      200,
      { ok: true, ledger: "ok", limits: "ok", models: { "avocado-pool": "ok" } },
    ]);
  });

  it("reports itself unhealthy (503) when no upstream of its models answers, or when its ledger cannot write", async () => {
    const fresh = await freshStore("sqlite", "health");
    await fresh.store.close();
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      models: [
        {
          name: "gone",
          upstreams: [`http://127.0.0.1:${port}/v1`],
          price: { inputPerMillion: 1, outputPerMillion: 1 },
          maxTokens: 4,
        },
      ],
    });
    const lonely = await startApi({ config, workspace: "/nonexistent" });
    try {
      const { key } = await lonely.store.createKey({ org: "h", name: "k" });
      await lonely.store.grant("h", 1_000_000, "h");
      expect((await fetch(`${lonely.url}/health`)).status).toBe(200);
      const failed = await new OpenAI({ apiKey: key, baseURL: `${lonely.url}/v1`, maxRetries: 0 }).chat.completions
        .create({ model: "gone", messages: [{ role: "user", content: "hi" }] })
        .catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(OpenAI.APIError);
      const down = await fetch(`${lonely.url}/health`);
      expect([down.status, await down.json()]).toEqual([
        503,
        { ok: false, ledger: "ok", limits: "ok", models: { gone: "unavailable" } },
      ]);
      // A ledger that failed and could not be rebuilt from its journal: nothing can be charged here.
      (lonely.store["ledger"] as SqliteLedger).writer["broken"] = new LedgerUnavailableError(new Error("disk gone"));
      expect(await (await fetch(`${lonely.url}/health`)).json()).toMatchObject({ ok: false, ledger: "unavailable" });
      // A request meanwhile: 503 with a Retry-After (nothing can be held, nothing is charged), not a 500.
      const refused = await failureOf(
        new OpenAI({ apiKey: key, baseURL: `${lonely.url}/v1`, maxRetries: 0 }).chat.completions.create({
          model: "gone",
          messages: [{ role: "user", content: "hi" }],
        }),
      );
      expect([refused?.status, refused?.code, refused?.headers?.get("retry-after")]).toEqual([
        503,
        "ledger_unavailable",
        "1",
      ]);
      (lonely.store["ledger"] as SqliteLedger).writer["broken"] = undefined;
    } finally {
      await lonely.close();
      await fresh.drop();
    }
  });

  it("answers an upstream's garbage stream with an upstream error, charging only what was metered", async () => {
    const garbage = createServer((request, response) => {
      request.resume();
      request.on("end", () => {
        if (request.method === "GET") return void response.end('{"data":[]}');
        response.writeHead(200, { "content-type": "text/event-stream" });
        response.end('data: {"choices":[{"index":0,"delta":{"content":"ok"}}]}\n\ndata: <html>oops</html>\n\n');
      });
    });
    await new Promise<void>((resolve) => garbage.listen(0, "127.0.0.1", resolve));
    const fresh = await freshStore("sqlite", "garbage");
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      metricsPublic: true,
      models: [
        {
          name: "broken",
          upstreams: [`http://127.0.0.1:${(garbage.address() as AddressInfo).port}/v1`],
          price: { inputPerMillion: 1_000_000, outputPerMillion: 1_000_000 },
          maxTokens: 16,
        },
      ],
    });
    const broken = await startApi({ config, workspace: "/nonexistent" });
    try {
      const { key } = await broken.store.createKey({ org: "g", name: "k" });
      await broken.store.grant("g", 1_000_000, "g");
      const brokenClient = new OpenAI({ apiKey: key, baseURL: `${broken.url}/v1`, maxRetries: 0 });
      const stream = await brokenClient.chat.completions.create({
        model: "broken",
        messages: [{ role: "user", content: "hi" }],
        stream: true,
      });
      await expect(
        (async () => {
          for await (const chunk of stream) void chunk;
        })(),
      ).rejects.toThrow(/the model's server failed/);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await broken.store.openHolds()).toEqual([]);
      const once = await broken.store.usage();
      // Two choices, each broken after one token: the stream ends with the error (the first failure stops the other),
      // and each choice is charged what it streamed.
      const twice = await brokenClient.chat.completions.create({
        model: "broken",
        messages: [{ role: "user", content: "hi" }],
        stream: true,
        n: 2,
      });
      const seen = new Set<number>();
      await expect(
        (async () => {
          for await (const chunk of twice)
            for (const choice of chunk.choices) if (choice.delta.content) seen.add(choice.index);
        })(),
      ).rejects.toThrow(/the model's server failed/);
      expect(seen.size).toBeGreaterThan(0);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const after = await broken.store.usage();
      expect(after[0]!.requests - once[0]!.requests).toBe(1);
      expect(after[0]!.completion_tokens - once[0]!.completion_tokens).toBe(seen.size);
      expect(after[0]!.prompt_tokens - once[0]!.prompt_tokens).toBe(seen.size * once[0]!.prompt_tokens);
      expect(await broken.store.openHolds()).toEqual([]);
      // This server's metrics are public (metricsPublic): no token needed.
      expect(await (await fetch(`${broken.url}/metrics`)).text()).toMatch(
        /avocado_requests_total\{route="chat",model="broken"/,
      );
      expect((await broken.store.audit()).problems).toEqual([]);
    } finally {
      await broken.close();
      garbage.close();
      await fresh.drop();
    }
  });

  /**
   * An upstream that takes each request and never answers (only a cancellation ends one), and a server of its own in
   * front of it.
   */
  async function inFrontOfHangingUpstream(
    label: string,
    serve: Record<string, unknown> = {},
    model: Record<string, unknown> = {},
  ) {
    const closed: string[] = [];
    const hanging = createServer((request, response) => {
      if (request.method === "GET") return void response.end('{"data":[]}');
      let body = "";
      request.on("data", (part: Buffer) => (body += part.toString()));
      response.on("close", () => closed.push((JSON.parse(body) as { stream?: boolean }).stream ? "stream" : "whole"));
    });
    await new Promise<void>((resolve) => hanging.listen(0, "127.0.0.1", resolve));
    const fresh = await freshStore("sqlite", label);
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      ...serve,
      models: [
        {
          name: "slow",
          upstreams: [`http://127.0.0.1:${(hanging.address() as AddressInfo).port}/v1`],
          price: { inputPerMillion: 1_000_000, outputPerMillion: 1_000_000 },
          maxTokens: 16,
          ...model,
        },
      ],
    });
    const slow = await startApi({ config, workspace: "/nonexistent" });
    const { key } = await slow.store.createKey({ org: "s", name: "k" });
    await slow.store.grant("s", 1_000_000, "s");
    /** A client's request on a connection of its own (node:http, no keep-alive), to destroy when it goes away. */
    const call = (stream: boolean) => {
      const target = new URL(slow.url);
      const payload = JSON.stringify({ model: "slow", messages: [{ role: "user", content: "hi" }], stream });
      const request = httpRequest({
        host: target.hostname,
        port: target.port,
        path: "/v1/chat/completions",
        method: "POST",
        agent: false,
        headers: {
          authorization: `Bearer ${key}`,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
        },
      });
      request.on("error", () => undefined);
      request.end(payload);
      return request;
    };
    const done = async () => {
      hanging.closeAllConnections();
      hanging.close();
      await fresh.drop();
    };
    return { slow, closed, call, key, url: fresh.url, done };
  }

  it("cancels the upstream's work when the client goes away (non-stream and stream), settling the request as cancelled", async () => {
    const { slow, closed, call, done } = await inFrontOfHangingUpstream("hanging");
    try {
      for (const stream of [false, true]) {
        const request = call(stream);
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect(await slow.store.openHolds()).toHaveLength(1);
        request.destroy();
        for (let i = 0; i < 50 && closed.length < (stream ? 2 : 1); i++)
          await new Promise((resolve) => setTimeout(resolve, 20));
        expect(closed).toEqual(stream ? ["whole", "stream"] : ["whole"]);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await slow.store.openHolds()).toEqual([]);
      const usage = await slow.store.usage();
      expect(usage.map((row) => [row.requests, row.cost])).toEqual([[2, 0]]);
      expect(
        (await slow.store.db.selectFrom("requests").select("outcome").execute()).map((row) => row.outcome),
      ).toEqual(["cancelled", "cancelled"]);
      expect((await slow.store.audit()).problems).toEqual([]);
    } finally {
      await slow.close();
      await done();
    }
  });

  it("fails over when an upstream is busy (503) or failing (500) before any output; all busy is a 503 with the upstream's Retry-After", async () => {
    // Upstreams in states no real engine here gets into on demand: one overloaded (vLLM and llama.cpp's 503), one
    // failing.
    const seen: string[] = [];
    const answering = (name: string, status: number, headers: Record<string, string>) =>
      createServer((request, response) => {
        if (request.method === "GET")
          return void response
            .writeHead(200, { "content-type": "application/json" })
            .end('{"object":"list","data":[]}');
        seen.push(name);
        request.resume();
        response
          .writeHead(status, { "content-type": "application/json", ...headers })
          .end(JSON.stringify({ error: { message: `${name} says no`, type: "server_error" } }));
      });
    const busy = answering("busy", 503, { "retry-after": "7" });
    const failing = answering("failing", 500, {});
    for (const server of [busy, failing]) await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = (server: typeof busy) => `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    const fresh = await freshStore("sqlite", "failover");
    await fresh.store.close();
    const price = { inputPerMillion: 1_000_000, outputPerMillion: 1_000_000 };
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      models: [
        {
          name: "mixed",
          upstreams: [url(busy), url(failing), upstreams[1]!.baseUrl],
          upstreamModel: "tiny-gemma",
          price,
          maxTokens: 8,
        },
        { name: "busy-only", upstreams: [url(busy)], price, maxTokens: 8 },
      ],
    });
    const pool = await startApi({ config, workspace: "/nonexistent" });
    try {
      const { key } = await pool.store.createKey({ org: "f", name: "k" });
      await pool.store.grant("f", 1_000_000, "f");
      const client = new OpenAI({ apiKey: key, baseURL: `${pool.url}/v1`, maxRetries: 0 });
      const answer = await client.chat.completions.create({
        model: "mixed",
        messages: [{ role: "user", content: "Convert 20 kg to g." }],
        max_tokens: 4,
      });
      expect(answer.choices[0]!.message.content!.length).toBeGreaterThan(0);
      expect(seen).toEqual(["busy", "failing"]);
      const refused = await failureOf(
        client.chat.completions.create({ model: "busy-only", messages: [{ role: "user", content: "hi" }] }),
      );
      expect([refused?.status, refused?.code, refused?.headers?.get("retry-after")]).toEqual([
        503,
        "model_overloaded",
        "7",
      ]);
      // Charged once, for the answer the real upstream gave; nothing for the refusal.
      const usage = await pool.store.usage();
      expect(usage.reduce((sum, row) => sum + row.requests, 0)).toBe(2);
      expect(usage.reduce((sum, row) => sum + row.cost, 0)).toBe(
        answer.usage!.prompt_tokens + answer.usage!.completion_tokens,
      );
      expect((await pool.store.audit()).problems).toEqual([]);
    } finally {
      await pool.close();
      for (const server of [busy, failing]) server.close();
      await fresh.drop();
    }
  });

  it("ends a request whose upstream does not answer within the model's timeoutMs: 504, or an error event in a stream, charged nothing, no failover", async () => {
    const { slow, closed, key, done } = await inFrontOfHangingUpstream("timeout", {}, { timeoutMs: 300 });
    try {
      const client = new OpenAI({ apiKey: key, baseURL: `${slow.url}/v1`, maxRetries: 0 });
      const started = Date.now();
      const whole = await failureOf(
        client.chat.completions.create({ model: "slow", messages: [{ role: "user", content: "hi" }] }),
      );
      expect([whole?.status, whole?.code]).toEqual([504, "upstream_timeout"]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      const stream = await client.chat.completions.create({
        model: "slow",
        messages: [{ role: "user", content: "hi" }],
        stream: true,
      });
      await expect(
        (async () => {
          for await (const chunk of stream) void chunk;
        })(),
      ).rejects.toThrow(/did not answer in time/);
      await until(() => closed.length === 2);
      expect(closed).toEqual(["whole", "stream"]);
      expect(await slow.store.openHolds()).toEqual([]);
      expect((await slow.store.usage()).map((row) => [row.requests, row.cost])).toEqual([[2, 0]]);
      expect(
        (await slow.store.db.selectFrom("requests").select("outcome").execute()).map((row) => row.outcome),
      ).toEqual(["error", "error"]);
      expect((await slow.store.audit()).problems).toEqual([]);
    } finally {
      await slow.close();
      await done();
    }
  });

  it("shuts down in bounded time: idle and silent connections at once, requests in flight after the grace period, settled as cancelled", async () => {
    const { slow, closed, call, url, done } = await inFrontOfHangingUpstream("shutdown", { shutdownGraceMs: 400 });
    try {
      const target = new URL(slow.url);
      // A connection that never sends a request (a load balancer's pre-opened one): closing the server used to wait for
      // it forever.
      const silent = connect(Number(target.port), target.hostname);
      silent.on("error", () => undefined);
      await new Promise((resolve) => silent.once("connect", resolve));
      call(false);
      call(true);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await slow.store.openHolds()).toHaveLength(2);
      const started = Date.now();
      await slow.close();
      const took = Date.now() - started;
      expect(took).toBeGreaterThanOrEqual(350);
      expect(took).toBeLessThan(3_000);
      expect(silent.destroyed || silent.readableEnded).toBe(true);
      expect(closed.sort()).toEqual(["stream", "whole"]);
      const after = await Store.open(url);
      try {
        expect(await after.openHolds()).toEqual([]);
        expect((await after.db.selectFrom("requests").select("outcome").execute()).map((row) => row.outcome)).toEqual([
          "cancelled",
          "cancelled",
        ]);
        expect((await after.audit()).problems).toEqual([]);
      } finally {
        await after.close();
      }
    } finally {
      await done();
    }
  });

  it("exposes Prometheus metrics (requests, refusals, latency, tokens, spend) only to the admin token", async () => {
    const badKey = await fetch(`${api.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer avo_nope", "content-type": "application/json" },
      body: "{}",
    });
    expect(badKey.status).toBe(401);
    expect((await fetch(`${api.url}/v1/nowhere`)).status).toBe(404);
    expect((await fetch(`${api.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${api.url}/metrics`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    const text = await (await fetch(`${api.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
    expect(text).toMatch(/avocado_requests_total\{route="chat",model="avocado-pool",status="200"\} \d+/);
    expect(text).toMatch(/avocado_request_duration_seconds_bucket/);
    expect(text).toMatch(/avocado_tokens_total\{model="avocado-pool",kind="completion"\} \d+/);
    expect(text).toMatch(/avocado_spend_micros_total\{model="avocado-pool"\} \d+/);
    expect(text).toMatch(/avocado_time_to_first_token_seconds_count 1/);
    // Refused before admission: by route and status, no model label; the metrics endpoint's own 401s are counted too.
    expect(text).toMatch(/avocado_requests_total\{route="chat",model="",status="401"\} 1\n/);
    expect(text).toMatch(/avocado_requests_total\{route="unknown",model="",status="404"\} 1\n/);
    expect(text).toMatch(/avocado_requests_total\{route="metrics",model="",status="401"\} 2\n/);
    expect(text).toMatch(/avocado_settlements_pending 0\n/);
  });
});

describe("a streamed answer its client does not read", () => {
  it("is cut once streamBufferBytes wait for the client, and charged what was generated: the server does not hold the whole answer for it", async () => {
    // An upstream that streams faster and longer than any engine here can (about 20 MB of events at once): only such a
    // stream fills the network's buffers and then the server's. In the OpenAI format, usage in the last event.
    const events = 20_000;
    const word = "x".repeat(1_000);
    const upstream = createServer((request, response) => {
      if (request.method === "GET")
        return void response
          .writeHead(200, { "content-type": "application/json" })
          .end('{"object":"list","data":[{"id":"fast","object":"model"}]}');
      request.resume();
      request.on("end", () => {
        response.writeHead(200, { "content-type": "text/event-stream" });
        const chunk = (delta: object) =>
          `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 0, model: "fast", choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;
        let sent = 0;
        const more = () => {
          while (sent < events) {
            sent++;
            if (!response.write(chunk({ content: word }))) return void response.once("drain", more);
          }
          response.end(
            `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 0, model: "fast", choices: [], usage: { prompt_tokens: 5, completion_tokens: events, total_tokens: events + 5 } })}\n\ndata: [DONE]\n\n`,
          );
        };
        more();
      });
      response.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const fresh = await freshStore("sqlite", "unread");
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      streamBufferBytes: 65_536,
      metricsPublic: true,
      models: [
        {
          name: "fast",
          upstreams: [`http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`],
          price: { inputPerMillion: 1, outputPerMillion: 1 },
          maxTokens: 32_000,
        },
      ],
    });
    const logged: string[] = [];
    const api = await startApi({
      config,
      workspace: "/nonexistent",
      logger: { log: (_level, event) => void logged.push(event), addSecret: () => undefined },
    });
    try {
      const { key } = await api.store.createKey({ org: "unread", name: "k" });
      await api.store.grant("unread", 1_000_000, "u");
      // Asks for a stream, then reads nothing.
      const target = new URL(api.url);
      const body = JSON.stringify({
        model: "fast",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 32_000,
        stream: true,
      });
      const socket = connect(Number(target.port), target.hostname, () => {
        socket.write(
          `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
        socket.pause();
      });
      socket.on("error", () => undefined);
      await until(() => logged.includes("api.stream_not_read"), 30_000);
      await until(() => logged.includes("api.request"), 10_000);
      socket.destroy();
      expect(await api.store.openHolds()).toEqual([]);
      const [row] = await api.store.usage();
      // Charged what was generated before the cut: what the network's buffers and the bound held, a fraction of the 20
      // MB.
      expect(row?.requests).toBe(1);
      expect(row?.completion_tokens).toBeGreaterThan(0);
      expect(row?.completion_tokens).toBeLessThan(events / 2);
      expect(await (await fetch(`${api.url}/metrics`)).text()).toContain(
        'avocado_limit_hits_total{limit="stream_buffer"} 1',
      );
      expect((await api.store.audit()).problems).toEqual([]);
    } finally {
      await api.close();
      upstream.closeAllConnections();
      upstream.close();
      await fresh.drop();
    }
  }, 60_000);
});
