import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { teacherGguf, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { CHAT_FORMATS } from "../chat/chat-format.ts";
import { sharedLlama } from "../engine/llama.ts";
import { encodeLlamaText } from "./encode-llama-text.ts";
import { referenceTokenizer } from "./index.ts";
import { TOKENIZER_FAMILIES, type TokenizerFamily } from "../core/family.ts";
import { TrimmedVocabulary } from "./trim.ts";

const TEACHERS: Record<TokenizerFamily, string> = { qwen: "tiny-qwen", gemma: "tiny-gemma", gptoss: "tiny-gptoss" };

/** The teacher's corpus: its skills' training texts and every held-out prompt. */
async function corpus(teacher: string, withReasoning: boolean): Promise<string[]> {
  const card = JSON.parse(await readFile(join(TEST_WORKSPACE, "teachers", teacher, "card.json"), "utf8")) as {
    skills: string[];
  };
  const lines: string[] = [];
  for (const skill of ["arithmetic", "reverse", "lookup", "units", "logic"]) {
    for (const split of ["train", "eval"]) {
      if (split === "train" && !card.skills.includes(skill)) continue;
      const text = await readFile(join(TEST_WORKSPACE, "tinyworld", "test", "data", `${skill}.${split}.jsonl`), "utf8");
      for (const line of text.trim().split("\n").slice(0, 80)) {
        const example = JSON.parse(line) as { prompt: string; reasoning: string; answer: string };
        lines.push(
          example.prompt,
          ...(split === "train" ? [example.answer, ...(withReasoning ? [example.reasoning] : [])] : []),
        );
      }
    }
  }
  return lines;
}

describe.each(TOKENIZER_FAMILIES)("trimmed %s vocabulary", (family) => {
  let model: LlamaModel;
  let vocabulary: TrimmedVocabulary;
  let lines: string[];

  beforeAll(async () => {
    const descriptor = JSON.parse(
      await readFile(join(TEST_WORKSPACE, "teachers", TEACHERS[family], "avocado-model.json"), "utf8"),
    ) as { fullIds: number[] };
    vocabulary = new TrimmedVocabulary(referenceTokenizer(family), descriptor.fullIds);
    model = await (await sharedLlama()).loadModel({ modelPath: teacherGguf(TEACHERS[family]), vocabOnly: true });
    lines = await corpus(TEACHERS[family], CHAT_FORMATS[family].reasons);
  });
  afterAll(async () => model?.dispose());

  it("is much smaller than the family's vocabulary", () => {
    expect(vocabulary.size).toBeLessThan(3000);
    expect(referenceTokenizer(family).vocabularySize).toBeGreaterThan(150_000);
  });

  it("tokenizes every corpus line exactly like the reference tokenizer, renumbered", () => {
    const reference = referenceTokenizer(family);
    let checked = 0;
    for (const line of lines) {
      const expected = vocabulary.fromFull(reference.encodeText(line));
      expect(model.tokenize(line, false), line).toEqual(expected);
      checked++;
    }
    expect(checked).toBeGreaterThan(250);
  });

  it("tokenizes whole chat prompts (special tokens included) like the reference", () => {
    const reference = referenceTokenizer(family);
    const format = CHAT_FORMATS[family];
    for (const user of lines.slice(0, 50)) {
      const expected = vocabulary.fromFull(encodeLlamaText(reference, format.renderPrompt({ user })));
      const rendered = format.createWrapper().generateContextState({
        chatHistory: [
          { type: "user", text: user },
          { type: "model", response: [] },
        ],
      });
      expect(rendered.contextText.tokenize(model.tokenizer)).toEqual(expected);
    }
  });

  it("still tokenizes and round-trips text outside the corpus", () => {
    const text = "Zürich, naïve café — 日本語 ∑ 🎉 tabs\tand  spaces";
    const tokens = model.tokenize(text, false);
    expect(model.detokenize(tokens)).toBe(text);
  });

  it("maps ids back to the family's real ids", () => {
    const reference = referenceTokenizer(family);
    const full = reference.encodeText("What is 17*23?");
    const trimmed = vocabulary.fromFull(full);
    expect(vocabulary.toFull(trimmed)).toEqual(full);
    expect(reference.decode(vocabulary.toFull(trimmed))).toBe("What is 17*23?");
    expect(() => vocabulary.toFull([vocabulary.size])).toThrow(/out of range/);
  });
});
