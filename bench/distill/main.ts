// bench/distill: the distillation engine against its targets, each measured in this run.
// 1. Rebuilding a dataset from a warm response cache: records per second (target ≥ 20,000). The cache is filled first
//    with answers to GSM8K train (7,473 prompts × 3 answerers, so 22,419 answers); the rebuild asks it for every one.
// 2. Orchestration overhead against driving the engine directly for the same calls (target ≤ 5 %): the test world's
//    train prompts through tiny-gemma, one call at a time, alternated, medians of 4.
// 3. Log-prob capture on those answers: bytes a token (target ≤ 100 at k = 20) and the largest error (≤ 0.01).
//
//   npm run bench:distill
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { distillSchema } from "../../src/core/config/distill-schema.ts";
import { SilentProgress } from "../../src/core/progress.ts";
import { cachedTeacher, ResponseCache } from "../../src/evals/cache.ts";
import { runDistill, type DistillTeacherRun } from "../../src/distill/run.ts";
import type { Teacher, TeacherRequest, TeacherResponse } from "../../src/teachers/teacher.ts";
import { median } from "../shared.ts";

const folder = mkdtempSync(join(tmpdir(), "bench-distill-"));
const progress = new SilentProgress();
let failed = false;

// 1. Warm-cache rebuild. The answerer is a stand-in (the rebuild never calls it: every answer is in the cache).
const answerer = (name: string, calls: { n: number }): Teacher =>
  ({
    name,
    family: "generic",
    capabilities: {
      streaming: false,
      logprobs: false,
      maxTopLogprobs: 0,
      score: false,
      reasoning: false,
      tokenIds: "engine",
    },
    generate: async (request: TeacherRequest): Promise<TeacherResponse> => {
      calls.n++;
      const question = request.messages.at(-1)!.content;
      return {
        teacher: name,
        model: name,
        content: `The answer is ${question.length % 97}.\n#### ${question.length % 97}`,
        reasoning: "",
        usage: { promptTokens: 50, completionTokens: 12, reasoningTokens: 0 },
        finishReason: "stop",
        costMicros: 0,
        latencyMs: 0,
      } as unknown as TeacherResponse;
    },
  }) as Teacher;
const cache = await ResponseCache.open(`sqlite:${join(folder, "cache.db")}`);
const config = distillSchema.parse({
  sources: [{ builtIn: "gsm8k-train" }],
  teachers: ["a", "b", "c"].map((name) => ({ name, temperature: 0 })),
  curation: { decontaminate: { suites: [] }, probes: [] },
  logprobs: { topK: 0 },
  concurrency: 16,
});
const calls = { n: 0 };
const teachers = (): DistillTeacherRun[] =>
  config.teachers.map((t) => ({
    config: t,
    teacher: cachedTeacher(answerer(t.name, calls), `bench-${t.name}`, cache),
    family: "generic",
    licence: "apache-2.0",
    identity: `bench-${t.name}`,
  }));
const options = { config, workspace: folder, configFolder: folder, progress };
await runDistill({ ...options, teachers: teachers(), out: join(folder, "fill") });
const filled = calls.n;
const rebuilds: number[] = [];
let records = 0;
for (let run = 0; run < 3; run++) {
  const started = performance.now();
  const manifest = await runDistill({ ...options, teachers: teachers(), out: join(folder, `warm-${run}`) });
  rebuilds.push(performance.now() - started);
  records = manifest.teachers.reduce((sum, t) => sum + t.calls, 0);
}
const perSecond = records / (median(rebuilds) / 1000);
const rebuildPass = perSecond >= 20_000 && calls.n === filled;
failed ||= !rebuildPass;
process.stdout.write(
  `warm-cache rebuild: ${records} answers in ${(median(rebuilds) / 1000).toFixed(2)} s (median of 3) = ` +
    `${Math.round(perSecond)} records/s (target ≥ 20,000), ${calls.n - filled} calls made ${rebuildPass ? "PASS" : "FAIL"}\n`,
);
await cache.close();

