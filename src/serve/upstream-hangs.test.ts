import { createServer, request as httpRequest } from "node:http";
import { connect, type AddressInfo } from "node:net";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { failureOf } from "../../test/fixtures.ts";
import { until } from "../../test/partition.ts";
import { freshStore } from "../../test/stores.ts";
import { serveSchema } from "../core/config/serve-schema.ts";
import { startApi } from "./server.ts";
import { Store } from "./store/store.ts";

/** Upstreams that never answer, and clients that never read: cancellation, timeouts, shutdown, bounded buffers. */
describe("avocado serve in front of an upstream that hangs", () => {
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
