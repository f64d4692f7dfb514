import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENDLESS_QWEN_PROMPT, teacherGguf } from "../../test/fixtures.ts";
import { OpenAiCompatibleTestServer } from "../../test/openai-compatible-server.ts";
import { freshStore } from "../../test/stores.ts";
import { serveSchema } from "../core/config/serve-schema.ts";
import { EmbeddedEngine } from "../engine/embedded-engine.ts";
import { referenceTokenizer } from "../tokenizers/index.ts";
import { startApi, type RunningApi } from "./server.ts";

/**
 * Three completion events as one, as a server under load sends several tokens per event; the usage is the last one's.
 */
function merged(events: string[]): string {
  const parsed = events.map(
    (event) => JSON.parse(event.slice("data: ".length)) as { choices: { text: string }[]; usage?: unknown },
  );
  const last = parsed.at(-1)!;
  last.choices[0]!.text = parsed.map((event) => event.choices[0]?.text ?? "").join("");
  return `data: ${JSON.stringify(last)}\n\n`;
}

/**
 * An upstream that dies mid-stream: it relays a real server's completion
 * stream three tokens per event and closes the connection after `events`
 * events (what a crashed or restarted vLLM does to a stream). Everything
 * else it relays untouched.
 */
async function cuttingProxy(target: string, events: number): Promise<Server> {
  const server = createServer((request, response) => {
    const upstream = httpRequest(
      new URL(request.url!, target),
      { method: request.method, headers: request.headers },
      (answer) => {
        response.writeHead(answer.statusCode!, answer.headers);
        if (!String(answer.headers["content-type"]).includes("event-stream")) return void answer.pipe(response);
        let seen = 0;
        let buffer = "";
        let held: string[] = [];
        answer.on("data", (data: Buffer) => {
          buffer += data.toString();
          for (let end = buffer.indexOf("\n\n"); end >= 0 && seen < events; end = buffer.indexOf("\n\n")) {
            held.push(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (held.length < 3) continue;
            response.write(merged(held));
            held = [];
            if (++seen === events) {
              answer.destroy();
              response.socket?.destroySoon();
            }
          }
        });
        answer.on("end", () => response.end());
      },
    );
    request.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

type Delta = { text?: string; delta?: { content?: string; reasoning_content?: string } };

/**
 * The text of a stream as the client received it (a completion's, or a chat's reasoning and content), up to its
 * end or its error event; with `stopAfter`, the client leaves after that many events.
 */
async function streamedText(
  api: RunningApi,
  key: string,
  model: string,
  maxTokens: number,
  stopAfter?: number,
  chat?: string,
): Promise<string> {
  const abort = new AbortController();
  const request = chat ? { messages: [{ role: "user", content: chat }] } : { prompt: ENDLESS_QWEN_PROMPT };
  const response = await fetch(`${api.url}/v1/${chat ? "chat/completions" : "completions"}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model, ...request, max_tokens: maxTokens, temperature: 0, stream: true }),
    signal: abort.signal,
  });
  let text = "";
  let events = 0;
  let buffer = "";
  const decoder = new TextDecoder();
  try {
    for await (const data of response.body!) {
      buffer += decoder.decode(data, { stream: true });
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const event = buffer.slice(6, end);
        buffer = buffer.slice(end + 2);
        if (event === "[DONE]") return text;
        const choice = (JSON.parse(event) as { choices?: Delta[] }).choices?.[0];
        const part = (choice?.text ?? "") + (choice?.delta?.reasoning_content ?? "") + (choice?.delta?.content ?? "");
        if (part === "") continue;
        text += part;
        if (stopAfter !== undefined && ++events >= stopAfter) {
          abort.abort();
          return text;
        }
      }
    }
  } catch (error) {
    if (!abort.signal.aborted) throw error;
  }
  return text;
}

describe("a cut stream is charged the tokens it generated, counted by the model's tokenizer", () => {
  const qwen = referenceTokenizer("qwen");
  let upstream: OpenAiCompatibleTestServer;
  let proxy: Server;
  let api: RunningApi;
  let key: string;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    upstream = await new OpenAiCompatibleTestServer(
      await EmbeddedEngine.load(teacherGguf("tiny-qwen"), { sequences: 1 }),
      { model: "tiny-qwen" },
    ).start();
    proxy = await cuttingProxy(upstream.baseUrl.replace(/\/v1$/, ""), 4);
    const cut = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/v1`;
    const fresh = await freshStore("sqlite", "metering");
    drop = fresh.drop;
    await fresh.store.close();
    const price = { inputPerMillion: 1_000_000, outputPerMillion: 1_000_000 };
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      models: [
        { name: "local", gguf: teacherGguf("tiny-qwen"), price, maxTokens: 64 },
        {
          name: "cut-continuous",
          upstreams: [cut],
          upstreamModel: "tiny-qwen",
          streamUsage: "continuous",
          price,
          maxTokens: 64,
        },
        {
          name: "cut-tokenizer",
          upstreams: [cut],
          upstreamModel: "tiny-qwen",
          tokenizer: "qwen",
          price,
          maxTokens: 64,
        },
      ],
    });
    api = await startApi({ config, workspace: "/nonexistent" });
    ({ key } = await api.store.createKey({ org: "meter", name: "k" }));
    await api.store.grant("meter", 100_000_000, "meter");
  });
  afterAll(async () => {
    await api?.close();
    proxy?.close();
    await upstream?.stop().catch(() => undefined);
    await upstream?.engine.dispose();
    await drop?.();
  });

  const rows = () =>
    api.store.db
      .selectFrom("requests")
      .select(["model", "outcome", "completion_tokens"])
      .orderBy("created_at")
      .execute();
  /** The requests settled after the first `before`, once there are `count` of them. */
  const settledAfter = async (before: number, count: number) => {
    for (const stop = Date.now() + 10_000; (await rows()).length < before + count;) {
      if (Date.now() > stop) throw new Error(`fewer than ${count} requests settled`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return (await rows()).slice(before);
  };

  it("on a local GGUF: the client leaves mid-stream; the charge is the tokens of exactly the text generated", async () => {
    const before = (await rows()).length;
    const received = await streamedText(api, key, "local", 48, 6);
    const [row] = await settledAfter(before, 1);
    expect(row).toMatchObject({ model: "local", outcome: "cancelled" });
    const charged = row!.completion_tokens;
    // What was generated, token for token: the same greedy continuation, cut at the charged length.
    const client = new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
    const generated = await client.completions.create({
      model: "local",
      prompt: ENDLESS_QWEN_PROMPT,
      max_tokens: charged,
      temperature: 0,
    });
    expect(generated.usage?.completion_tokens).toBe(charged);
    expect(generated.choices[0]!.text.startsWith(received)).toBe(true);
    expect(qwen.encodeText(generated.choices[0]!.text)).toHaveLength(charged);
    // Six events were read, every token of them charged; at most the one in flight when the cancellation landed beyond.
    expect(charged - qwen.encodeText(received).length).toBeGreaterThanOrEqual(0);
    expect(charged - qwen.encodeText(received).length).toBeLessThanOrEqual(2);
    expect((await api.store.audit()).problems).toEqual([]);
  });

  it("on a local GGUF, a chat: every token sampled is charged, the markup its chat format hides included", async () => {
    const before = (await rows()).length;
    const question = "Reverse the word 'abcdefghij'.";
    const received = await streamedText(api, key, "local", 48, 6, question);
    const [row] = await settledAfter(before, 1);
    expect(row).toMatchObject({ model: "local", outcome: "cancelled" });
    // Greedy again, streamed and cut at the charged length: what the cut stream generated, as text.
    const again = await streamedText(api, key, "local", row!.completion_tokens, undefined, question);
    expect(again.startsWith(received)).toBe(true);
    // The model opens its reasoning with "<think>" and "\n", two tokens no delta shows; every other token is text.
    expect(row!.completion_tokens).toBe(2 + qwen.encodeText(again).length);
    // The client read six deltas: all of them, and what came before them, are charged.
    expect(row!.completion_tokens).toBeGreaterThanOrEqual(2 + qwen.encodeText(received).length);
  });

  it("through an upstream that dies mid-stream: charged its own running usage, or the tokenizer's count of the text", async () => {
    const before = (await rows()).length;
    const continuous = await streamedText(api, key, "cut-continuous", 48);
    const counted = await streamedText(api, key, "cut-tokenizer", 48);
    const cut = await settledAfter(before, 2);
    expect(cut.map((row) => [row.model, row.outcome])).toEqual([
      ["cut-continuous", "error"],
      ["cut-tokenizer", "error"],
    ]);
    // The proxy let 4 events of 3 tokens through; both models saw the same greedy continuation.
    expect(continuous).toBe(counted);
    expect(qwen.encodeText(continuous)).toHaveLength(12);
    expect(cut[0]!.completion_tokens).toBe(qwen.encodeText(continuous).length);
    expect(cut[1]!.completion_tokens).toBe(qwen.encodeText(counted).length);
    expect((await api.store.audit()).problems).toEqual([]);
  });
});
