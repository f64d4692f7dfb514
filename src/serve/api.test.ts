import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENDLESS_QWEN_PROMPT, teacherGguf } from "../../test/fixtures.ts";
import { isJsonPrefix } from "../../test/json-prefix.ts";
import { apiUnderTest, PRICE } from "../../test/api-fixture.ts";
import { freshStore } from "../../test/stores.ts";
import { serveSchema } from "../core/config/serve-schema.ts";
import { EmbeddedServedModel } from "./models/embedded-model.ts";
import { costOf, type ServedModel } from "./models/served-model.ts";
import { startApi } from "./server.ts";
import type { Store } from "./store/store.ts";

/** The paid API conformance suite, on each store, with the official openai client unmodified. */
for (const kind of ["sqlite", "postgres"] as const) {
  describe(`avocado serve on ${kind}, through the openai client`, () => {
    let store: Store;
    let client: OpenAI;
    let close: (() => Promise<void>) | undefined;
    beforeAll(async () => ({ store, client, close } = await apiUnderTest(kind)));
    afterAll(async () => close?.());

    it("answers a chat completion with usage, and charges exactly its metered cost", async () => {
      const org = (await store.orgByName("acme"))!.id;
      const before = await store.balance(org);
      const { data: completion, response } = await client.chat.completions
        .create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "What is 25*12?" }],
          max_tokens: 64,
          temperature: 0,
        })
        .withResponse();
      expect(response.headers.get("x-request-id")).toMatch(/^req_/);
      const message = completion.choices[0]!.message as { content: string | null; reasoning_content?: string };
      expect(`${message.reasoning_content ?? ""}${message.content ?? ""}`.length).toBeGreaterThan(0);
      expect(completion.usage!.prompt_tokens).toBeGreaterThan(0);
      const after = await store.balance(org);
      expect(after.held).toBe(0);
      expect(before.available - after.available).toBe(
        costOf(PRICE, completion.usage!.prompt_tokens, completion.usage!.completion_tokens),
      );
      // A client's own request id is never taken: each request gets one minted here (the ledger reserves each id once),
      // and is charged.
      const first = response.headers.get("x-request-id")!;
      const { data: again, response: replayed } = await client.chat.completions
        .create(
          { model: "avocado-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 2 },
          { headers: { "request-id": first, "x-request-id": first } },
        )
        .withResponse();
      expect(replayed.headers.get("x-request-id")).toMatch(/^req_/);
      expect(replayed.headers.get("x-request-id")).not.toBe(first);
      expect(after.available - (await store.balance(org)).available).toBe(
        costOf(PRICE, again.usage!.prompt_tokens, again.usage!.completion_tokens),
      );
    });

    it("streams with include_usage, the same answer as non-stream", async () => {
      const request = {
        model: "avocado-tiny",
        messages: [{ role: "user" as const, content: "Reverse the word 'fosa'." }],
        max_tokens: 48,
        temperature: 0,
      };
      const whole = await client.chat.completions.create(request);
      const stream = await client.chat.completions.create({
        ...request,
        stream: true,
        stream_options: { include_usage: true },
      });
      let content = "";
      let usage: OpenAI.CompletionUsage | undefined;
      let finish: string | null | undefined;
      for await (const chunk of stream) {
        content += chunk.choices[0]?.delta.content ?? "";
        finish = chunk.choices[0]?.finish_reason ?? finish;
        usage = chunk.usage ?? usage;
      }
      expect(content.trim()).toBe(whole.choices[0]!.message.content!.trim());
      expect(finish).toBe(whole.choices[0]!.finish_reason);
      expect(usage).toEqual(whole.usage);
    });

    it("streams n choices at once, each under its index with its own finish, and charges their summed usage", async () => {
      const org = (await store.orgByName("acme"))!.id;
      const request = {
        model: "avocado-tiny",
        messages: [{ role: "user" as const, content: "Reverse the word 'fosa'." }],
        max_tokens: 24,
        temperature: 0,
      };
      const whole = await client.chat.completions.create({ ...request, n: 2 });
      const before = await store.balance(org);
      expect(whole.choices.map((c) => c.index)).toEqual([0, 1]);
      const stream = await client.chat.completions.create({
        ...request,
        n: 2,
        stream: true,
        stream_options: { include_usage: true },
      });
      const content = ["", ""];
      const finish: (string | null)[] = [null, null];
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of stream) {
        for (const choice of chunk.choices) {
          content[choice.index] += choice.delta.content ?? "";
          finish[choice.index] = choice.finish_reason ?? finish[choice.index]!;
        }
        usage = chunk.usage ?? usage;
      }
      // Greedy decoding: both choices are the one answer, as in the whole response.
      expect(content.map((c) => c.trim())).toEqual(whole.choices.map((c) => c.message.content!.trim()));
      expect(finish).toEqual(whole.choices.map((c) => c.finish_reason));
      expect(usage).toEqual(whole.usage);
      const after = await store.balance(org);
      expect(after.held).toBe(0);
      expect(before.available - after.available).toBe(costOf(PRICE, usage!.prompt_tokens, usage!.completion_tokens));
    });

    it("constrains the answer to JSON with response_format json_object", async () => {
      const answer = await client.chat.completions.create({
        model: "avocado-tiny",
        messages: [{ role: "user", content: "What is 25*12?" }],
        max_tokens: 64,
        temperature: 0,
        response_format: { type: "json_object" },
      });
      const content = answer.choices[0]!.message.content!;
      expect(content.trimStart()).toMatch(/^[{[]/);
      // Cut at max_tokens or not, what was written is JSON so far; whole when it stopped.
      expect(isJsonPrefix(content)).toBe(true);
      if (answer.choices[0]!.finish_reason === "stop") expect(() => JSON.parse(content) as unknown).not.toThrow();
      // A schema whose every answer is short makes it stop: then the JSON is whole, always.
      const schema = {
        type: "object",
        properties: { unit: { enum: ["g", "kg"] } },
        required: ["unit"],
        additionalProperties: false,
      };
      const bounded = await client.chat.completions.create({
        model: "avocado-tiny",
        messages: [{ role: "user", content: "What is 25*12?" }],
        max_tokens: 64,
        temperature: 0,
        response_format: { type: "json_schema", json_schema: { name: "unit", schema, strict: true } },
      });
      expect(bounded.choices[0]!.finish_reason).toBe("stop");
      expect(["g", "kg"]).toContain((JSON.parse(bounded.choices[0]!.message.content!) as { unit: string }).unit);
    });

    it("follows a JSON schema with response_format json_schema (structured outputs), and refuses one its grammar cannot enforce", async () => {
      const schema = {
        type: "object",
        properties: { answer: { type: "integer" }, unit: { type: "string", enum: ["g", "kg"] } },
        required: ["answer", "unit"],
        additionalProperties: false,
      };
      const answer = await client.chat.completions.create({
        model: "avocado-tiny",
        messages: [{ role: "user", content: "Convert 2 kg to g." }],
        max_tokens: 48,
        temperature: 0,
        response_format: { type: "json_schema", json_schema: { name: "conversion", schema, strict: true } },
      });
      const content = answer.choices[0]!.message.content!;
      // The grammar writes the required properties in order: whatever the tiny model does, the answer starts so.
      expect(content.trimStart()).toMatch(/^\{\s*"answer"\s*:\s*-?\d/);
      let parsed: unknown;
      try {
        parsed = JSON.parse(content);
      } catch {
        expect(answer.choices[0]!.finish_reason).toBe("length");
      }
      if (parsed !== undefined) {
        expect(Object.keys(parsed as object)).toEqual(["answer", "unit"]);
        expect(Number.isInteger((parsed as { answer: unknown }).answer)).toBe(true);
        expect(["g", "kg"]).toContain((parsed as { unit: unknown }).unit);
      }
      const unenforceable = await client.chat.completions
        .create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "hi" }],
          response_format: {
            type: "json_schema",
            json_schema: {
              name: "code",
              schema: { type: "object", properties: { code: { type: "string", pattern: "^[A-Z]{3}$" } } },
            },
          },
        })
        .catch((e: unknown) => e);
      expect(unenforceable).toBeInstanceOf(OpenAI.UnprocessableEntityError);
      expect((unenforceable as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({
        code: "invalid_response_format",
        param: "response_format",
      });
      expect((unenforceable as Error).message).toMatch(/schema\.properties\.code\.pattern cannot be enforced/);
    });

    it("serves /v1/completions and lists models", async () => {
      const models = await client.models.list();
      expect(models.data.map((m) => m.id)).toEqual(["avocado-tiny"]);
      const completion = await client.completions.create({
        model: "avocado-tiny",
        prompt: "<|im_start|>user\nWhat is 25*12?<|im_end|>\n<|im_start|>assistant\n",
        max_tokens: 8,
        temperature: 0,
      });
      expect(completion.choices[0]!.text.length).toBeGreaterThan(0);
      expect(completion.usage!.completion_tokens).toBeLessThanOrEqual(8);
    });

    it("applies presence and frequency penalties (the engine's own), and refuses what it does not implement (tools, logit_bias) with 422", async () => {
      const loop = ENDLESS_QWEN_PROMPT;
      const plain = await client.completions.create({
        model: "avocado-tiny",
        prompt: loop,
        max_tokens: 32,
        temperature: 0,
      });
      const penalized = await client.completions.create({
        model: "avocado-tiny",
        prompt: loop,
        max_tokens: 32,
        temperature: 0,
        frequency_penalty: 2,
        presence_penalty: 0.5,
      });
      // The tiny model loops on two tokens; penalized, it cannot keep repeating them.
      // Character pairs, distinct over all: a loop ("u g u g", or "ugug" on a world that learned no spaces) has few.
      const distinct = (text: string) => {
        const pairs = Array.from({ length: Math.max(0, text.length - 1) }, (_, i) => text.slice(i, i + 2));
        return new Set(pairs).size / Math.max(1, pairs.length);
      };
      expect(penalized.choices[0]!.text).not.toBe(plain.choices[0]!.text);
      expect(distinct(penalized.choices[0]!.text)).toBeGreaterThan(distinct(plain.choices[0]!.text));
      await expect(
        client.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "hi" }],
          frequency_penalty: 3,
        }),
      ).rejects.toBeInstanceOf(OpenAI.BadRequestError);

      const tools = await client.chat.completions
        .create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "weather?" }],
          tools: [{ type: "function", function: { name: "weather", parameters: { type: "object", properties: {} } } }],
        })
        .catch((e: unknown) => e);
      expect(tools).toBeInstanceOf(OpenAI.UnprocessableEntityError);
      expect((tools as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({
        code: "unsupported_parameter",
        param: "tools",
      });
      const bias = await client.chat.completions
        .create({ model: "avocado-tiny", messages: [{ role: "user", content: "hi" }], logit_bias: { "42": 100 } })
        .catch((e: unknown) => e);
      expect((bias as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({
        code: "unsupported_parameter",
        param: "logit_bias",
      });
      // Values that ask for nothing pass.
      const harmless = await client.chat.completions.create({
        model: "avocado-tiny",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 2,
        tools: [],
        tool_choice: "none",
        logit_bias: {},
        user: "u-1",
      });
      expect(harmless.choices).toHaveLength(1);
      const suffix = await client.completions
        .create({ model: "avocado-tiny", prompt: "1 2 3", suffix: " 9", max_tokens: 2 })
        .catch((e: unknown) => e);
      expect((suffix as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({
        code: "unsupported_parameter",
        param: "suffix",
      });
    });
  });
}

describe("a harmony model (gpt-oss: the chat format forces tokens between the analysis and the final channel)", () => {
  it("never reports or charges more completion tokens than max_tokens, and never more than the hold", async () => {
    const fresh = await freshStore("sqlite", "harmony");
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      models: [{ name: "tiny-gptoss", gguf: teacherGguf("tiny-gptoss"), price: PRICE, maxTokens: 64 }],
    });
    const models = new Map<string, ServedModel>([
      ["tiny-gptoss", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-gptoss"))],
    ]);
    const events: string[] = [];
    const api = await startApi({
      config,
      workspace: "/nonexistent",
      models,
      logger: { log: (_level, event) => void events.push(event), addSecret: () => undefined },
    });
    try {
      const { key } = await api.store.createKey({ org: "harmony", name: "k" });
      await api.store.grant("harmony", 100_000_000, "h");
      const client = new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
      let charged = 0;
      // Budgets around where the model leaves its analysis for its answer (where the format's tokens are forced).
      for (let maxTokens = 8; maxTokens <= 40; maxTokens += 2) {
        const answer = await client.chat.completions.create({
          model: "tiny-gptoss",
          messages: [{ role: "user", content: "Convert 3 km to m." }],
          max_tokens: maxTokens,
          temperature: 0,
        });
        expect(answer.usage!.completion_tokens, `max_tokens ${maxTokens}`).toBeLessThanOrEqual(maxTokens);
        charged += costOf(PRICE, answer.usage!.prompt_tokens, answer.usage!.completion_tokens);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(events).not.toContain("api.cost_above_hold");
      expect((await api.store.usage()).reduce((sum, row) => sum + row.cost, 0)).toBe(charged);
      expect((await api.store.audit()).problems).toEqual([]);
    } finally {
      await api.close();
      await fresh.drop();
    }
  }, 60_000);
});
