import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENDLESS_QWEN_PROMPT, teacherGguf } from "../../test/fixtures.ts";
import { isJsonPrefix } from "../../test/json-prefix.ts";
import { freshStore } from "../../test/stores.ts";
import { serveSchema } from "../core/config/serve-schema.ts";
import { JsonLogger } from "../core/logger.ts";
import { EmbeddedServedModel } from "./models/embedded-model.ts";
import { costOf, type ServedModel } from "./models/served-model.ts";
import { startApi, type RunningApi } from "./server.ts";
import type { Store } from "./store/store.ts";

const PRICE = { inputPerMillion: 2_000_000, outputPerMillion: 8_000_000 };
const ADMIN = "admin-token-for-tests-0123456789";

/** The paid API conformance suite, on each store, with the official openai client unmodified. */
for (const kind of ["sqlite", "postgres"] as const) {
  describe(`avocado serve on ${kind}, through the openai client`, () => {
    let api: RunningApi;
    let store: Store;
    let drop: () => Promise<void>;
    let key: string;
    let client: OpenAI;

    beforeAll(async () => {
      const fresh = await freshStore(kind, "api");
      drop = fresh.drop;
      await fresh.store.close();
      const config = serveSchema.parse({
        port: 0,
        store: fresh.url,
        plans: {
          default: { rpm: 1000, tpm: 1_000_000, concurrency: 8, topLogprobs: 0 },
          research: { topLogprobs: 5 },
          tight: { rpm: 2 },
        },
        models: [{ name: "avocado-tiny", gguf: teacherGguf("tiny-qwen"), price: PRICE, maxTokens: 64, sequences: 2 }],
      });
      const models = new Map<string, ServedModel>([
        ["avocado-tiny", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-qwen"))],
      ]);
      api = await startApi({
        config,
        workspace: "/nonexistent",
        adminToken: ADMIN,
        models,
        logger: new JsonLogger(undefined, "warn"),
      });
      store = api.store;
      key = (await store.createKey({ org: "acme", name: "test" })).key;
      await store.grant("acme", 10_000_000, "start");
      client = new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
    });
    afterAll(async () => {
      await api?.close();
      await drop?.();
    });

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
      const distinct = (text: string) => new Set(text.split(/(?=\s)/)).size / Math.max(1, text.split(/(?=\s)/).length);
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

    it("maps errors to the OpenAI shape and status codes, with x-request-id", async () => {
      const bad = new OpenAI({ apiKey: "avo_not-a-key", baseURL: `${api.url}/v1`, maxRetries: 0 });
      await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
      await expect(
        client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "hi" }] }),
      ).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(
        client.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 10_000,
        }),
      ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
      const logprobs = await client.chat.completions
        .create({ model: "avocado-tiny", messages: [{ role: "user", content: "hi" }], logprobs: true, top_logprobs: 2 })
        .catch((e: unknown) => e);
      expect(logprobs).toBeInstanceOf(OpenAI.PermissionDeniedError);
      expect((logprobs as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({
        type: "permission_error",
        code: "logprobs_not_allowed",
      });
      const big = await fetch(`${api.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "avocado-tiny", messages: [{ role: "user", content: "x".repeat(2_000_000) }] }),
      });
      expect(big.status).toBe(413);
      expect(big.headers.get("x-request-id")).toMatch(/^req_/);
      expect(await big.json()).toMatchObject({ error: { type: "invalid_request_error", code: "body_too_large" } });
      const notJson = await fetch(`${api.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: "{not json",
      });
      expect(notJson.status).toBe(400);
      const unknownRoute = await fetch(`${api.url}/v1/weights`, { headers: { authorization: `Bearer ${key}` } });
      expect(unknownRoute.status).toBe(404);
    });

    it("allows logprobs only as the plan does, and refuses revoked keys", async () => {
      const { key: research, row: researchRow } = await store.createKey({
        org: "acme",
        name: "research",
        plan: "research",
      });
      const researcher = new OpenAI({ apiKey: research, baseURL: `${api.url}/v1`, maxRetries: 0 });
      const answer = await researcher.chat.completions.create({
        model: "avocado-tiny",
        messages: [{ role: "user", content: "What is 25*12?" }],
        logprobs: true,
        top_logprobs: 3,
        max_tokens: 4,
        temperature: 0,
      });
      expect(answer.choices[0]!.logprobs!.content![0]!.top_logprobs.length).toBe(3);
      // The request left its extraction signals (a SimHash of the prompt, never the prompt).
      const signals = await store.requestSignals(researchRow.id, 0);
      expect(signals[0]).toMatchObject({
        logprobs: 3,
        temperature: 0,
        prompt_simhash: expect.stringMatching(/^[0-9a-f]{16}$/),
      });
      await expect(
        researcher.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "hi" }],
          logprobs: true,
          top_logprobs: 6,
        }),
      ).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
      const { row } = await store.createKey({ org: "acme", name: "short-lived" }).then(async (created) => {
        await store.revokeKey(created.row.id);
        return created;
      });
      expect(row.revoked_at).toBeNull();
      const revoked = (await store.listKeys("acme")).find((k) => k.id === row.id)!;
      expect(revoked.revoked_at).not.toBeNull();
    });

    it("answers 429 with Retry-After at the key's RPM, and 402 without credit", async () => {
      const tight = new OpenAI({
        apiKey: (await store.createKey({ org: "acme", name: "tight", plan: "tight" })).key,
        baseURL: `${api.url}/v1`,
        maxRetries: 0,
      });
      const ask = () =>
        tight.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "What is 25*12?" }],
          max_tokens: 2,
        });
      await ask();
      await ask();
      const limited = await ask().catch((e: unknown) => e);
      expect(limited).toBeInstanceOf(OpenAI.RateLimitError);
      expect(
        Number((limited as InstanceType<typeof OpenAI.APIError>).headers?.get("retry-after")),
      ).toBeGreaterThanOrEqual(1);
      const broke = new OpenAI({
        apiKey: (await store.createKey({ org: "broke", name: "k" })).key,
        baseURL: `${api.url}/v1`,
        maxRetries: 0,
      });
      const refused = await broke.chat.completions
        .create({ model: "avocado-tiny", messages: [{ role: "user", content: "hi" }] })
        .catch((e: unknown) => e);
      expect((refused as InstanceType<typeof OpenAI.APIError>).status).toBe(402);
      expect((await store.audit()).problems).toEqual([]);
    });

    it("200 concurrent streams on credit for about 50: never below zero, charges equal metered usage, none twice", async () => {
      const { key: crowdKey } = await store.createKey({
        org: "crowd",
        name: "k",
        limits: { concurrency: 1000, rpm: 100_000, tpm: 100_000_000 },
      });
      const crowd = new OpenAI({ apiKey: crowdKey, baseURL: `${api.url}/v1`, maxRetries: 0, timeout: 120_000 });
      const request = {
        model: "avocado-tiny",
        messages: [{ role: "user" as const, content: "What is 25*12?" }],
        max_tokens: 12,
        temperature: 0,
      };
      const worst = costOf(PRICE, (await client.chat.completions.create(request)).usage!.prompt_tokens, 12);
      await store.grant("crowd", worst * 50, "crowd");
      const orgId = (await store.orgByName("crowd"))!.id;
      let lowest = Number.POSITIVE_INFINITY;
      const watcher = setInterval(
        () => void store.balance(orgId).then((b) => (lowest = Math.min(lowest, b.available))),
        5,
      );
      const outcomes = await Promise.all(
        Array.from({ length: 200 }, async () => {
          try {
            const stream = await crowd.chat.completions.create({
              ...request,
              stream: true,
              stream_options: { include_usage: true },
            });
            let usage: OpenAI.CompletionUsage | undefined;
            for await (const chunk of stream) usage = chunk.usage ?? usage;
            return usage ? costOf(PRICE, usage.prompt_tokens, usage.completion_tokens) : -1;
          } catch (error) {
            if ((error as { status?: number }).status === 402) return 0;
            throw error;
          }
        }),
      );
      clearInterval(watcher);
      expect(outcomes).not.toContain(-1);
      const served = outcomes.filter((c) => c > 0);
      expect(served.length).toBeGreaterThanOrEqual(50);
      expect(lowest).toBeGreaterThanOrEqual(0);
      const usage = await store.usage({ orgId });
      const charged = usage.reduce((sum, row) => sum + row.cost, 0);
      if (charged !== served.reduce((a, b) => a + b, 0)) {
        const records = await store.db
          .selectFrom("requests")
          .select(["charged as cost", "outcome", "prompt_tokens", "completion_tokens"])
          .where("org_id", "=", orgId)
          .execute();
        const histogram = (values: string[]) =>
          Object.entries(values.reduce<Record<string, number>>((h, v) => ((h[v] = (h[v] ?? 0) + 1), h), {}));
        process.stderr.write(
          `served ${JSON.stringify(histogram(served.map(String)))}\nrecords ${JSON.stringify(histogram(records.map((r) => `${r.cost}/${r.outcome}/${r.prompt_tokens}/${r.completion_tokens}`)))}\n`,
        );
      }
      expect(charged).toBe(served.reduce((a, b) => a + b, 0));
      expect(usage.reduce((sum, row) => sum + row.requests, 0)).toBe(served.length);
      const balance = await store.balance(orgId);
      expect(balance).toEqual({ available: worst * 50 - charged, held: 0 });
      expect((await store.audit()).problems).toEqual([]);
    }, 120_000);
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
