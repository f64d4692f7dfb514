import { createServer } from "node:http";
import { type AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failureOf, teacherGguf } from "../../test/fixtures.ts";
import { OpenAiCompatibleTestServer } from "../../test/openai-compatible-server.ts";
import { freshStore } from "../../test/stores.ts";
import { serveSchema } from "../core/config/serve-schema.ts";
import { EmbeddedEngine } from "../engine/embedded-engine.ts";
import { startApi, type RunningApi } from "./server.ts";
import { LedgerUnavailableError } from "./store/ledger.ts";
import { SqliteLedger } from "./store/sqlite-ledger.ts";

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
