// bench/evals: the eval statistics at the sizes a release gate meets. A paired bootstrap of 10,000 resamples over
// 10,000 items must take at most a second; the exact McNemar test and the Wilson intervals are printed beside it.
//
//   npm run bench:evals
import { SeededRandom } from "../../src/core/random.ts";
import { mcnemarExact, pairedBootstrap, wilson } from "../../src/evals/stats.ts";
import { median } from "../shared.ts";

const ITEMS = Number(process.env.BENCH_ITEMS ?? 10_000);
const RESAMPLES = Number(process.env.BENCH_RESAMPLES ?? 10_000);
const random = new SeededRandom(3);
const a: number[] = Array.from({ length: ITEMS }, () => (random.next() < 0.7 ? 1 : 0));
const b = a.map((value) => (random.next() < 0.1 ? 1 - value : value));

const times: number[] = [];
let result = pairedBootstrap(a, b, { resamples: RESAMPLES, seed: 1 });
for (let run = 0; run < 5; run++) {
  const started = performance.now();
  result = pairedBootstrap(a, b, { resamples: RESAMPLES, seed: run });
  times.push(performance.now() - started);
}
const seconds = median(times) / 1000;
const started = performance.now();
const exact = mcnemarExact(
  a.map((v) => v === 1),
  b.map((v) => v === 1),
);
const mcnemarMs = performance.now() - started;
process.stdout.write(
  `paired bootstrap, ${RESAMPLES} resamples over ${ITEMS} items: ${seconds.toFixed(3)} s (median of 5; target ≤ 1 s) ${seconds <= 1 ? "PASS" : "FAIL"}\n` +
    `  difference ${result.estimate.toFixed(4)} [${result.low.toFixed(4)}, ${result.high.toFixed(4)}]\n` +
    `exact McNemar on the same items: ${mcnemarMs.toFixed(1)} ms (p = ${exact.pValue.toPrecision(3)}); ` +
    `accuracy A ${JSON.stringify(
      wilson(
        a.reduce((s, v) => s + v, 0),
        ITEMS,
      ),
    )}\n`,
);
process.exitCode = seconds <= 1 ? 0 : 1;

// The harness's overhead: `runEval` through an embedded teacher against driving the engine directly, on the same
// items of the tiny world (greedy, the suite's max tokens, one call at a time), alternated, medians of 6.
const { TEST_WORKSPACE, teacherGguf } = await import("../../test/fixtures.ts");
const { existsSync } = await import("node:fs");
if (!existsSync(teacherGguf("tiny-qwen"))) {
  process.stdout.write("harness overhead: skipped (no test world; run npm test once to build it)\n");
} else {
  const { openTeacher } = await import("../../src/teachers/registry.ts");
  const { teacherConfigSchema } = await import("../../src/core/config/teacher-schema.ts");
  const { SilentProgress } = await import("../../src/core/progress.ts");
  const { openSuite } = await import("../../src/evals/suite.ts");
  const { runEval } = await import("../../src/evals/run.ts");
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const suite = openSuite("tinyworld", TEST_WORKSPACE);
  const teacher = await openTeacher(
    teacherConfigSchema.parse({
      name: "tiny-qwen",
      family: "qwen",
      transport: "embedded",
      path: teacherGguf("tiny-qwen"),
    }),
  );
  // The teacher's own engine, driven directly: one model in memory, so both paths run on the same context.
  const engine = (teacher.inner as import("../../src/teachers/embedded-teacher.ts").EmbeddedTeacher).engine;
  const direct: number[] = [];
  const harness: number[] = [];
  const runDirect = async () => {
    const started = performance.now();
    for (const item of suite.items) {
      await engine.chat({
        messages: item.messages as { role: "user"; content: string }[],
        maxTokens: suite.maxTokens,
        temperature: 0,
      });
    }
    direct.push(performance.now() - started);
  };
  const runHarness = async () => {
    const out = mkdtempSync(join(tmpdir(), "bench-evals-"));
    const started = performance.now();
    await runEval({
      suite,
      models: [{ name: "tiny-qwen", teacher }],
      out,
      concurrency: 1,
      progress: new SilentProgress(),
    });
    harness.push(performance.now() - started);
    rmSync(out, { recursive: true, force: true });
  };
  // Warmed up, then alternated (which goes first changes each round).
  await runDirect();
  await runHarness();
  direct.length = 0;
  harness.length = 0;
  for (let round = 0; round < 6; round++) {
    if (round % 2 === 0) {
      await runDirect();
      await runHarness();
    } else {
      await runHarness();
      await runDirect();
    }
  }
  const ratio = median(harness) / median(direct);
  process.stdout.write(
    `harness overhead on ${suite.items.length} tiny-world items: engine directly ${median(direct).toFixed(0)} ms, ` +
      `through eval run ${median(harness).toFixed(0)} ms; ratio ${ratio.toFixed(3)} (target ≤ 1.05) ${ratio <= 1.05 ? "PASS" : "FAIL"}\n`,
  );
  await teacher.close();
  if (ratio > 1.05) process.exitCode = 1;
}
