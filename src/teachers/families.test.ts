import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { scratchFolder } from "../../test/fixtures.ts";
import { FileError } from "../core/errors.ts";
import { callCost } from "./cost.ts";
import {
  familyOfTemplate,
  foreignFamilyIn,
  loadGenericTemplate,
  splitReasoning,
  StreamingReasoningSplitter,
} from "./families.ts";
import { parseRetryAfter } from "../core/model-error.ts";

describe("families", () => {
  it("splits reasoning from raw output: <think> blocks, a lone </think>, an unfinished thought, harmony channels", () => {
    expect(splitReasoning("qwen", "<think>\nadd them\n</think>\n\n42")).toEqual({
      reasoning: "add them",
      content: "42",
    });
    expect(splitReasoning("generic", "add them\n</think>\n\n42")).toEqual({ reasoning: "add them", content: "42" });
    expect(splitReasoning("qwen", "<think>\nstill thinking")).toEqual({ reasoning: "still thinking", content: "" });
    expect(splitReasoning("qwen", "just 42")).toEqual({ reasoning: "", content: "just 42" });
    expect(
      splitReasoning(
        "gptoss",
        "<|channel|>analysis<|message|>17*23=391<|end|><|start|>assistant<|channel|>final<|message|>391<|return|>",
      ),
    ).toEqual({ reasoning: "17*23=391", content: "391" });
    expect(splitReasoning("gptoss", "<|channel|>analysis<|message|>unfinished")).toEqual({
      reasoning: "unfinished",
      content: "",
    });
    expect(splitReasoning("gemma", "<think>not a gemma thing</think>")).toEqual({
      reasoning: "",
      content: "<think>not a gemma thing</think>",
    });
  });

  it("streams the split as it arrives, holding back partial markers", () => {
    const raw = "<think>\nadd them\n</think>\n\n42 is the answer";
    for (const size of [1, 2, 3, 5, 8]) {
      const splitter = new StreamingReasoningSplitter("qwen");
      const out = { reasoning: "", content: "" };
      for (let i = 0; i < raw.length; i += size)
        for (const event of splitter.feed(raw.slice(i, i + size))) out[event.type] += event.text;
      expect(out.reasoning).not.toMatch(/<|>/);
      expect(out.content.trim()).toBe("42 is the answer");
      expect(splitter.finish()).toEqual({ reasoning: "add them", content: "42 is the answer" });
    }
    const harmony = new StreamingReasoningSplitter("gptoss");
    const events = [
      "<|channel|>analysis<|mess",
      "age|>think",
      "ing<|end|><|start|>assistant<|channel|>final<|message|>3",
      "91",
    ].flatMap((d) => harmony.feed(d));
    expect(
      events
        .filter((e) => e.type === "reasoning")
        .map((e) => e.text)
        .join(""),
    ).toBe("thinking");
    expect(
      events
        .filter((e) => e.type === "content")
        .map((e) => e.text)
        .join(""),
    ).toBe("391");
  });

  it("tells a template's family, and finds another family's markers in output", () => {
    expect(familyOfTemplate("{{ '<|im_start|>' + message.role }}")).toBe("qwen");
    expect(familyOfTemplate("{{ '<start_of_turn>user' }}")).toBe("gemma");
    expect(familyOfTemplate("{{ '<|start|>assistant<|channel|>final' }}")).toBe("gptoss");
    expect(familyOfTemplate("[INST] {{ content }} [/INST]")).toBeUndefined();
    expect(foreignFamilyIn("gptoss", "<think>hm</think>42")).toBe("qwen");
    expect(foreignFamilyIn("qwen", "<think>hm</think>42")).toBeUndefined();
    expect(foreignFamilyIn("qwen", "<start_of_turn>model")).toBe("gemma");
    expect(foreignFamilyIn("generic", "<|channel|>analysis")).toBeUndefined();
  });

  it("loads a tokenizer_config.json chat template (string or named list) and refuses a broken one by file name", async () => {
    const folder = scratchFolder("families");
    await mkdir(folder, { recursive: true });
    const good = join(folder, "good.json");
    await writeFile(
      good,
      JSON.stringify({
        chat_template: [
          {
            name: "default",
            template:
              "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
          },
        ],
        eos_token: { content: "</s>" },
      }),
    );
    const template = await loadGenericTemplate(good);
    expect(template.eosToken).toBe("</s>");
    expect(template.render([{ role: "user", content: "hi" }])).toBe("<user>hi<assistant>");
    const broken = join(folder, "broken.json");
    await writeFile(broken, JSON.stringify({ chat_template: "{% for m in messages %}" }));
    await expect(loadGenericTemplate(broken)).rejects.toBeInstanceOf(FileError);
    await writeFile(broken, "{ not json");
    await expect(loadGenericTemplate(broken)).rejects.toThrow(/broken\.json: is not a tokenizer_config\.json/);
  });
});

describe("Retry-After and cost", () => {
  it("reads delay-seconds and HTTP-dates", () => {
    expect(parseRetryAfter("2")).toBe(2000);
    expect(parseRetryAfter("0.5")).toBe(500);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });

  it("costs calls in integer micro-units, by tokens or by GPU time shared among concurrent requests", () => {
    const usage = { promptTokens: 1000, completionTokens: 500, reasoningTokens: 200 };
    expect(callCost({ inputPerMillion: 150_000, outputPerMillion: 600_000 }, usage, 0, 1)).toBe(450);
    expect(callCost({ inputPerMillion: 1, outputPerMillion: 1 }, usage, 0, 1)).toBe(1);
    expect(callCost({ gpuHour: 3_600_000_000, gpus: 2 }, usage, 1000, 4)).toBe(500_000);
    expect(callCost(undefined, usage, 1000, 1)).toBe(0);
  });
});
