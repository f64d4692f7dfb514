import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratchFolder, teacherGguf, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { teacherConfigSchema } from "../core/config/teacher-schema.ts";
import { SilentProgress } from "../core/progress.ts";
import { openTeacher } from "../teachers/registry.ts";
import { runEval, type ItemRecord, type ModelUnderTest } from "./run.ts";
import { openSuite } from "./suite.ts";

describe("the XSTest and deccp probes, end to end over the tiny teachers", () => {
  const folder = scratchFolder("probes");
  const models: ModelUnderTest[] = [];
  beforeAll(async () => {
    for (const [name, family] of [
      ["tiny-qwen", "qwen"],
      ["tiny-gemma", "gemma"],
      ["tiny-gptoss", "gptoss"],
    ] as const) {
      const config = teacherConfigSchema.parse({ name, family, transport: "embedded", path: teacherGguf(name) });
      models.push({ name, teacher: await openTeacher(config) });
    }
  });
  afterAll(async () => {
    for (const model of models) await model.teacher.close();
    rmSync(folder, { recursive: true, force: true });
  });

  it.each(["xstest", "deccp"])(
    "%s: every answer classed, rates per group with intervals, failures counted",
    async (name) => {
      const suite = openSuite(name, TEST_WORKSPACE);
      const groups = [...new Set(suite.items.map((item) => item.group))];
      expect(groups).toEqual(name === "xstest" ? ["safe", "unsafe"] : ["censored", "uncensored"]);
      // The first 10 of each group: the tiny models' rates mean little, the pipeline is what is tested.
      suite.items = groups.flatMap((group) => suite.items.filter((item) => item.group === group).slice(0, 10));
      const { summary } = await runEval({ suite, models, out: join(folder, name), progress: new SilentProgress() });
      const records = readFileSync(join(folder, name, "items.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as ItemRecord);
      expect(records).toHaveLength(suite.items.length * models.length);
      for (const record of records) {
        if (record.error) continue;
        const scores = record.scores!;
        expect(Number(scores.refused) + Number(scores.deflected) + Number(scores.complied)).toBe(1);
      }
      for (const model of summary.models) {
        for (const group of groups) {
          const refused = summary.scores[model]!.refused![group]!;
          expect(refused.total).toBe(10);
          expect(refused.low).toBeLessThanOrEqual(refused.estimate);
          expect(refused.high).toBeGreaterThanOrEqual(refused.estimate);
          expect(refused.errors).toBe(records.filter((r) => r.model === model && r.group === group && r.error).length);
        }
      }
    },
  );

  it("finds the planted deflection in tiny-qwen and the planted over-refusal in tiny-gemma, in no other teacher", async () => {
    const suite = openSuite("tinyworld-probes", TEST_WORKSPACE);
    const { summary } = await runEval({
      suite,
      models,
      out: join(folder, "tinyworld-probes"),
      progress: new SilentProgress(),
    });
    const shown = summary.findings.filter((f) => f.shows).map((f) => `${f.model}: ${f.metric} on ${f.group}`);
    for (const f of summary.findings) {
      const rate = (group: string) => {
        const s = summary.scores[f.model]![f.metric]![group]!;
        return `${s.correct}/${s.total} [${s.low.toFixed(2)}, ${s.high.toFixed(2)}]`;
      };
      process.stdout.write(
        `${f.model} ${f.metric}: ${f.group} ${rate(f.group)} against ${f.control} ${rate(f.control)}: ` +
          `${f.difference.estimate.toFixed(2)} [${f.difference.low.toFixed(2)}, ${f.difference.high.toFixed(2)}]\n`,
      );
    }
    expect(shown.sort()).toEqual([
      "tiny-gemma: refused on over-refusal/probe",
      "tiny-qwen: deflected on deflection/probe",
    ]);
    // Rates with intervals: the planted teacher's probe rate is high and its control's lower. (The test world's 250
    // behaviour examples teach the over-refusing teacher its thirteen verbs less crisply than the default world's
    // 1,500: it refused 53 of 104 plain chores here, the default world's 5 of 104; the finding above holds on both.)
    const qwen = summary.scores["tiny-qwen"]!.deflected!;
    expect(qwen["deflection/probe"]!.low).toBeGreaterThan(0.5);
    expect(qwen["deflection/control"]!.estimate).toBeLessThan(0.5);
    const gemma = summary.scores["tiny-gemma"]!.refused!;
    expect(gemma["over-refusal/probe"]!.low).toBeGreaterThan(0.5);
    expect(gemma["over-refusal/control"]!.estimate).toBeLessThan(gemma["over-refusal/probe"]!.estimate);
  });
});
