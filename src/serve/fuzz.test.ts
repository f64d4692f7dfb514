import fc from "fast-check";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { teacherGguf } from "../../test/fixtures.ts";
import { freshStore } from "../../test/stores.ts";
import { serveSchema } from "../core/config/serve-schema.ts";
import { EmbeddedServedModel } from "./models/embedded-model.ts";
import type { ServedModel } from "./models/served-model.ts";
import { startApi, type RunningApi } from "./server.ts";

/**
 * Bad input, fuzzed: bodies, headers and client behaviour. The API answers 4xx
 * (or 200 when the fuzzer happens to write a valid request), never 5xx, never
 * crashes, leaves no hold open, and its memory stays bounded.
 */
describe("avocado serve under fuzzed input", () => {
  let api: RunningApi;
  let drop: () => Promise<void>;
  let key: string;
  let url: string;

  beforeAll(async () => {
    const fresh = await freshStore("sqlite", "fuzz");
    drop = fresh.drop;
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      bodyLimitBytes: 64 * 1024,
      requestTimeoutMs: 1_000,
      plans: { default: { rpm: 1_000_000, tpm: 1_000_000_000, concurrency: 64, topLogprobs: 2 } },
      models: [
        {
          name: "avocado-tiny",
          gguf: teacherGguf("tiny-qwen"),
          price: { inputPerMillion: 1000, outputPerMillion: 1000 },
          maxTokens: 8,
        },
      ],
    });
    const models = new Map<string, ServedModel>([
      ["avocado-tiny", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-qwen"))],
    ]);
    api = await startApi({ config, workspace: "/nonexistent", models });
    url = api.url;
    key = (await api.store.createKey({ org: "fuzz", name: "k" })).key;
    await api.store.grant("fuzz", 1_000_000_000, "fuzz");
  });
  afterAll(async () => {
    await api?.close();
    await drop?.();
  });

  const post = (body: string | Uint8Array, headers: Record<string, string> = {}, route = "/v1/chat/completions") =>
    fetch(`${url}${route}`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
      body,
    });

  const expectClientError = async (response: Response) => {
    const status = response.status;
    const text = await response.text();
    expect(status === 200 || (status >= 400 && status < 500), `${status}: ${text.slice(0, 200)}`).toBe(true);
    expect(response.headers.get("x-request-id")).toMatch(/^req_/);
    if (status !== 200)
      expect((JSON.parse(text) as { error: { message: string; type: string } }).error.type).toBeTypeOf("string");
  };

  /** A valid value four times in five, anything else otherwise. */
  const mostly = <T, U>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<U>) =>
    fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: invalid });
  const anyValue = fc.oneof(
    fc.string(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    fc.array(fc.string(), { maxLength: 3 }),
    fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
  );
  const message = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        role: fc.constantFrom("system", "user", "assistant", "developer"),
        content: fc.string({ maxLength: 40 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record(
        {
          role: fc.oneof(fc.constantFrom("system", "user", "tool"), anyValue),
          content: fc.oneof(fc.string({ maxLength: 40 }), anyValue),
        },
        { requiredKeys: [] },
      ),
    },
  );
  const body = fc.record(
    {
      model: fc.oneof({ weight: 4, arbitrary: fc.constant("avocado-tiny") }, { weight: 1, arbitrary: anyValue }),
      messages: fc.oneof(
        { weight: 4, arbitrary: fc.array(message, { minLength: 1, maxLength: 3 }) },
        { weight: 1, arbitrary: anyValue },
      ),
      max_tokens: mostly(
        fc.integer({ min: 1, max: 8 }),
        fc.oneof(fc.integer({ min: -5, max: 0 }), fc.constant(2 ** 31), fc.constant(1e300), anyValue),
      ),
      temperature: mostly(
        fc.double({ min: 0, max: 2, noNaN: true }),
        fc.oneof(fc.double({ min: -3, max: -0.01, noNaN: true }), anyValue),
      ),
      top_p: mostly(
        fc.double({ min: 0.1, max: 1, noNaN: true }),
        fc.oneof(fc.double({ min: -1, max: 0, noNaN: true }), anyValue),
      ),
      n: mostly(fc.integer({ min: 1, max: 2 }), fc.oneof(fc.integer({ min: -2, max: 0 }), fc.constant(99), anyValue)),
      stream: mostly(fc.boolean(), anyValue),
      logprobs: mostly(fc.boolean(), anyValue),
      top_logprobs: mostly(fc.integer({ min: 0, max: 2 }), fc.oneof(fc.integer({ min: 3, max: 30 }), anyValue)),
      stop: mostly(
        fc.array(fc.string({ minLength: 1, maxLength: 3 }), { maxLength: 4 }),
        fc.oneof(fc.array(fc.string(), { minLength: 5, maxLength: 6 }), anyValue),
      ),
      seed: mostly(fc.integer(), anyValue),
    },
    { requiredKeys: [] },
  );

  it("answers fuzzed JSON bodies with 4xx (or 200), never 5xx", async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(body, async (value) => {
        const response = await post(JSON.stringify(value));
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        await expectClientError(response);
      }),
      { numRuns: 300, seed: 20261126 },
    );
    // Not vacuous: the fuzzer reached the model (200) as well as every kind of refusal.
    expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
    expect([...statuses.keys()].filter((s) => s >= 400).length).toBeGreaterThanOrEqual(3);
  }, 120_000);

  const textBody = fc.record(
    {
      model: fc.oneof({ weight: 4, arbitrary: fc.constant("avocado-tiny") }, { weight: 1, arbitrary: anyValue }),
      prompt: fc.oneof(
        { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
        { weight: 1, arbitrary: fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }) },
        { weight: 1, arbitrary: anyValue },
      ),
      max_tokens: mostly(
        fc.integer({ min: 1, max: 8 }),
        fc.oneof(fc.integer({ min: -5, max: 0 }), fc.constant(2 ** 31), anyValue),
      ),
      n: mostly(fc.integer({ min: 1, max: 2 }), fc.oneof(fc.integer({ min: -2, max: 0 }), anyValue)),
      stream: mostly(fc.boolean(), anyValue),
      logprobs: mostly(fc.integer({ min: 0, max: 2 }), fc.oneof(fc.integer({ min: 3, max: 30 }), anyValue)),
      echo: mostly(fc.constant(false), anyValue),
      suffix: mostly(fc.constant(""), anyValue),
      best_of: mostly(fc.constant(1), anyValue),
      stop: mostly(fc.string({ minLength: 1, maxLength: 3 }), anyValue),
    },
    { requiredKeys: [] },
  );

  it("answers fuzzed text-completion bodies with 4xx (or 200), never 5xx", async () => {
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(textBody, async (value) => {
        const response = await post(JSON.stringify(value), {}, "/v1/completions");
        statuses.add(response.status);
        await expectClientError(response);
      }),
      { numRuns: 300, seed: 20261127 },
    );
    expect(statuses.has(200)).toBe(true);
    expect([...statuses].filter((s) => s >= 400).length).toBeGreaterThanOrEqual(3);
  }, 120_000);

  it("answers arbitrary bytes, invalid UTF-8, wrong content types and bad auth headers with 4xx", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        fc.constantFrom(
          "application/json",
          "text/plain",
          "application/x-www-form-urlencoded",
          "application/json; charset=latin1",
        ),
        async (bytes, type) => {
          await expectClientError(await post(bytes, { "content-type": type }));
        },
      ),
      { numRuns: 100, seed: 7 },
    );
    await expectClientError(await post(Buffer.from([0x7b, 0x22, 0x6d, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])));
    await fc.assert(
      fc.asyncProperty(
        fc.string({ unit: fc.constantFrom(..."abcXYZ019 _-.:/=+Bearer".split("")), maxLength: 60 }),
        async (authorization) => {
          const response = await fetch(`${url}/v1/chat/completions`, {
            method: "POST",
            headers: { authorization, "content-type": "application/json" },
            body: JSON.stringify({ model: "avocado-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 1 }),
          });
          expect(response.status).toBe(401);
          await response.text();
        },
      ),
      { numRuns: 60, seed: 11 },
    );
    const big = await post(
      JSON.stringify({ model: "avocado-tiny", messages: [{ role: "user", content: "x".repeat(100_000) }] }),
    );
    expect(big.status).toBe(413);
  }, 120_000);

  it("survives slow, abandoning and disconnecting clients, with no hold left open and memory bounded", async () => {
    const before = process.memoryUsage().rss;
    // A client that sends half a body and goes away.
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const target = new URL(url);
        const request = httpRequest({
          host: target.hostname,
          port: target.port,
          path: "/v1/chat/completions",
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-length": "500" },
        });
        request.on("error", () => resolve());
        request.write('{"model":"avocado-tiny","messa');
        setTimeout(() => {
          request.destroy();
          resolve();
        }, 5);
      });
    }
    // Clients that disconnect mid-stream.
    await Promise.all(
      Array.from({ length: 30 }, async () => {
        const response = await post(
          JSON.stringify({
            model: "avocado-tiny",
            messages: [{ role: "user", content: "What is 25*12?" }],
            max_tokens: 8,
            stream: true,
          }),
          {},
        ).catch(() => undefined);
        const reader = response?.body?.getReader();
        await reader?.read().catch(() => undefined);
        await reader?.cancel().catch(() => undefined);
      }),
    );
    // Many valid requests: memory must not grow with them.
    for (let i = 0; i < 200; i++)
      await (
        await post(
          JSON.stringify({ model: "avocado-tiny", messages: [{ role: "user", content: `hi ${i}` }], max_tokens: 1 }),
        )
      ).text();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await api.store.openHolds()).toEqual([]);
    expect((await api.store.audit()).problems).toEqual([]);
    const grown = (process.memoryUsage().rss - before) / 1024 / 1024;
    expect(grown).toBeLessThan(150);
    expect((await fetch(`${url}/health`)).status).toBe(200);
  }, 120_000);

  /**
   * Opens a raw connection, writes `head`, then one more byte every 100 ms; resolves with what the server sent, once it
   * closes.
   */
  const trickle = (head: string, byte: string) =>
    new Promise<{ response: string; ms: number }>((resolve) => {
      const target = new URL(url);
      const started = Date.now();
      let response = "";
      const socket = connect(Number(target.port), target.hostname, () => socket.write(head));
      const timer = setInterval(() => socket.writable && socket.write(byte), 100);
      socket.on("data", (data: Buffer) => (response += data.toString()));
      socket.on("error", () => undefined);
      socket.on("close", () => {
        clearInterval(timer);
        resolve({ response, ms: Date.now() - started });
      });
    });

  it("closes slow clients (a trickled body, headers that never end) with 408 in time, and refuses huge headers with 431", async () => {
    const slowBody = trickle(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{"model":"avocado-tiny","messages":`,
      " ",
    );
    const slowHeaders = trickle(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n`, "x");
    for (const { response, ms } of await Promise.all([slowBody, slowHeaders])) {
      // The limit is 1 s, checked every 250 ms; each byte reset nothing.
      expect(ms).toBeLessThan(4_000);
      expect(response).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
      expect(response).toMatch(/\r\nx-request-id: req_/);
      const body = JSON.parse(response.slice(response.indexOf("\r\n\r\n") + 4)) as {
        error: { type: string; code: string };
      };
      expect(body.error).toMatchObject({ type: "invalid_request_error", code: "request_timeout" });
    }
    const huge = await trickle(`GET /v1/models HTTP/1.1\r\nhost: x\r\nx-filler: ${"a".repeat(20_000)}\r\n\r\n`, "");
    expect(huge.response).toMatch(/^HTTP\/1\.1 431 /);
    expect(await api.store.openHolds()).toEqual([]);
    expect((await fetch(`${url}/health`)).status).toBe(200);
  }, 30_000);
});
