import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { TokenizerLoader } from "@lenml/tokenizers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PYTHON, scratchFolder, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { TRAINER_ROOT } from "../core/paths.ts";
import { EmbeddedEngine } from "../engine/embedded-engine.ts";
import { referenceTokenizer } from "../tokenizers/index.ts";
import { TrimmedVocabulary } from "../tokenizers/trim.ts";
import { exportModel, ggufFileName, type ModelDescriptor } from "./export-model.ts";

const PROMPTS = [
  "Convert 7 km to m.",
  // A held-out look-up question of the test world (its country's name is in every teacher's vocabulary).
  (
    JSON.parse(
      readFileSync(join(TEST_WORKSPACE, "tinyworld", "test", "data", "lookup.eval.jsonl"), "utf8").split("\n")[0]!,
    ) as { prompt: string }
  ).prompt,
  "Ann is taller than Bob. Bob is taller than Cy. Who is tallest?",
  "Convert 12 hours to minutes.",
];

function pytorchLogprobs(modelFolder: string, sequences: number[][], scratch: string): number[][] {
  const input = join(scratch, "score-input.json");
  mkdirSync(scratch, { recursive: true });
  writeFileSync(input, JSON.stringify({ sequences }));
  const result = spawnSync(PYTHON, ["-m", "avocado_trainer.score", "--model", modelFolder, "--input", input], {
    env: { ...process.env, PYTHONPATH: TRAINER_ROOT },
    encoding: "utf8",
    maxBuffer: 1 << 28,
  });
  if (result.status !== 0) throw new Error(result.stderr);
  return (JSON.parse(result.stdout) as { logprobs: number[][] }).logprobs;
}

describe.each(["tiny-gemma", "tiny-gptoss"])("export of %s", (teacher) => {
  const scratch = scratchFolder(`export-${teacher}`);
  const source = join(TEST_WORKSPACE, "teachers", teacher, "train");
  let descriptor: ModelDescriptor;

  beforeAll(async () => {
    descriptor = JSON.parse(
      await readFile(join(TEST_WORKSPACE, "teachers", teacher, "avocado-model.json"), "utf8"),
    ) as ModelDescriptor;
    await exportModel({ source, out: scratch, encodings: ["f32", "f16", "q8_0"], descriptor });
  });
  afterAll(() => rm(scratch, { recursive: true, force: true }));

  it("writes the Hugging Face layout", async () => {
    for (const file of [
      "config.json",
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
      "generation_config.json",
      "model.gguf",
      "model.f16.gguf",
      "model.q8_0.gguf",
    ]) {
      expect(existsSync(join(scratch, file)), file).toBe(true);
    }
    const config = JSON.parse(await readFile(join(scratch, "config.json"), "utf8")) as {
      architectures: string[];
      vocab_size: number;
    };
    expect(config.architectures).toEqual(["Qwen3ForCausalLM"]);
    expect(config.vocab_size).toBe(descriptor.fullIds.length);
    const tokenizerConfig = JSON.parse(await readFile(join(scratch, "tokenizer_config.json"), "utf8")) as {
      chat_template: string;
    };
    expect(tokenizerConfig.chat_template.length).toBeGreaterThan(100);
  });

  it("writes a tokenizer.json that tokenizes like the trimmed GGUF vocabulary", async () => {
    const tokenizerJSON = JSON.parse(await readFile(join(scratch, "tokenizer.json"), "utf8"));
    const tokenizerConfig = JSON.parse(await readFile(join(scratch, "tokenizer_config.json"), "utf8"));
    const hf = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
    const vocabulary = new TrimmedVocabulary(referenceTokenizer(descriptor.family), descriptor.fullIds);
    for (const text of PROMPTS) {
      expect(hf.encode(text, { add_special_tokens: false }), text).toEqual(
        vocabulary.fromFull(vocabulary.reference.encodeText(text)),
      );
    }
  });

  it("agrees with PyTorch on next-token log-probs (f32 ≤ 1e-3; f16 and q8_0 KL reported)", async () => {
    const engines = await Promise.all(
      (["f32", "f16", "q8_0"] as const).map((e) =>
        EmbeddedEngine.load(join(scratch, ggufFileName(e)), { kvCache: "F32" }),
      ),
    );
    try {
      const sequences = PROMPTS.map((p) => engines[0]!.promptTokens([{ role: "user", content: p }]));
      const reference = pytorchLogprobs(scratch, sequences, scratch);
      const report: Record<string, { maxAbsDiff: number; maxAbsDiffTop20: number; kl: number }> = {};
      for (const [index, encoding] of (["f32", "f16", "q8_0"] as const).entries()) {
        let maxAbsDiff = 0;
        let maxAbsDiffTop20 = 0;
        let kl = 0;
        for (const [i, tokens] of sequences.entries()) {
          const llama = new Map(
            [...(await engines[index]!.nextTokenLogprobs(tokens))].map(([t, lp]) => [t as number, lp]),
          );
          const torch = reference[i]!;
          const top20 = new Set([...torch.keys()].sort((a, b) => torch[b]! - torch[a]!).slice(0, 20));
          torch.forEach((lp, token) => {
            const other = llama.get(token) ?? -Infinity;
            if (top20.has(token)) maxAbsDiffTop20 = Math.max(maxAbsDiffTop20, Math.abs(lp - other));
            maxAbsDiff = Math.max(maxAbsDiff, Math.abs(lp - other));
            kl += Math.exp(lp) * (lp - other);
          });
        }
        report[encoding] = { maxAbsDiff, maxAbsDiffTop20, kl: kl / sequences.length };
      }
      process.stderr.write(`${teacher} export parity vs PyTorch: ${JSON.stringify(report)}\n`);
      await writeFile(join(scratch, "parity.json"), JSON.stringify(report));
      expect(report.f32!.maxAbsDiff).toBeLessThanOrEqual(1e-3);
      expect(report.q8_0!.kl).toBeLessThan(0.05);
      expect(report.f16!.kl).toBeLessThan(0.01);
    } finally {
      for (const engine of engines) await engine.dispose();
    }
  });
});

describe("export errors", () => {
  const scratch = scratchFolder("export-errors");
  afterAll(() => rm(scratch, { recursive: true, force: true }));

  it("names the missing tokenizer map or a mismatched config", async () => {
    const source = join(TEST_WORKSPACE, "teachers", "tiny-gemma", "train");
    await expect(exportModel({ source, out: scratch, encodings: ["f32"] })).rejects.toThrow(
      /train\/avocado-model\.json: is missing/,
    );
    await expect(
      exportModel({
        source,
        out: scratch,
        encodings: ["f32"],
        descriptor: { name: "x", family: "gemma", fullIds: [1, 2, 3] },
      }),
    ).rejects.toThrow(/config\.json: vocab_size \d+ does not match the tokenizer map's 3 tokens/);
  });
});
