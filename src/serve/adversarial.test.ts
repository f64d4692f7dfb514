import { TOKENIZER_FAMILIES } from "../core/family.ts";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { request as httpRequest } from "node:http";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENDLESS_QWEN_PROMPT, failureOf, teacherGguf } from "../../test/fixtures.ts";
import { CONTROL_MARKUP, plainTextTokens } from "../../test/plain-text.ts";
import { EmbeddedEngine } from "../engine/embedded-engine.ts";
import { costOf } from "./models/served-model.ts";

/**
 * What a hostile customer tried against the paid API, each kept as a case that
 * must go on failing for them. Reproductions run a served tiny world with keys
 * of little or no credit.
 */
import { ADMIN, client, post, PRICE, serve, slowModel, type Served } from "../../test/served-api.ts";

/** Four clients without credit sending 1 MB prompts as fast as they are refused; each refusal's status on a line. */
const ATTACKERS = `
const [url, key] = process.argv.slice(1);
const body = JSON.stringify({ model: "tiny-gptoss", prompt: "The quick brown fox jumps over 12 lazy dogs. ".repeat(22_222), max_tokens: 1 });
console.log("started");
for (let i = 0; i < 4; i++) (async () => {
  for (;;) {
    // The server may refuse and close before the megabyte is written (EPIPE): that is a refusal too, and no reason to stop.
    try {
      const response = await fetch(url + "/v1/completions", { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer " + key }, body });
      await response.text();
      console.log(response.status);
    } catch {
      console.log("closed");
    }
  }
})();
`;

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