// 2. Orchestration overhead on a real engine.
const { TEST_WORKSPACE, teacherGguf } = await import("../../test/fixtures.ts");
if (!existsSync(teacherGguf("tiny-gemma"))) {
  process.stdout.write("orchestration overhead: skipped (no test world; run npm test once to build it)\n");
} else {
  const { openTeacher } = await import("../../src/teachers/registry.ts");
  const { teacherConfigSchema } = await import("../../src/core/config/teacher-schema.ts");
  const { loadPrompts } = await import("../../src/distill/sources.ts");
  const { requestFor } = await import("../../src/distill/generate.ts");
  const teacherConfig = teacherConfigSchema.parse({
    name: "tiny-gemma",
    family: "gemma",
    transport: "embedded",
    path: teacherGguf("tiny-gemma"),
  });
  const teacher = await openTeacher(teacherConfig);
  const engine = (teacher.inner as import("../../src/teachers/embedded-teacher.ts").EmbeddedTeacher).engine;
  // The same calls on both paths: no log-prob scoring here (measured on its own below).
  const distill = distillSchema.parse({
    sources: [{ builtIn: "tinyworld", limit: 300 }],
    teachers: [{ name: "tiny-gemma", temperature: 0 }],
    curation: { decontaminate: { suites: [] }, probes: [] },
    logprobs: { topK: 0 },
    concurrency: 1,
  });
  const { prompts } = await loadPrompts(distill.sources, {
    workspace: TEST_WORKSPACE,
    configFolder: folder,
    badLines: "skip",
  });
  const direct: number[] = [];
  const orchestrated: number[] = [];
  for (let round = 0; round < 4; round++) {
    let started = performance.now();
    for (const prompt of prompts) {
      const request = requestFor(distill.teachers[0]!, prompt, 0);
      try {
        await engine.chat({
          messages: request.messages as { role: "user"; content: string }[],
          maxTokens: teacherConfig.maxTokens,
          temperature: 0,
          seed: request.seed,
        });
      } catch {
        // a prompt too long for the tiny context fails the same way on both paths
      }
    }
    direct.push(performance.now() - started);
    // A fresh cache each round: every call is made.
    const roundCache = await ResponseCache.open(`sqlite:${join(folder, `overhead-${round}.db`)}`);
    started = performance.now();
    await runDistill({
      config: distill,
      teachers: [
        {
          config: distill.teachers[0]!,
          teacher: cachedTeacher(teacher, `overhead-${round}`, roundCache),
          family: "gemma",
          licence: "Gemma Terms of Use",
          identity: "tiny-gemma",
        },
      ],
      workspace: TEST_WORKSPACE,
      configFolder: folder,
      out: join(folder, `overhead-${round}`),
      progress,
    });
    orchestrated.push(performance.now() - started);
    await roundCache.close();
  }
  // 3. Log-prob capture: bytes a token and the largest error, on the kept answers of the last round's cache.
  const captureCache = await ResponseCache.open(`sqlite:${join(folder, "overhead-3.db")}`);
  const captured = await runDistill({
    config: { ...distill, logprobs: { topK: 20 } },
    teachers: [
      {
        config: distill.teachers[0]!,
        teacher: cachedTeacher(teacher, "overhead-3", captureCache),
        family: "gemma",
        licence: "Gemma Terms of Use",
        identity: "tiny-gemma",
      },
    ],
    workspace: TEST_WORKSPACE,
    configFolder: folder,
    out: join(folder, "capture"),
    progress,
  });
  await captureCache.close();
  await teacher.close();
  const logprobs = captured.logprobs!;
  const capturePass = logprobs.bytesPerToken <= 100 && logprobs.largestError <= 0.01;
  failed ||= !capturePass;
  process.stdout.write(
    `log-probs: ${logprobs.records} records, ${logprobs.tokens} tokens at top ${logprobs.k}: ${logprobs.bytesPerToken} ` +
      `bytes a token (target ≤ 100), largest error ${logprobs.largestError.toFixed(4)} (target ≤ 0.01) ` +
      `${capturePass ? "PASS" : "FAIL"}\n`,
  );
  const ratio = median(orchestrated) / median(direct);
  const overheadPass = ratio <= 1.05;
  failed ||= !overheadPass;
  process.stdout.write(
    `orchestration overhead: ${prompts.length} prompts, direct ${(median(direct) / 1000).toFixed(2)} s, ` +
      `through avocado distill ${(median(orchestrated) / 1000).toFixed(2)} s: ratio ${ratio.toFixed(3)} ` +
      `(target ≤ 1.05) ${overheadPass ? "PASS" : "FAIL"}\n`,
  );
}
rmSync(folder, { recursive: true, force: true });
process.exitCode = failed ? 1 : 0;
