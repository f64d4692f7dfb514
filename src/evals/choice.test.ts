import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratchFolder, teacherGguf, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { teacherConfigSchema } from "../core/config/teacher-schema.ts";
import { SilentProgress } from "../core/progress.ts";
import { HttpTeacher } from "../teachers/http/http-teacher.ts";
import { openTeacher } from "../teachers/registry.ts";
import { runEval, type ModelUnderTest } from "./run.ts";
import { loadSuiteFile } from "./suite.ts";

describe("multiple choice by log-likelihood", () => {
  const folder = scratchFolder("choice");
  const models: ModelUnderTest[] = [];
  beforeAll(async () => {
    mkdirSync(folder, { recursive: true });
    // The tiny world's held-out unit conversions, the right answer among three of the wrong scale.
    const rows = readFileSync(join(TEST_WORKSPACE, "tinyworld", "test", "data", "units.eval.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { prompt: string; answer: string });
    const items = rows.map((row) => {
      const right = Number(row.answer);
      const choices = [String(right), String(right * 10), String(right / 10), String(right * 100)];
      // The right one at a place that moves, so that "always the first" scores a quarter.
      const at = row.prompt.length % 4;
      [choices[0], choices[at]] = [choices[at]!, choices[0]!];
      return { question: row.prompt, answer: String(right), choices };
    });
    writeFileSync(join(folder, "units.jsonl"), items.map((item) => JSON.stringify(item)).join("\n"));
    writeFileSync(
      join(folder, "units.yaml"),
      [
        "name: units-choice",
        "items: units.jsonl",
        "prompt: question",
        "reference: answer",
        "scorer: choice",
        "choices: choices",
      ].join("\n"),
    );
    for (const [name, family] of [
      ["tiny-gemma", "gemma"],
      ["tiny-qwen", "qwen"],
    ] as const) {
      const config = teacherConfigSchema.parse({ name, family, transport: "embedded", path: teacherGguf(name) });
      models.push({ name, teacher: await openTeacher(config) });
    }
    // A server that cannot score a given continuation (llama.cpp serves no prompt log-probs).
    const llamacpp = new HttpTeacher({
      name: "llamacpp",
      family: "qwen",
      engine: "llamacpp",
      baseUrl: "http://127.0.0.1:9/v1",
      model: "m",
    });
    models.push({ name: "llamacpp", teacher: llamacpp });
  });
  afterAll(async () => {
    for (const model of models) await model.teacher.close();
    rmSync(folder, { recursive: true, force: true });
  });

  it("picks the most likely answer: the teacher that learned units beats one that never saw them", async () => {
    const suite = loadSuiteFile(join(folder, "units.yaml"));
    expect(suite.metrics).toEqual(["acc", "acc_norm"]);
    const { summary } = await runEval({ suite, models, out: join(folder, "out"), progress: new SilentProgress() });
    const acc = (model: string) => summary.scores[model]!.acc!.all!;
    process.stdout.write(
      `units by log-likelihood: gemma ${acc("tiny-gemma").estimate}, qwen ${acc("tiny-qwen").estimate}\n`,
    );
    expect(acc("tiny-gemma").estimate).toBeGreaterThan(acc("tiny-qwen").estimate);
    expect(acc("tiny-gemma").estimate).toBeGreaterThanOrEqual(0.5);
    // The server that cannot score: every item an error with its reason, counted, none dropped.
    expect(acc("llamacpp")).toMatchObject({ errors: suite.items.length, correct: 0 });
    const records = readFileSync(join(folder, "out", "items.jsonl"), "utf8");
    expect(records).toMatch(/"model":"llamacpp".*"error":"[^"]*needs prompt log-probs, which llamacpp does not serve/);
  });

  it("refuses a choice item whose reference is not among its choices, naming the line", () => {
    writeFileSync(join(folder, "bad.jsonl"), JSON.stringify({ question: "q", answer: "3", choices: ["1", "2"] }));
    writeFileSync(
      join(folder, "bad.yaml"),
      [
        "name: bad",
        "items: bad.jsonl",
        "prompt: question",
        "reference: answer",
        "scorer: choice",
        "choices: choices",
      ].join("\n"),
    );
    expect(() => loadSuiteFile(join(folder, "bad.yaml"))).toThrow(
      /bad\.jsonl:1: the reference '3' is not one of the choices/,
    );
  });
});
