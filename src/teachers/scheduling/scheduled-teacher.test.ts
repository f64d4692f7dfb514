import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { HttpTeacher } from "../http/http-teacher.ts";
import { ModelError } from "../../core/model-error.ts";
import { ScheduledTeacher, type SchedulerOptions } from "./scheduled-teacher.ts";

/**
 * A rate-limiting upstream (the protocol edge: 429 / 503 with Retry-After, as
 * vLLM behind a gateway or a hosted API answers). Otherwise a valid chat
 * completion in the OpenAI format, with usage.
 */
interface Upstream {
  url: string;
  server: Server;
  arrivals: number[];
  maxInFlight: number;
}

let servers: Server[] = [];
afterEach(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  servers = [];
});

type Decide = (
  index: number,
  request: IncomingMessage,
) => { status: number; headers?: Record<string, string>; delayMs?: number; tokens?: number } | "stream-then-break";

async function upstream(decide: Decide = () => ({ status: 200 })): Promise<Upstream> {
  const state: Upstream = { url: "", server: undefined as unknown as Server, arrivals: [], maxInFlight: 0 };
  let inFlight = 0;
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    request.resume();
    request.on("end", () => {
      const index = state.arrivals.push(performance.now()) - 1;
      inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, inFlight);
      response.on("close", () => inFlight--);
      const decision = decide(index, request);
      if (decision === "stream-then-break") {
        response.writeHead(200, { "content-type": "text/event-stream" });
        response.write(
          `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: "partial" }, finish_reason: null }] })}\n\n`,
        );
        setTimeout(() => response.destroy(), 10);
        return;
      }
      setTimeout(() => {
        if (decision.status !== 200) {
          response
            .writeHead(decision.status, { "content-type": "application/json", ...decision.headers })
            .end(JSON.stringify({ error: { message: `status ${decision.status}`, code: decision.status } }));
          return;
        }
        const tokens = decision.tokens ?? 10;
        response.writeHead(200, { "content-type": "application/json" }).end(
          JSON.stringify({
            id: `c${index}`,
            object: "chat.completion",
            model: "m",
            choices: [{ index: 0, message: { role: "assistant", content: `answer ${index}` }, finish_reason: "stop" }],
            usage: { prompt_tokens: tokens, completion_tokens: tokens, total_tokens: 2 * tokens },
          }),
        );
      }, decision.delayMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push(server);
  state.server = server;
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return state;
}

function scheduled(url: string, options: SchedulerOptions): ScheduledTeacher {
  return new ScheduledTeacher(
    new HttpTeacher({ name: "upstream", family: "qwen", engine: "vllm", baseUrl: url, model: "m" }),
    options,
  );
}

const ask = (i: number, signal?: AbortSignal) => ({
  messages: [{ role: "user" as const, content: `question ${i}` }],
  maxTokens: 8,
  signal,
});

describe("ScheduledTeacher", () => {
  it("holds the configured RPM within 5% against an upstream answering 429 + Retry-After, and loses no request", async () => {
    const rpm = 1200;
    const rejected = new Map<number, number>();
    // Every 12th arrival is refused with Retry-After: 1 (seconds).
    const server = await upstream((index) =>
      index % 12 === 11 ? { status: 429, headers: { "retry-after": "1" } } : { status: 200 },
    );
    const teacher = scheduled(server.url, {
      limits: { rpm, concurrency: 8, retries: 5, adaptive: false, backoffMs: 10 },
    });
    const results = await Promise.all(Array.from({ length: 48 }, (_, i) => teacher.generate(ask(i))));
    expect(results).toHaveLength(48);
    expect(new Set(results.map((r) => r.content)).size).toBe(48);
    const arrivals = server.arrivals;
    arrivals.forEach((time, index) => index % 12 === 11 && rejected.set(index, time));
    expect(arrivals.length).toBe(48 + rejected.size);
    // The request rate at the upstream, retries included, over every window of 40 arrivals (2 s at 1200 RPM).
    let worst = 0;
    for (let i = 0; i + 40 < arrivals.length; i++)
      worst = Math.max(worst, (40 / (arrivals[i + 40]! - arrivals[i]!)) * 60_000);
    const overall = ((arrivals.length - 1) / (arrivals.at(-1)! - arrivals[0]!)) * 60_000;
    process.stderr.write(
      `RPM limiter: configured ${rpm}, overall ${overall.toFixed(0)}, worst 40-request window ${worst.toFixed(0)}, 429s ${rejected.size}\n`,
    );
    expect(worst).toBeLessThanOrEqual(rpm * 1.05);
    expect(teacher.stats()).toMatchObject({ requests: 48, rateLimited: rejected.size, retries: rejected.size });
    // Nothing was sent during a Retry-After pause: past the requests already in flight when the 429 went out
    // (they arrive within milliseconds; 200 ms allows for a loaded machine), no arrival until 1 s after it.
    // Without the pause, 1200 RPM would put about 16 arrivals in that window.
    for (const time of rejected.values()) {
      const during = arrivals.filter((t) => t > time + 200 && t < time + 990);
      expect(during).toEqual([]);
    }
  }, 30_000);

  it("paces requests at the RPM when the upstream never refuses (within 5%)", async () => {
    const rpm = 1200;
    const server = await upstream();
    const teacher = scheduled(server.url, { limits: { rpm, concurrency: 16 } });
    await Promise.all(Array.from({ length: 81 }, (_, i) => teacher.generate(ask(i))));
    const rate = (80 / (server.arrivals.at(-1)! - server.arrivals[0]!)) * 60_000;
    process.stderr.write(`RPM limiter without refusals: configured ${rpm}, measured ${rate.toFixed(0)}\n`);
    expect(rate).toBeLessThanOrEqual(rpm * 1.05);
    expect(rate).toBeGreaterThanOrEqual(rpm * 0.95);
  }, 30_000);

  it("holds TPM: prompt tokens estimated up front, corrected by the reported usage", async () => {
    const tpm = 12_000; // 200 tokens/s; every call reports 50 tokens.
    const server = await upstream(() => ({ status: 200, tokens: 25 }));
    const teacher = scheduled(server.url, { limits: { tpm, concurrency: 8 } });
    await Promise.all(Array.from({ length: 25 }, (_, i) => teacher.generate(ask(i))));
    const tokensPerMinute = ((24 * 50) / (server.arrivals.at(-1)! - server.arrivals[0]!)) * 60_000;
    expect(tokensPerMinute).toBeLessThanOrEqual(tpm * 1.1);
  }, 30_000);

  it("never has more than `concurrency` requests in flight", async () => {
    const server = await upstream(() => ({ status: 200, delayMs: 30 }));
    const teacher = scheduled(server.url, { limits: { concurrency: 3 } });
    await Promise.all(Array.from({ length: 12 }, (_, i) => teacher.generate(ask(i))));
    expect(server.maxInFlight).toBe(3);
  });

  it("halves concurrency on overload and grows it back on success (AIMD)", async () => {
    const server = await upstream((index) => (index < 2 ? { status: 503 } : { status: 200, delayMs: 5 }));
    const teacher = scheduled(server.url, { limits: { concurrency: 8, retries: 3, backoffMs: 1 }, random: () => 0 });
    await teacher.generate(ask(0));
    expect(teacher.stats().concurrencyLimit).toBe(2);
    await Promise.all(Array.from({ length: 40 }, (_, i) => teacher.generate(ask(i))));
    expect(teacher.stats().concurrencyLimit).toBe(8);
  });

  it("retries transient failures with backoff, never client errors, and stops after `retries`", async () => {
    const flaky = await upstream((index) => (index < 2 ? { status: 502 } : { status: 200 }));
    const teacher = scheduled(flaky.url, { limits: { retries: 2, backoffMs: 5 } });
    expect((await teacher.generate(ask(0))).content).toBe("answer 2");
    expect(flaky.arrivals.length).toBe(3);

    const bad = await upstream(() => ({ status: 400 }));
    await expect(scheduled(bad.url, { limits: { retries: 5, backoffMs: 1 } }).generate(ask(0))).rejects.toMatchObject({
      kind: "bad-request",
    });
    expect(bad.arrivals.length).toBe(1);

    const down = await upstream(() => ({ status: 500 }));
    await expect(scheduled(down.url, { limits: { retries: 2, backoffMs: 1 } }).generate(ask(0))).rejects.toMatchObject({
      kind: "server",
    });
    expect(down.arrivals.length).toBe(3);
  });

  it("opens the circuit after consecutive failures, then lets one trial through after the cooldown", async () => {
    let healthy = false;
    const server = await upstream(() => (healthy ? { status: 200 } : { status: 500 }));
    const teacher = scheduled(server.url, { limits: { retries: 0, breakerFailures: 3, breakerCooldownMs: 150 } });
    for (let i = 0; i < 3; i++) await expect(teacher.generate(ask(i))).rejects.toMatchObject({ kind: "server" });
    await expect(teacher.generate(ask(3))).rejects.toMatchObject({ kind: "circuit-open" });
    expect(server.arrivals.length).toBe(3);
    expect(teacher.stats().circuit).toBe("open");
    await new Promise((resolve) => setTimeout(resolve, 170));
    healthy = true;
    expect((await teacher.generate(ask(4))).content).toMatch(/answer/);
    expect(teacher.stats().circuit).toBe("closed");
  });

  it("cancels a request waiting for a slot without sending it", async () => {
    const server = await upstream(() => ({ status: 200, delayMs: 100 }));
    const teacher = scheduled(server.url, { limits: { concurrency: 1 } });
    const first = teacher.generate(ask(0));
    const controller = new AbortController();
    const second = teacher.generate(ask(1, controller.signal));
    setTimeout(() => controller.abort(), 10);
    await expect(second).rejects.toSatisfy((error) => error instanceof ModelError && error.kind === "aborted");
    await first;
    expect(server.arrivals.length).toBe(1);
  });

  it("does not retry a stream once output reached the caller", async () => {
    const server = await upstream(() => "stream-then-break");
    const teacher = scheduled(server.url, { limits: { retries: 3, backoffMs: 1 } });
    const events: string[] = [];
    const reading = (async () => {
      for await (const event of teacher.stream(ask(0))) events.push(event.type);
    })();
    await expect(reading).rejects.toMatchObject({ kind: "truncated-stream" });
    expect(events).toEqual(["content"]);
    expect(server.arrivals.length).toBe(1);
  });

  it("times out each attempt and retries it", async () => {
    const server = await upstream((index) => (index === 0 ? { status: 200, delayMs: 2_000 } : { status: 200 }));
    const teacher = scheduled(server.url, { limits: { timeoutMs: 200, retries: 1, backoffMs: 1 } });
    expect((await teacher.generate(ask(0))).content).toBe("answer 1");
    expect(teacher.stats().retries).toBe(1);
  });
});
