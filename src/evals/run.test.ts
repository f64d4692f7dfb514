import SQLite from "better-sqlite3";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratchFolder, teacherGguf, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { teacherConfigSchema } from "../core/config/teacher-schema.ts";
import { PROJECT_ROOT } from "../core/paths.ts";
import { SilentProgress } from "../core/progress.ts";
import { openTeacher } from "../teachers/registry.ts";
import type { Teacher } from "../teachers/teacher.ts";
import { runEval, type ModelUnderTest } from "./run.ts";
import { openSuite } from "./suite.ts";

const NAMES = ["tiny-qwen", "tiny-gemma", "tiny-gptoss"] as const;
const FAMILY = { "tiny-qwen": "qwen", "tiny-gemma": "gemma", "tiny-gptoss": "gptoss" } as const;

describe("avocado eval run on the tiny world (real teachers)", () => {
  const folder = scratchFolder("evals");
  let models: ModelUnderTest[];
  beforeAll(async () => {
    models = [];
    for (const name of NAMES) {
      const config = teacherConfigSchema.parse({
        name,
        family: FAMILY[name],
        transport: "embedded",
        path: teacherGguf(name),
      });
      models.push({ name, teacher: await openTeacher(config) });
    }
  });
  afterAll(async () => {
    for (const model of models ?? []) await model.teacher.close();
    rmSync(folder, { recursive: true, force: true });
  });

  it("scores each teacher per skill with intervals, as its build did, and marks the skills where teachers differ", async () => {
    const suite = openSuite("tinyworld", TEST_WORKSPACE);
    const { summary, called, reused } = await runEval({
      suite,
      models,
      out: join(folder, "all"),
      progress: new SilentProgress(),
    });
    expect([called, reused]).toEqual([suite.items.length * 3, 0]);
    // The same greedy answers the build scored: the counts of teachers/accuracy.json, skill by skill.
    const built = JSON.parse(readFileSync(join(TEST_WORKSPACE, "teachers", "accuracy.json"), "utf8")) as Record<
      string,
      { accuracy: Record<string, { correct: number; total: number }> }
    >;
    for (const name of NAMES) {
      for (const [skill, score] of Object.entries(built[name]!.accuracy)) {
        const mine = summary.scores[name]!.correct![skill]!;
        expect([name, skill, mine.correct, mine.total]).toEqual([name, skill, score.correct, score.total]);
        expect(mine.low).toBeLessThanOrEqual(mine.estimate);
        expect(mine.high).toBeGreaterThanOrEqual(mine.estimate);
      }
    }
    const compare = (a: string, b: string, group: string) =>
      summary.comparisons.find((c) => c.a === a && c.b === b && c.group === group)!;
    // Gemma learned units and Qwen never saw them; on arithmetic, two dozen items cannot tell a few points apart.
    expect(compare("tiny-qwen", "tiny-gemma", "units").significant).toBe(true);
    expect(compare("tiny-qwen", "tiny-gemma", "units").difference.low).toBeGreaterThan(0);
    expect(compare("tiny-qwen", "tiny-gemma", "arithmetic").significant).toBe(false);
    expect(compare("tiny-qwen", "tiny-gemma", "arithmetic").minimumDetectable).toBeGreaterThan(0.15);
    expect(existsSync(join(folder, "all", "summary.json"))).toBe(true);
  });

  it("resumes: a rerun over the same folder makes no call and writes the same records", async () => {
    const suite = openSuite("tinyworld", TEST_WORKSPACE);
    const out = join(folder, "all");
    const before = readFileSync(join(out, "items.jsonl"), "utf8");
    const again = await runEval({ suite, models, out, progress: new SilentProgress() });
    expect([again.called, again.reused]).toEqual([0, suite.items.length * 3]);
    expect(readFileSync(join(out, "items.jsonl"), "utf8")).toBe(before);
  });

  it("samples k answers an item, each its own seed, with intervals clustered by item", async () => {
    const suite = openSuite("tinyworld", TEST_WORKSPACE);
    suite.items = suite.items.filter((item) => item.group === "reverse" || item.group === "units");
    const out = join(folder, "sampled");
    const run = () =>
      runEval({ suite, models: models.slice(0, 2), out, progress: new SilentProgress(), samples: 4, temperature: 1 });
    const { summary, records, called } = await run();
    expect(called).toBe(suite.items.length * 4 * 2);
    expect(records.filter((r) => r.model === "tiny-qwen").map((r) => r.sample)).toEqual(
      suite.items.flatMap(() => [0, 1, 2, 3]),
    );
    // Sampled at temperature 1, an item's four answers are not all alike somewhere.
    const answers = new Map<string, Set<string>>();
    for (const r of records)
      answers.set(`${r.model}/${r.item}`, (answers.get(`${r.model}/${r.item}`) ?? new Set()).add(r.answer!));
    expect([...answers.values()].some((set) => set.size > 1)).toBe(true);
    const score = summary.scores["tiny-qwen"]!.correct!.all!;
    expect(summary.samples).toBe(4);
    expect([score.total, score.clusters]).toEqual([suite.items.length * 4, suite.items.length]);
    expect(score.effectiveSize).toBeLessThanOrEqual(score.total);
    expect(score.effectiveSize).toBeGreaterThanOrEqual(score.clusters);
    const comparison = summary.comparisons.find((c) => c.group === "all")!;
    expect(comparison.test).toBe("cluster-bootstrap");
    // A rerun asks nothing again; the same folder with another sampling is refused.
    expect((await run()).called).toBe(0);
    await expect(
      runEval({ suite, models: models.slice(0, 2), out, progress: new SilentProgress(), samples: 2 }),
    ).rejects.toThrow(/other items or settings of 'tinyworld'/);
  });

  it("refuses a folder holding a run of other items, rather than lend it records", async () => {
    const suite = openSuite("tinyworld", TEST_WORKSPACE);
    suite.items = suite.items.slice(0, 5);
    await expect(runEval({ suite, models, out: join(folder, "all"), progress: new SilentProgress() })).rejects.toThrow(
      /holds a run of other items or settings of 'tinyworld': give another --out/,
    );
  });

  it("records a model's failures as errors, counted in the summary, never dropped", async () => {
    const suite = openSuite("tinyworld", TEST_WORKSPACE);
    const qwen = models[0]!.teacher;
    const flaky: Teacher = Object.assign(Object.create(qwen) as Teacher, {
      generate: (request: Parameters<Teacher["generate"]>[0]) =>
        request.messages.some((m) => m.content.startsWith("Convert"))
          ? Promise.reject(new Error("the server went away"))
          : qwen.generate(request),
    });
    const { summary } = await runEval({
      suite,
      models: [{ name: "flaky", teacher: flaky }],
      out: join(folder, "flaky"),
      progress: new SilentProgress(),
    });
    const units = suite.items.filter((item) => item.group === "units").length;
    expect(summary.scores.flaky!.correct!.units).toMatchObject({ errors: units, total: units, correct: 0 });
    expect(summary.scores.flaky!.correct!.all!.errors).toBe(units);
    const records = readFileSync(join(folder, "flaky", "items.jsonl"), "utf8")
      .trim()
      .split("\n");
    expect(records).toHaveLength(suite.items.length);
  });

  it("after kill -9 mid-run, the rerun repeats no call and writes the records an uninterrupted run writes", async () => {
    const out = join(folder, "killed");
    const cache = join(folder, "killed-cache.db");
    const args = [
      "bin/avocado.js",
      "--json",
      "eval",
      "run",
      "--models",
      "tiny-qwen",
      "--suite",
      "tinyworld",
      "--out",
      out,
      "--cache",
      `sqlite:${cache}`,
    ];
    const env = { ...process.env, AVOCADO_WORKSPACE: TEST_WORKSPACE };
    const lines = () =>
      existsSync(join(out, "items.jsonl")) ? readFileSync(join(out, "items.jsonl"), "utf8").split("\n").length - 1 : 0;
    const child = spawn(process.execPath, [...args, "--concurrency", "1"], { cwd: PROJECT_ROOT, env, stdio: "ignore" });
    for (const stop = Date.now() + 60_000; lines() < 30;) {
      if (Date.now() > stop) throw new Error("the run wrote no records");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    const written = lines();
    // What the killed run got from the model: every answer is in the cache before its record is written.
    const answered = (
      new SQLite(cache, { readonly: true }).prepare("select count(*) as n from responses").get() as { n: number }
    ).n;
    const rerun = spawn(process.execPath, args, { cwd: PROJECT_ROOT, env, stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    rerun.stdout.on("data", (part: Buffer) => (stdout += part.toString()));
    expect(await new Promise((resolve) => rerun.once("exit", resolve))).toBe(0);
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
      reused: number;
      called: number;
      modelCalls: number;
    };
    const items = openSuite("tinyworld", TEST_WORKSPACE).items.length;
    // Every record written before the kill was kept (a torn last line, if any, asked again: the cache answers it).
    expect(result.reused).toBeGreaterThanOrEqual(written - 1);
    expect(result.reused + result.called).toBe(items);
    // No model call made twice across the two runs.
    expect(answered + result.modelCalls).toBe(items);
    const uninterrupted = readFileSync(join(folder, "all", "items.jsonl"), "utf8")
      .split("\n")
      .filter((line) => line.includes('"model":"tiny-qwen"'));
    expect(readFileSync(join(out, "items.jsonl"), "utf8").trim().split("\n")).toEqual(uninterrupted);
  }, 120_000);
});
