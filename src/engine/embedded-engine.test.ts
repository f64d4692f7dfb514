import { copyFile, mkdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratchFolder, teacherGguf, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { isJsonPrefix } from "../../test/json-prefix.ts";
import { FileError } from "../core/errors.ts";
import { referenceTokenizer } from "../tokenizers/index.ts";
import { TrimmedVocabulary } from "../tokenizers/trim.ts";
import type { TokenizerFamily } from "../core/family.ts";
import { renderExample } from "../train/render.ts";
import { EmbeddedEngine } from "./embedded-engine.ts";

describe("embedded engine", () => {
  const engines: Record<string, EmbeddedEngine> = {};
  const scratch = scratchFolder("engine");

  beforeAll(async () => {
    for (const name of ["tiny-qwen", "tiny-gemma", "tiny-gptoss"])
      engines[name] = await EmbeddedEngine.load(teacherGguf(name), { sequences: 4 });
    await mkdir(scratch, { recursive: true });
  });
  afterAll(async () => {
    for (const engine of Object.values(engines)) await engine.dispose();
    await rm(scratch, { recursive: true, force: true });
  });

  it("reads the family from the GGUF", () => {
    expect(engines["tiny-qwen"]?.family).toBe("qwen");
    expect(engines["tiny-gemma"]?.family).toBe("gemma");
    expect(engines["tiny-gptoss"]?.family).toBe("gptoss");
  });

  it("gives gpt-oss's analysis and final channels separately", async () => {
    const result = await engines["tiny-gptoss"]!.chat({
      messages: [{ role: "user", content: "What is 17*23?" }],
      maxTokens: 96,
    });
    expect(result.reasoning.length).toBeGreaterThan(0);
    expect(result.content).not.toMatch(/<\|channel\|>|<\|message\|>|analysis/);
    expect(result.reasoning).not.toMatch(/<\|/);
    expect(result.finishReason).toBe("stop");
  });

  it("answers under the JSON grammar: always JSON so far, and JSON whole when it stops", async () => {
    const prompts = ["What is 25*12?", "Convert 20 kg to g.", "Reverse the word 'kalomi'."];
    for (const content of prompts) {
      const result = await engines["tiny-gemma"]!.chat({
        messages: [{ role: "user", content }],
        maxTokens: 48,
        json: true,
      });
      // A tiny model may loop inside a string until max tokens (as OpenAI's JSON mode may end at 'length'): what it
      // wrote is still JSON's start.
      expect(isJsonPrefix(result.content)).toBe(true);
      if (result.finishReason === "stop") expect(() => JSON.parse(result.content) as unknown).not.toThrow();
      else expect(result.finishReason).toBe("length");
    }
  });

  it("stops under a JSON schema whose every answer is short, with JSON valid against it, on every family", async () => {
    // Enums and a boolean only: the grammar runs out of choices within a few tokens, and then allows only the end.
    const schema = {
      type: "object",
      properties: { unit: { enum: ["g", "kg"] }, sure: { type: "boolean" } },
      required: ["unit", "sure"],
      additionalProperties: false,
    };
    for (const name of ["tiny-qwen", "tiny-gemma", "tiny-gptoss"]) {
      for (const content of ["Convert 2 kg to g.", "What is 25*12?"]) {
        const result = await engines[name]!.chat({
          messages: [{ role: "user", content }],
          maxTokens: 96,
          jsonSchema: schema,
          thinking: false,
          reasoningEffort: "low",
        });
        expect([name, result.finishReason]).toEqual([name, "stop"]);
        const parsed = JSON.parse(result.content) as { unit: unknown; sure: unknown };
        expect(Object.keys(parsed)).toEqual(["unit", "sure"]);
        expect(["g", "kg"]).toContain(parsed.unit);
        expect(typeof parsed.sure).toBe("boolean");
      }
    }
  });

  it("separates Qwen's <think> block from the answer", async () => {
    const result = await engines["tiny-qwen"]!.chat({
      messages: [{ role: "user", content: "Reverse the word 'kalomi'." }],
      maxTokens: 96,
    });
    expect(result.reasoning).toMatch(/Letters/);
    expect(result.content).not.toMatch(/<\/?think>/);
  });

  it("prompts with exactly the tokens the teacher was trained on", async () => {
    for (const name of ["tiny-qwen", "tiny-gemma", "tiny-gptoss"]) {
      const engine = engines[name]!;
      const descriptor = JSON.parse(
        await readFile(join(TEST_WORKSPACE, "teachers", name, "avocado-model.json"), "utf8"),
      ) as { fullIds: number[] };
      const vocabulary = new TrimmedVocabulary(
        referenceTokenizer(engine.family as TokenizerFamily),
        descriptor.fullIds,
      );
      const rendered = renderExample(engine.format, vocabulary.reference, {
        user: "Convert 7 km to m.",
        reasoning: "x",
        answer: "7000",
      });
      const training = vocabulary.fromFull(rendered.tokens.slice(0, rendered.promptLength));
      expect(engine.promptTokens([{ role: "user", content: "Convert 7 km to m." }]), name).toEqual(training);
      const result = await engine.chat({ messages: [{ role: "user", content: "Convert 7 km to m." }], maxTokens: 64 });
      expect(result.usage.promptTokens).toBe(training.length);
      expect(result.usage.completionTokens).toBeGreaterThan(0);
    }
  });

  it("streams chunks that add up to the result", async () => {
    const chunks: { kind: string; text: string }[] = [];
    const result = await engines["tiny-gptoss"]!.chat({
      messages: [{ role: "user", content: "Convert 3 km to m." }],
      maxTokens: 96,
      onChunk: (c) => chunks.push(c),
    });
    expect(
      chunks
        .filter((c) => c.kind === "content")
        .map((c) => c.text)
        .join(""),
    ).toBe(result.content);
    expect(
      chunks
        .filter((c) => c.kind === "reasoning")
        .map((c) => c.text)
        .join("")
        .trim(),
    ).toBe(result.reasoning);
  });

  it("stops at max tokens with finish reason 'length'", async () => {
    const result = await engines["tiny-qwen"]!.chat({
      messages: [{ role: "user", content: "What is 55+91?" }],
      maxTokens: 3,
    });
    expect(result.finishReason).toBe("length");
    expect(result.usage.completionTokens).toBe(3);
  });

  it("returns exact top-k logprobs that agree with teacher-forced scoring", async () => {
    const engine = engines["tiny-gemma"]!;
    const messages = [
      { role: "user" as const, content: "Ann is taller than Bob. Bob is taller than Cy. Who is tallest?" },
    ];
    const result = await engine.chat({ messages, maxTokens: 16, topLogprobs: 5 });
    expect(result.logprobs?.length).toBe(result.completionTokens.length);
    for (const lp of result.logprobs ?? []) {
      expect(lp.top).toHaveLength(5);
      expect(lp.top[0]!.logprob).toBeGreaterThanOrEqual(lp.top[4]!.logprob);
      // Greedy decoding picks the most likely token.
      expect(lp.token).toBe(lp.top[0]!.token);
      expect(lp.top.reduce((sum, t) => sum + Math.exp(t.logprob), 0)).toBeLessThanOrEqual(1 + 1e-6);
    }
    const scored = await engine.score(engine.promptTokens(messages), result.completionTokens, 5);
    scored.forEach((s, i) => expect(s.logprob).toBeCloseTo(result.logprobs![i]!.logprob, 6));
    const full = await engine.nextTokenLogprobs(engine.promptTokens(messages));
    expect([...full.values()].reduce((sum, lp) => sum + Math.exp(lp), 0)).toBeCloseTo(1, 4);
  });

  it("serves concurrent requests on one model, each answer greedy on its own prompt", async () => {
    const engine = engines["tiny-gemma"]!;
    const prompts = [
      "Convert 4 kg to g.",
      "Convert 9 m to cm.",
      "Convert 2 hours to minutes.",
      "Convert 5 days to hours.",
      "Convert 8 km to m.",
      "Convert 3 minutes to seconds.",
    ];
    const concurrent = await Promise.all(
      prompts.map((p) => engine.chat({ messages: [{ role: "user", content: p }], maxTokens: 24, topLogprobs: 1 })),
    );
    // Batched sequences may sum floats in another order than one alone (measured: log-probs within 4e-6 here), so the
    // check is not equality with one-at-a-time answers: each answer, scored alone on its own prompt, must be that
    // prompt's greedy continuation within float noise — one computed on another request's logits is not. (An answer
    // that differed under load in CI was that: llama.cpp's unlocked output reorder, see the shared-batch test below.)
    for (const [i, result] of concurrent.entries()) {
      expect(result.completionTokens.length, prompts[i]).toBeGreaterThan(0);
      const scored = await engine.score(
        engine.promptTokens([{ role: "user", content: prompts[i]! }]),
        result.completionTokens,
        1,
      );
      scored.forEach((s, t) => {
        expect(Math.abs(s.logprob - result.logprobs![t]!.logprob), `${prompts[i]} token ${t}`).toBeLessThan(0.05);
        expect(s.top[0]!.logprob - s.logprob, `${prompts[i]} token ${t}`).toBeLessThan(0.05);
      });
    }
  });

  it("gives each sequence of a shared batch its own next-token distribution, never another request's", async () => {
    // Eight prompts of unequal lengths evaluated in one batch make llama.cpp compute their output rows out of order and
    // put them back in order on the first read, without a lock, while node-llama-cpp reads them on several threads at
    // once. Unguarded (output-order-guard.ts), about 1 in 100 of these distributions was another sequence's.
    const engine = await EmbeddedEngine.load(teacherGguf("tiny-gemma"), { sequences: 8 });
    try {
      const questions = [
        "Convert 20 kg to g.",
        "Cy is taller than Ann. Jo is taller than Cy. Who is tallest?",
        "What is the capital of Zorvia?",
        "What is 25*12?",
        "Reverse the word 'fosa'.",
        "Convert 4 kg to g.",
        "Convert 9 m to cm.",
        "Convert 2 hours to minutes.",
      ];
      const prompts = questions.map((q, i) =>
        engine.promptTokens([{ role: "user", content: `${q}${"?".repeat(8 - i)}` }]),
      );
      const greedy = (logprobs: Map<number, number>) =>
        [...logprobs.entries()].reduce((best, entry) => (entry[1] > best[1] ? entry : best));
      const alone: [number, number][] = [];
      for (const prompt of prompts) alone.push(greedy(await engine.nextTokenLogprobs(prompt)));
      const wrong: string[] = [];
      for (let round = 0; round < 150; round++) {
        const batched = await Promise.all(prompts.map((prompt) => engine.nextTokenLogprobs(prompt)));
        batched.forEach((logprobs, i) => {
          const [token, logprob] = greedy(logprobs);
          if (token !== alone[i]![0] || Math.abs(logprob - alone[i]![1]) > 1e-3)
            wrong.push(`round ${round}, prompt ${i}: token ${token} (${logprob}), alone ${alone[i]!.join(" (")})`);
        });
      }
      expect(wrong).toEqual([]);
    } finally {
      await engine.dispose();
    }
  });

  it("a request cancelled while it waits for a sequence leaves the queue at once, without running", async () => {
    const engine = await EmbeddedEngine.load(teacherGguf("tiny-qwen"), { sequences: 1 });
    try {
      const order: string[] = [];
      // Takes the only sequence (synchronously, at the call).
      const running = engine
        .chat({ messages: [{ role: "user", content: "Reverse the word 'abcdefghijklmnop'." }], maxTokens: 64 })
        .then(() => order.push("running done"));
      const controller = new AbortController();
      const queued = engine.chat({
        messages: [{ role: "user", content: "hi" }],
        maxTokens: 8,
        signal: controller.signal,
        onChunk: () => order.push("queued generated"),
      });
      controller.abort(new Error("the client disconnected"));
      await expect(queued).rejects.toThrow("the client disconnected");
      order.push("queued rejected");
      await running;
      expect(order).toEqual(["queued rejected", "running done"]);
      // Aborted before it even asked: refused at once too.
      await expect(
        engine.chat({ messages: [{ role: "user", content: "hi" }], signal: controller.signal }),
      ).rejects.toThrow("the client disconnected");
    } finally {
      await engine.dispose();
    }
  });

  it("rejects a prompt longer than the context with a clear error", async () => {
    const long = "Convert 7 km to m. ".repeat(200);
    await expect(engines["tiny-gemma"]!.chat({ messages: [{ role: "user", content: long }] })).rejects.toThrow(
      /^the prompt is \d+ tokens; the model's context is \d+ tokens$/,
    );
    // The sequence went back to the pool: the engine still answers.
    expect(
      (await engines["tiny-gemma"]!.chat({ messages: [{ role: "user", content: "Convert 7 km to m." }], maxTokens: 8 }))
        .usage.completionTokens,
    ).toBeGreaterThan(0);
  });

  it("names the file when a GGUF is truncated, corrupt or missing", async () => {
    const truncated = join(scratch, "truncated.gguf");
    await copyFile(teacherGguf("tiny-gemma"), truncated);
    await truncate(truncated, 50_000);
    await expect(EmbeddedEngine.load(truncated)).rejects.toThrow(new RegExp(`${truncated}.*truncated`));
    const corrupt = join(scratch, "corrupt.gguf");
    await writeFile(corrupt, "this is not a gguf file at all");
    await expect(EmbeddedEngine.load(corrupt)).rejects.toThrow(FileError);
    await expect(EmbeddedEngine.load(corrupt)).rejects.toThrow(/corrupt\.gguf: is not a valid GGUF/);
    await expect(EmbeddedEngine.load(join(scratch, "missing.gguf"))).rejects.toThrow(/missing\.gguf: cannot be opened/);
  });
});