describe("the paid API under attack", () => {
  let served: Served;
  let rich: string;
  let broke: string;
  let poor: string;

  beforeAll(async () => {
    served = await serve();
    rich = (await served.api.store.createKey({ org: "rich", name: "rich" })).key;
    await served.api.store.grant("rich", 100_000_000, "rich");
    broke = (await served.api.store.createKey({ org: "broke", name: "broke" })).key;
    poor = (await served.api.store.createKey({ org: "poor", name: "poor" })).key;
    await served.api.store.grant("poor", 50, "a little");
  });
  afterAll(async () => served?.close());

  it("reads control markup in every message field as text, on every family: the prompt costs what its characters cost as text", async () => {
    const engines = new Map(
      await Promise.all(
        TOKENIZER_FAMILIES.map(
          async (family) => [family, await EmbeddedEngine.load(teacherGguf(`tiny-${family}`))] as const,
        ),
      ),
    );
    try {
      for (const family of TOKENIZER_FAMILIES) {
        const engine = engines.get(family)!;
        const benign = "[a b]";
        // Short enough for every role on a 128-token context.
        const hostile = `[${CONTROL_MARKUP.slice(0, 90)}]`;
        const asText = plainTextTokens(engine, hostile) - plainTextTokens(engine, benign);
        const roles = ["user", "system", "assistant", ...(family === "gptoss" ? ["developer"] : [])] as const;
        for (const role of roles) {
          const conversation = (content: string) =>
            role === "user"
              ? [{ role, content }]
              : role === "assistant"
                ? [
                    { role: "user" as const, content: "[hi]" },
                    { role, content },
                    { role: "user" as const, content: "[go on]" },
                  ]
                : [
                    { role, content },
                    { role: "user" as const, content: "[hi]" },
                  ];
          const usage = async (content: string) =>
            (
              await client(served.api, rich).chat.completions.create({
                model: `tiny-${family}`,
                messages: conversation(content) as OpenAI.ChatCompletionMessageParam[],
                max_tokens: 1,
              })
            ).usage!.prompt_tokens;
          expect({ family, role, tokens: (await usage(hostile)) - (await usage(benign)) }).toEqual({
            family,
            role,
            tokens: asText,
          });
        }
      }
    } finally {
      for (const engine of engines.values()) await engine.dispose();
    }
  });

  it("answers /health and another customer at idle speed while 4 keys without credit send 1 MB prompts", async () => {
    const other = client(served.api, rich);
    const probe = async () => {
      const health = performance.now();
      await fetch(`${served.api.url}/health`);
      const healthMs = performance.now() - health;
      const answer = performance.now();
      await other.completions.create({ model: "tiny-qwen", prompt: "hi", max_tokens: 1 });
      return { healthMs, answerMs: performance.now() - answer };
    };
    const idle: { healthMs: number; answerMs: number }[] = [];
    for (let i = 0; i < 5; i++) idle.push(await probe());
    // The attackers are another process: in this one, writing their megabytes would slow the probes by itself.
    const attackers = spawn(process.execPath, ["--input-type=module", "-e", ATTACKERS, served.api.url, broke], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    attackers.stdout.on("data", (data: Buffer) => (output += data.toString()));
    while (!output.includes("started")) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const loaded: { healthMs: number; answerMs: number }[] = [];
    for (let i = 0; i < 5; i++) loaded.push(await probe());
    // An attacker that has already exited emits no "exit" again: waiting for it would hang the test.
    const exited =
      attackers.exitCode !== null || attackers.signalCode !== null ? Promise.resolve() : once(attackers, "exit");
    attackers.kill("SIGTERM");
    await exited;
    const refusals = output
      .split("\n")
      .filter((line) => /^\d+$/.test(line))
      .map(Number);
    expect(refusals.length).toBeGreaterThan(4);
    expect(new Set(refusals)).toEqual(new Set([402]));
    console.log(
      `idle /health ${median(idle.map((p) => p.healthMs)).toFixed(1)} ms, one-token ${median(idle.map((p) => p.answerMs)).toFixed(1)} ms; under attack ${median(loaded.map((p) => p.healthMs)).toFixed(1)} ms, ${median(loaded.map((p) => p.answerMs)).toFixed(1)} ms (${refusals.length} refusals)`,
    );
    expect(median(loaded.map((p) => p.healthMs))).toBeLessThan(median(idle.map((p) => p.healthMs)) + 50);
    expect(median(loaded.map((p) => p.answerMs))).toBeLessThan(median(idle.map((p) => p.answerMs)) + 50);
  });

  it("refuses a 1 MB message for length with 400 and a clear message, never a stack overflow; validates before it checks credit", async () => {
    const content = "Reverse the word 'kalomi'. ".repeat(38_000);
    for (const key of [rich, poor]) {
      const { status, body } = await post(
        served.api,
        "/v1/chat/completions",
        { model: "tiny-qwen", messages: [{ role: "user", content }] },
        { authorization: `Bearer ${key}` },
      );
      expect(status).toBe(400);
      expect(body.error?.code).toBe("context_length_exceeded");
      expect(body.error?.message).toMatch(/^the prompt is at least \d+ tokens; the model's context is \d+ tokens$/);
    }
    // A key whose org has no credit at all is refused on its headers, before its megabyte is read.
    expect(
      (
        await post(
          served.api,
          "/v1/chat/completions",
          { model: "tiny-qwen", messages: [{ role: "user", content }] },
          { authorization: `Bearer ${broke}` },
        )
      ).status,
    ).toBe(402);
    // Just over the context, found by the tokenizer: 400 too, also for keys whose credit would not cover it.
    const over = "Reverse the word 'kalomi'. ".repeat(60);
    for (const key of [rich, poor, broke]) {
      const { status, body } = await post(
        served.api,
        "/v1/chat/completions",
        { model: "tiny-qwen", messages: [{ role: "user", content: over }] },
        { authorization: `Bearer ${key}` },
      );
      expect({ status, code: body.error?.code }).toEqual({ status: 400, code: "context_length_exceeded" });
      expect(body.error?.message).toMatch(/^the prompt is \d+ tokens; the model's context is 128 tokens$/);
    }
  });

  it("charges an abandoned non-stream request its prompt and the tokens generated before the client left, as a cut stream is", async () => {
    const store = served.api.store;
    const org = (await store.orgByName("rich"))!.id;
    for (const stream of [false, true]) {
      const controller = new AbortController();
      const call = fetch(`${served.api.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${rich}` },
        body: JSON.stringify({ model: "slow-qwen", prompt: ENDLESS_QWEN_PROMPT, max_tokens: 64, stream }),
        signal: controller.signal,
      }).then((response) => response.text());
      // Mid-answer: after its fifth token.
      let tokens = 0;
      await new Promise<void>((resolve) => (slowModel.onToken = () => ++tokens === 5 && resolve()));
      slowModel.onToken = undefined;
      controller.abort();
      await call.catch(() => undefined);
      const cancelled = () =>
        store.db
          .selectFrom("requests")
          .selectAll()
          .where("org_id", "=", org)
          .where("outcome", "=", "cancelled")
          .execute();
      for (let i = 0; i < 150 && (await cancelled()).length < (stream ? 2 : 1); i++)
        await new Promise((resolve) => setTimeout(resolve, 20));
      const rows = await cancelled();
      const row = rows.at(-1)!;
      expect(rows).toHaveLength(stream ? 2 : 1);
      expect(row.prompt_tokens).toBeGreaterThan(0);
      expect(row.completion_tokens).toBeGreaterThan(0);
      expect(row.completion_tokens).toBeLessThan(64);
      expect(row.charged).toBe(costOf(PRICE, row.prompt_tokens, row.completion_tokens));
    }
    expect((await store.audit()).problems).toEqual([]);
  });

  it("logs a stream its client aborted after the first chunk as cancelled", async () => {
    const stream = await client(served.api, rich).completions.create({
      model: "tiny-qwen",
      prompt: ENDLESS_QWEN_PROMPT,
      max_tokens: 64,
      stream: true,
    });
    for await (const _chunk of stream) break;
    for (
      let i = 0;
      i < 100 &&
      !served.events.some(
        (e) => e.event === "api.request" && e.fields.stream === true && e.fields.outcome === "cancelled",
      );
      i++
    )
      await new Promise((resolve) => setTimeout(resolve, 20));
    const logged = served.events.filter((e) => e.event === "api.request" && e.fields.stream === true).at(-1)!;
    expect(logged.fields.outcome).toBe("cancelled");
    expect(logged.fields.completionTokens).toBeGreaterThan(0);
  });

  it("refuses two Authorization headers (400), whichever comes first", async () => {
    for (const order of [
      [rich, broke],
      [broke, rich],
    ]) {
      const status = await new Promise<number>((resolve, reject) => {
        const request = httpRequest(`${served.api.url}/v1/models`, {
          method: "GET",
          headers: [
            ["authorization", `Bearer ${order[0]}`],
            ["Authorization", `Bearer ${order[1]}`],
          ].flat() as unknown as Record<string, string>,
        });
        request.on("response", (response) => {
          response.resume();
          resolve(response.statusCode!);
        });
        request.on("error", reject);
        request.end();
      });
      expect(status).toBe(400);
    }
  });

  it("refuses a key that is already expired when it is created", async () => {
    const { status, body } = await post(
      served.api,
      "/admin/keys",
      { org: "rich", name: "late", expiresAt: Date.now() - 1_000 },
      { authorization: `Bearer ${ADMIN}` },
    );
    expect(status).toBe(400);
    expect(body.error?.message).toMatch(/in the past/);
  });

  it("names the field it refuses: max_completion_tokens against max_tokens, or too large", async () => {
    const conflicting = await post(
      served.api,
      "/v1/chat/completions",
      { model: "tiny-qwen", messages: [{ role: "user", content: "hi" }], max_completion_tokens: 300, max_tokens: 1 },
      { authorization: `Bearer ${rich}` },
    );
    expect({ status: conflicting.status, code: conflicting.body.error?.code }).toEqual({
      status: 400,
      code: "conflicting_parameters",
    });
    const large = await post(
      served.api,
      "/v1/chat/completions",
      { model: "tiny-qwen", messages: [{ role: "user", content: "hi" }], max_completion_tokens: 300 },
      { authorization: `Bearer ${rich}` },
    );
    expect({ status: large.status, param: large.body.error?.param }).toEqual({
      status: 400,
      param: "max_completion_tokens",
    });
    expect(large.body.error?.message).toMatch(/^max_completion_tokens is 300/);
  });

  it("refuses a response_format whose JSON schema is not a JSON Schema (422)", async () => {
    for (const schema of [
      { type: "banana" },
      { type: "object", properties: { a: { type: 7 } } },
      { type: "object", required: "a" },
    ]) {
      const failure = await failureOf(
        client(served.api, rich).chat.completions.create({
          model: "tiny-qwen",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 4,
          response_format: { type: "json_schema", json_schema: { name: "x", schema } },
        }),
      );
      expect({ status: failure?.status, code: failure?.code }).toEqual({
        status: 422,
        code: "invalid_response_format",
      });
    }
  });
});
