import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OpenAiCompatibleTestServer } from "../../../test/openai-compatible-server.ts";
import { teacherGguf } from "../../../test/fixtures.ts";
import { teacherConfigSchema } from "../../core/config/teacher-schema.ts";
import { EmbeddedEngine } from "../../engine/embedded-engine.ts";
import { openTeacher } from "../registry.ts";
import type { HttpEngine } from "./dialects.ts";

describe("HttpTeacher request dialects", () => {
  let backend: OpenAiCompatibleTestServer;
  beforeAll(async () => {
    backend = await new OpenAiCompatibleTestServer(await EmbeddedEngine.load(teacherGguf("tiny-qwen")), {
      model: "tiny-qwen",
    }).start();
  });
  afterAll(async () => {
    await backend.stop();
    await backend.engine.dispose();
  });

  it("sends Qwen's enable_thinking through chat_template_kwargs, llama.cpp's n_probs, and merges Gemma system prompts", async () => {
    const open = (engine: HttpEngine, family: "qwen" | "gemma") =>
      openTeacher(
        teacherConfigSchema.parse({
          name: `d-${engine}`,
          family,
          transport: "http",
          engine,
          baseUrl: backend.baseUrl,
          model: "tiny-qwen",
        }),
      );
    const off = await (
      await open("vllm", "qwen")
    ).generate({ messages: [{ role: "user", content: "What is 25*12?" }], thinking: false, maxTokens: 16 });
    expect(off.reasoning).toBe("");
    expect(backend.received.at(-1)?.body).toMatchObject({ chat_template_kwargs: { enable_thinking: false } });
    await (
      await open("llamacpp", "qwen")
    ).generate({ messages: [{ role: "user", content: "What is 25*12?" }], topLogprobs: 2, maxTokens: 4 });
    expect(backend.received.at(-1)?.body).toMatchObject({ logprobs: true, top_logprobs: 2, n_probs: 2 });
    const gemma = await open("vllm", "gemma");
    await gemma
      .generate({
        messages: [
          { role: "system", content: "Be brief." },
          { role: "user", content: "Hi" },
        ],
        maxTokens: 4,
      })
      .catch(() => undefined);
    expect(backend.received.at(-1)?.body).toMatchObject({ messages: [{ role: "user", content: "Be brief.\n\nHi" }] });
    await expect(
      gemma.generate({ messages: [{ role: "user", content: "Hi" }], topLogprobs: 21 }),
    ).rejects.toMatchObject({ kind: "bad-request" });
    // The configured default applies unless the request chooses.
    const configured = await openTeacher(
      teacherConfigSchema.parse({
        name: "quiet",
        family: "qwen",
        transport: "http",
        engine: "vllm",
        baseUrl: backend.baseUrl,
        model: "tiny-qwen",
        thinking: false,
      }),
    );
    await configured.generate({ messages: [{ role: "user", content: "What is 25*12?" }], maxTokens: 4 });
    expect(backend.received.at(-1)?.body).toMatchObject({ chat_template_kwargs: { enable_thinking: false } });
    await configured.generate({
      messages: [{ role: "user", content: "What is 25*12?" }],
      maxTokens: 4,
      thinking: true,
    });
    expect(backend.received.at(-1)?.body).toMatchObject({ chat_template_kwargs: { enable_thinking: true } });
  });
});
