// bench/kd: the cost of knowledge distillation in Avocado's trainer, same run, interleaved rounds, medians:
//   a KD step (SFT + same- and cross-tokenizer KD at top-k 20) against an SFT step on the same batches (≤ 1.3×);
//   the trainer with KD against the plainest PyTorch loop with top-k KD (tokens/s, ≥ 0.95).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeJsonAtomic } from "../../src/core/atomic-write.ts";
import { studentSchema } from "../../src/core/config/student-schema.ts";
import { PROJECT_ROOT, TRAINER_ROOT } from "../../src/core/paths.ts";
import { SilentProgress } from "../../src/core/progress.ts";
import { prepareStudentData, runExamples } from "../../src/student/prepare.ts";
import { readDistillRun } from "../../src/student/run-data.ts";
import { DEFAULT_STUDENT_ARCHITECTURE } from "../../src/student/train-student.ts";
import { runTrainer, type TrainJob, type TrainResult } from "../../src/train/launcher.ts";
import { PYTHON } from "../../test/fixtures.ts";
import { benchWorld, median } from "../shared.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const STEPS = Number(process.env.BENCH_STEPS ?? 80);

const world = await benchWorld();
const folder = join(PROJECT_ROOT, ".avocado", "bench", "kd");
const workspace = join(folder, "ws");
mkdirSync(workspace, { recursive: true });
for (const part of ["teachers", "tinyworld"])
  if (!existsSync(join(workspace, part))) symlinkSync(join(world, part), join(workspace, part));
// 300 prompts of the test world through its three teachers, log-probs at top 20 (answers cached across runs).
writeFileSync(
  join(folder, "avocado.yaml"),
  `workspace: ws
tinyworld: { size: test, seed: 20261126 }
distill:
  sources: [{ builtIn: tinyworld, limit: 300 }]
  teachers: [{ name: tiny-qwen, temperature: 0 }, { name: tiny-gemma, temperature: 0 }, { name: tiny-gptoss, temperature: 0 }]
  curation: { probes: [] }
  logprobs: { topK: 20 }
`,
);
const distill = spawnSync(
  process.execPath,
  [join(PROJECT_ROOT, "bin", "avocado.js"), "-c", join(folder, "avocado.yaml"), "distill", "run", "--run", "bench"],
  { encoding: "utf8", cwd: folder },
);
if (distill.status !== 0) throw new Error(`distill failed: ${distill.stderr}`);

const run = readDistillRun(join(workspace, "runs", "distill", "bench"));
const student = studentSchema.parse({});
const shards = join(folder, "shards");
const architecture = { ...DEFAULT_STUDENT_ARCHITECTURE, context: 256 };
const data = await prepareStudentData({
  examples: runExamples(run, student),
  config: student,
  architecture,
  k: run.k,
  folder: shards,
  extraPrompts: [],
  progress: new SilentProgress(),
});

const job = (out: string, kd: boolean): TrainJob => ({
  shards,
  out,
  architecture,
  optimization: {
    steps: STEPS,
    batchSize: 32,
    gradientAccumulation: 1,
    learningRate: 3e-3,
    minLearningRate: 3e-4,
    warmupSteps: 10,
    weightDecay: 0.01,
    gradientClip: 1,
    checkpointEvery: 1000,
  },
  seed: 1,
  threads: 1,
  loss: { ...student.loss, ...(kd ? {} : { kd: 0, crossKd: 0 }) },
});
const options = { python: PYTHON, label: "bench", progress: new SilentProgress() };
const sft: number[] = [];
const kd: number[] = [];
const reference: number[] = [];
// Per step, the same batch in every run (same seed): wall-time ratios paired by step, whose median a passing stall of
// this shared machine does not move the way it moves a run's total throughput.
const kdOverSft: number[] = [];
const referenceOverKd: number[] = [];
const stepSeconds = (result: TrainResult) =>
  result.events.filter((e) => e.event === "step").map((e) => Number(e.seconds));
for (let round = 0; round < ROUNDS; round++) {
  rmSync(join(folder, "runs"), { recursive: true, force: true });
  const sftRun = await runTrainer(job(join(folder, "runs", `sft-${round}`), false), options);
  const kdRun = await runTrainer(job(join(folder, "runs", `kd-${round}`), true), options);
  sft.push(sftRun.tokensPerSecond ?? 0);
  kd.push(kdRun.tokensPerSecond ?? 0);
  const jobPath = join(folder, "runs", `reference-${round}.json`);
  await writeJsonAtomic(jobPath, job(join(folder, "runs", `reference-${round}`), true));
  const baseline = spawnSync(PYTHON, [join(PROJECT_ROOT, "bench", "kd", "reference_kd_loop.py"), jobPath], {
    env: { ...process.env, PYTHONPATH: TRAINER_ROOT, OMP_NUM_THREADS: "1" },
    encoding: "utf8",
  });
  if (baseline.status !== 0) throw new Error(`reference loop failed: ${baseline.stderr}`);
  const loop = JSON.parse(baseline.stdout.trim().split("\n").at(-1)!) as {
    tokensPerSecond: number;
    stepSeconds: number[];
  };
  reference.push(loop.tokensPerSecond);
  const [sftSteps, kdSteps] = [stepSeconds(sftRun), stepSeconds(kdRun)];
  // The first steps warm caches and allocators up in every run alike: left out (but one step always counts).
  for (let i = Math.min(5, STEPS - 1); i < STEPS; i++) {
    kdOverSft.push(kdSteps[i]! / sftSteps[i]!);
    referenceOverKd.push(loop.stepSeconds[i]! / kdSteps[i]!);
  }
  process.stdout.write(
    `round ${round + 1}: SFT ${sft.at(-1)!.toFixed(0)} tok/s, KD ${kd.at(-1)!.toFixed(0)} tok/s, reference KD loop ${reference.at(-1)!.toFixed(0)} tok/s\n`,
  );
}
const stepRatio = median(kdOverSft);
const loopRatio = median(referenceOverKd);
process.stdout.write(
  `data: ${data.sequences} records of 3 teachers, KD rows ${data.kdRows.same} same tokenizer + ${data.kdRows.crossExact} mapped + ${data.kdRows.crossSorted} ULD, top-k ${run.k}\n` +
    `model: ${architecture.layers} layers, d=${architecture.hidden}, vocab ${data.vocabulary.size}, batch 32, ${STEPS} steps, 1 torch thread\n` +
    `whole runs (medians of rounds): KD / SFT tokens/s ${(median(kd) / median(sft)).toFixed(3)}, ` +
    `trainer with KD / reference loop tokens/s ${(median(kd) / median(reference)).toFixed(3)}\n` +
    `KD step / SFT step (median of paired steps): ratio ${stepRatio.toFixed(3)} (target ≤ 1.3) ${stepRatio <= 1.3 ? "PASS" : "FAIL"}\n` +
    `trainer with KD / reference KD loop tokens/s (median of paired steps): ratio ${loopRatio.toFixed(3)} (target ≥ 0.95) ${loopRatio >= 0.95 ? "PASS" : "FAIL"}\n`,
);
rmSync(join(folder, "runs"), { recursive: true, force: true });
