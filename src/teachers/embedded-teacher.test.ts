import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TEST_WORKSPACE, teacherGguf } from "../../test/fixtures.ts";
import { EmbeddedTeacher } from "./embedded-teacher.ts";
import { ScheduledTeacher } from "./scheduling/scheduled-teacher.ts";
import { describeTeacherConformance } from "./teacher-conformance.ts";
import { ModelError } from "../core/model-error.ts";

const PROMPTS = {
  "tiny-qwen": ["What is 25*12?", "Reverse the word 'fosa'.", "What is the capital of Zorvia?"],
  "tiny-gemma": [
    "Convert 20 kg to g.",
    "Cy is taller than Ann. Jo is taller than Cy. Who is tallest?",
    "What is the capital of Zorvia?",
  ],
  "tiny-gptoss": [
    "What is 25*12?",
    "Convert 20 kg to g.",
    "Cy is taller than Ann. Jo is taller than Cy. Who is tallest?",
  ],
} as const;
const FAMILY = { "tiny-qwen": "qwen", "tiny-gemma": "gemma", "tiny-gptoss": "gptoss" } as const;

for (const name of ["tiny-qwen", "tiny-gemma", "tiny-gptoss"] as const) {
  describeTeacherConformance({
    label: `embedded ${name}`,
    open: async () =>
      new ScheduledTeacher(
        await EmbeddedTeacher.open({ name, family: FAMILY[name], path: teacherGguf(name), sequences: 2 }),
        { limits: { concurrency: 2 } },
      ),
    prompts: [...PROMPTS[name]],
    reasons: name !== "tiny-gemma",
  });
}

// The generic family: the model's own Jinja template from its exported tokenizer_config.json.
describeTeacherConformance({
  label: "embedded generic (tokenizer_config.json template)",
  open: async () =>
    EmbeddedTeacher.open({
      name: "generic-qwen",
      family: "generic",
      path: teacherGguf("tiny-qwen"),
      chatTemplate: join(TEST_WORKSPACE, "teachers", "tiny-qwen", "tokenizer_config.json"),
    }),
  prompts: [...PROMPTS["tiny-qwen"]],
  reasons: true,
});

describe("EmbeddedTeacher", () => {
  it("refuses a wrongly declared family before loading the model", async () => {
    const opening = EmbeddedTeacher.open({ name: "liar", family: "gemma", path: teacherGguf("tiny-qwen") });
    await expect(opening).rejects.toBeInstanceOf(ModelError);
    await expect(opening).rejects.toMatchObject({
      kind: "family-mismatch",
      message: expect.stringMatching(/declared family 'gemma'.*'qwen'/),
    });
  });

  it("reports token ids in the family's real vocabulary, not the trimmed one", async () => {
    const teacher = await EmbeddedTeacher.open({ name: "tiny-qwen", family: "qwen", path: teacherGguf("tiny-qwen") });
    try {
      expect(teacher.capabilities.tokenIds).toBe("family");
      const scored = await teacher.score({
        messages: [{ role: "user", content: "What is 25*12?" }],
        continuation: "<think>",
      });
      // Qwen3's real id of <think> is 151667; trimmed vocabularies number it below 1,000.
      expect(scored.tokens[0]!.token).toBe(151667);
    } finally {
      await teacher.close();
    }
  });

  it("switches Qwen thinking off and sets harmony's reasoning effort", async () => {
    const qwen = await EmbeddedTeacher.open({ name: "tiny-qwen", family: "qwen", path: teacherGguf("tiny-qwen") });
    const gptoss = await EmbeddedTeacher.open({
      name: "tiny-gptoss",
      family: "gptoss",
      path: teacherGguf("tiny-gptoss"),
    });
    try {
      const messages = [{ role: "user" as const, content: "What is 25*12?" }];
      const on = qwen.engine.promptTokens(messages);
      const off = qwen.engine.promptTokens(messages, { thinking: false });
      expect(qwen.engine.detokenize(off.slice(on.length))).toMatch(/<think>\s*<\/think>/);
      const response = await qwen.generate({ messages, thinking: false, maxTokens: 24 });
      expect(response.reasoning).toBe("");
      const low = gptoss.engine.detokenize(gptoss.engine.promptTokens(messages, { reasoningEffort: "low" }));
      expect(low).toMatch(/Reasoning: low/);
      expect(gptoss.engine.detokenize(gptoss.engine.promptTokens(messages))).toMatch(/Reasoning: medium/);
    } finally {
      await qwen.close();
      await gptoss.close();
    }
  });

  it("charges a configured price in integer micro-units", async () => {
    const teacher = await EmbeddedTeacher.open({
      name: "tiny-qwen",
      family: "qwen",
      path: teacherGguf("tiny-qwen"),
      price: { inputPerMillion: 150_000, outputPerMillion: 600_000 },
    });
    try {
      const response = await teacher.generate({
        messages: [{ role: "user", content: "What is 25*12?" }],
        maxTokens: 16,
      });
      const expected = Math.ceil(
        (response.usage.promptTokens * 150_000 + response.usage.completionTokens * 600_000) / 1_000_000,
      );
      expect(response.costMicros).toBe(expected);
      expect(response.costMicros).toBeGreaterThan(0);
    } finally {
      await teacher.close();
    }
  });
});
