import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveSchema } from "../src/core/config/serve-schema.ts";
import { teacherConfigSchema } from "../src/core/config/teacher-schema.ts";
import { SilentProgress } from "../src/core/progress.ts";
import { runEval, type ItemRecord, type ModelUnderTest } from "../src/evals/run.ts";
import { openSuite } from "../src/evals/suite.ts";
import { startApi, type RunningApi } from "../src/serve/server.ts";
import { openTeacher } from "../src/teachers/registry.ts";
import { scratchFolder, teacherGguf, TEST_WORKSPACE } from "./fixtures.ts";
import { freshStore } from "./stores.ts";

/**
 * What customers get is what is tested: the paid API serving a tiny teacher, evaluated as a model through its URL and
 * a key (an HTTP teacher of the OpenAI dialect), scores exactly what the same GGUF scores evaluated directly.
 */
describe("the paid API evaluated as a model", () => {
  const folder = scratchFolder("eval-api");
  let api: RunningApi;
  let drop: () => Promise<void>;
  const models: ModelUnderTest[] = [];

  beforeAll(async () => {
    const fresh = await freshStore("sqlite", "eval_api");
    drop = fresh.drop;
    await fresh.store.close();
    const config = serveSchema.parse({
      port: 0,
      store: fresh.url,
      models: [
        {
          name: "avocado-qwen",
          gguf: teacherGguf("tiny-qwen"),
          price: { inputPerMillion: 100, outputPerMillion: 100 },
          sequences: 2,
        },
      ],
    });
    api = await startApi({ config, workspace: "/nonexistent" });
    const { key } = await api.store.createKey({ org: "evals", name: "eval" });
    await api.store.grant("evals", 100_000_000, "evals");
    const paid = teacherConfigSchema.parse({
      name: "paid-api",
      family: "qwen",
      transport: "http",
      engine: "openai",
      baseUrl: `${api.url}/v1`,
      model: "avocado-qwen",
      apiKeyEnv: "AVOCADO_EVAL_KEY",
    });
    models.push({ name: "paid-api", teacher: await openTeacher(paid, { environment: { AVOCADO_EVAL_KEY: key } }) });
    const direct = teacherConfigSchema.parse({
      name: "tiny-qwen",
      family: "qwen",
      transport: "embedded",
      path: teacherGguf("tiny-qwen"),
    });
    models.push({ name: "tiny-qwen", teacher: await openTeacher(direct) });
  });
  afterAll(async () => {
    for (const model of models) await model.teacher.close();
    await api?.close();
    await drop?.();
    rmSync(folder, { recursive: true, force: true });
  });

  it("answers every item of the tiny world as the GGUF does, and is charged for it", async () => {
    const suite = openSuite("tinyworld", TEST_WORKSPACE);
    const { summary } = await runEval({ suite, models, out: folder, progress: new SilentProgress() });
    const records = readFileSync(join(folder, "items.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as ItemRecord);
    const answers = (model: string) => records.filter((r) => r.model === model).map((r) => [r.item, r.answer, r.error]);
    expect(answers("paid-api")).toEqual(answers("tiny-qwen"));
    expect(summary.scores["paid-api"]).toEqual(summary.scores["tiny-qwen"]);
    const all = summary.comparisons.find((c) => c.group === "all")!;
    expect(all.difference.estimate).toBe(0);
    // Every item went through the meter.
    const usage = await api.store.usage();
    expect(usage.reduce((sum, row) => sum + row.requests, 0)).toBe(suite.items.length);
  });
});
