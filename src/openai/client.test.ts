import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { modelsSchema } from "./protocol.ts";
import { ModelError } from "../core/model-error.ts";
import { OpenAiClient } from "./client.ts";

/**
 * The non-stream path to an upstream (undici's dispatch API): every way an
 * OpenAI-compatible server's answer can go wrong becomes a typed ModelError.
 * Small node:http servers play the upstream: these are edges (a body cut off,
 * a body too large, a hang) that no real engine here produces on demand.
 */
describe("OpenAiClient.json", () => {
  const servers: Server[] = [];
  const clients: OpenAiClient[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close();
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  async function upstream(
    handler: (request: IncomingMessage, response: ServerResponse, body: string) => void,
  ): Promise<OpenAiClient> {
    const server = createServer((request, response) => {
      let body = "";
      request.setEncoding("utf8");
      request.on("data", (part: string) => (body += part));
      request.on("end", () => handler(request, response, body));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const client = new OpenAiClient({
      label: "upstream test",
      baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    });
    clients.push(client);
    return client;
  }

  /** Writes `chunk` `times` times, minding backpressure, then ends the response. */
  function sendMany(response: ServerResponse, chunk: string, times: number): void {
    let sent = 0;
    const more = () => {
      while (sent < times && response.write(chunk)) sent++;
      if (sent < times) response.once("drain", more);
      else response.end();
    };
    more();
  }

  async function failure(promise: Promise<unknown>): Promise<ModelError> {
    const error = await promise.then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(ModelError);
    return error as ModelError;
  }

  it("reads a JSON answer, in one chunk or many, and sends the request's body", async () => {
    const client = await upstream((request, response, body) => {
      expect(request.url).toBe("/v1/models");
      if (request.method === "POST")
        return void response.end(JSON.stringify({ data: [{ id: `${request.headers["content-type"]} ${body}` }] }));
      response.writeHead(200, { "content-type": "application/json" });
      response.write('{"data":[{"id":"a"},');
      setTimeout(() => response.end('{"id":"é"}]}'), 5);
    });
    expect(await client.json("GET", "/models", undefined, undefined, modelsSchema)).toEqual({
      data: [{ id: "a" }, { id: "é" }],
    });
    expect(await client.json("POST", "/models", { hello: "world" }, undefined, modelsSchema)).toEqual({
      data: [{ id: 'application/json {"hello":"world"}' }],
    });
  });

  it("turns error statuses into their kinds, with the server's message and Retry-After", async () => {
    const client = await upstream((request, response) => {
      const status = Number(request.url!.split("/").at(-1));
      response.writeHead(status, status === 429 ? { "retry-after": "2" } : {});
      response.end(JSON.stringify({ error: { message: `refused with ${status}` } }));
    });
    const refused = await failure(client.json("GET", "/400", undefined, undefined, modelsSchema));
    expect(refused.kind).toBe("bad-request");
    expect(refused.status).toBe(400);
    expect(refused.message).toMatch(/answered 400: refused with 400/);
    const limited = await failure(client.json("GET", "/429", undefined, undefined, modelsSchema));
    expect([limited.kind, limited.retryAfterMs]).toEqual(["rate-limited", 2_000]);
    expect((await failure(client.json("GET", "/503", undefined, undefined, modelsSchema))).kind).toBe("overloaded");
    expect((await failure(client.json("GET", "/500", undefined, undefined, modelsSchema))).kind).toBe("server");
  });

  it("reads only the start of a huge error body, and keeps its status", async () => {
    const client = await upstream((_request, response) => {
      response.writeHead(500);
      response.end("x".repeat(1 << 20));
    });
    const error = await failure(client.json("GET", "/models", undefined, undefined, modelsSchema));
    expect(error.kind).toBe("server");
    expect(error.message.length).toBeLessThan(600);
  });

  it("refuses a body that is not JSON, or not the documented format", async () => {
    const html = await upstream((_request, response) => response.end("<html>oops</html>"));
    expect((await failure(html.json("GET", "/models", undefined, undefined, modelsSchema))).message).toMatch(
      /the answer is not JSON/,
    );
    const wrong = await upstream((_request, response) => response.end('{"data":"none"}'));
    const error = await failure(wrong.json("GET", "/models", undefined, undefined, modelsSchema));
    expect([error.kind, /not the documented format/.test(error.message)]).toEqual(["bad-response", true]);
  });

  it("refuses a body larger than 16 MB, declared or streamed, without reading it all", async () => {
    const declared = await upstream((_request, response) => {
      response.writeHead(200, { "content-length": String(64 << 20) });
      response.write("{");
    });
    expect((await failure(declared.json("GET", "/models", undefined, undefined, modelsSchema))).message).toMatch(
      /larger than 16777216 bytes/,
    );
    const streamed = await upstream((_request, response) => sendMany(response, "x".repeat(1 << 20), 40));
    expect((await failure(streamed.json("GET", "/models", undefined, undefined, modelsSchema))).message).toMatch(
      /larger than 16777216 bytes/,
    );
  });

  it("says an answer broke off, and an upstream that cannot be reached is unreachable", async () => {
    const cut = await upstream((_request, response) => {
      response.writeHead(200, { "content-length": "1000" });
      response.write('{"data":[');
      setTimeout(() => response.socket?.destroy(), 10);
    });
    expect((await failure(cut.json("GET", "/models", undefined, undefined, modelsSchema))).kind).toBe(
      "truncated-stream",
    );
    const closed = new OpenAiClient({ label: "upstream test", baseUrl: "http://127.0.0.1:1/v1" });
    clients.push(closed);
    const error = await failure(closed.json("GET", "/models", undefined, undefined, modelsSchema));
    expect([error.kind, /ECONNREFUSED/.test(error.message)]).toEqual(["unreachable", true]);
  });

  it("stops a hanging upstream on a timeout or a cancellation, and does not start a request already cancelled", async () => {
    let started = 0;
    const hang = await upstream(() => {
      started++;
    });
    expect((await failure(hang.json("GET", "/models", undefined, AbortSignal.timeout(50), modelsSchema))).kind).toBe(
      "timeout",
    );
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("the client disconnected")), 50);
    expect((await failure(hang.json("GET", "/models", undefined, controller.signal, modelsSchema))).kind).toBe(
      "aborted",
    );
    expect(started).toBe(2);
    expect((await failure(hang.json("GET", "/models", undefined, controller.signal, modelsSchema))).kind).toBe(
      "aborted",
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(started).toBe(2);
  });

  describe("a streamed answer", () => {
    const events = (...data: string[]) => data.map((d) => `data: ${d}\n\n`).join("");

    it("hands each event's data over as it comes, and ends at [DONE]", async () => {
      let release: () => void = () => undefined;
      const client = await upstream((_request, response, body) => {
        response.writeHead(200, { "content-type": "text/event-stream" });
        response.write(events(`{"n":1,"body":${JSON.stringify(body)}}`, '{"n":2}'));
        // The rest only once the first events have been handed over.
        release = () => response.end(`${events('{"n":3}', "[DONE]")}data: {"after":"done"}\n\n`);
      });
      const seen: string[] = [];
      await client.stream("/chat/completions", { hello: "world" }, undefined, (data) => {
        seen.push(data);
        if (seen.length === 2) release();
      });
      expect(seen).toEqual(['{"n":1,"body":"{\\"hello\\":\\"world\\"}"}', '{"n":2}', '{"n":3}']);
    });

    it("is done at [DONE] even if the server keeps its response open", async () => {
      const lingering = await upstream((_request, response) => {
        response.writeHead(200, { "content-type": "text/event-stream" });
        response.write(events('{"n":1}', "[DONE]"));
      });
      const seen: string[] = [];
      const started = performance.now();
      await lingering.stream("/chat/completions", {}, undefined, (data) => seen.push(data));
      expect(seen).toEqual(['{"n":1}']);
      expect(performance.now() - started).toBeLessThan(2_000);
    });

    it("fails as the answer does: an error status, no [DONE], too large, an event its reader refuses, a cancellation", async () => {
      const limited = await upstream((_request, response) => {
        response.writeHead(429, { "retry-after": "3" });
        response.end('{"error":{"message":"slow down"}}');
      });
      const refused = await failure(limited.stream("/chat/completions", {}, undefined, () => undefined));
      expect([refused.kind, refused.retryAfterMs, /slow down/.test(refused.message)]).toEqual([
        "rate-limited",
        3_000,
        true,
      ]);

      const cut = await upstream((_request, response) => response.end(events('{"n":1}')));
      expect((await failure(cut.stream("/chat/completions", {}, undefined, () => undefined))).kind).toBe(
        "truncated-stream",
      );

      const huge = await upstream((_request, response) => sendMany(response, events(`"${"x".repeat(1 << 20)}"`), 20));
      expect((await failure(huge.stream("/chat/completions", {}, undefined, () => undefined))).message).toMatch(
        /larger than 16777216 bytes/,
      );

      const garbage = await upstream((_request, response) => {
        response.write(events("<html>oops</html>"));
        setTimeout(() => response.end(events("[DONE]")), 1_000);
      });
      const bad = new ModelError("upstream test", "bad-response", "not JSON");
      const started = performance.now();
      expect(
        await failure(
          garbage.stream("/chat/completions", {}, undefined, () => {
            throw bad;
          }),
        ),
      ).toBe(bad);
      // Stopped there, not read to its end.
      expect(performance.now() - started).toBeLessThan(900);

      const endless = await upstream((_request, response) => response.write(events('{"n":1}')));
      const controller = new AbortController();
      const stopped = await failure(
        endless.stream("/chat/completions", {}, controller.signal, () =>
          controller.abort(new Error("the client disconnected")),
        ),
      );
      expect(stopped.kind).toBe("aborted");
    });
  });
});
