// bench/trainer: tokens/s of Avocado's trainer vs a minimal reference PyTorch loop,
// same model, same batches, same machine, same run (interleaved rounds, medians).
import { spawnSync } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { writeJsonAtomic } from "../../src/core/atomic-write.ts";
import { PROJECT_ROOT, TRAINER_ROOT } from "../../src/core/paths.ts";
import { SilentProgress } from "../../src/core/progress.ts";
import { runTrainer, type TrainJob } from "../../src/train/launcher.ts";
import { teacherArchitecture } from "../../src/tinyworld/teacher-specs.ts";
import { PYTHON } from "../../test/fixtures.ts";
import { benchWorld, median, verdict } from "../shared.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const STEPS = Number(process.env.BENCH_STEPS ?? 120);

const workspace = await benchWorld();
const scratch = join(PROJECT_ROOT, ".avocado", "bench", "trainer");
await rm(scratch, { recursive: true, force: true });
await mkdir(scratch, { recursive: true });

const job = (out: string): TrainJob => ({
  shards: join(workspace, "teachers", "tiny-qwen", "train", "shards"),
  out,
  architecture: teacherArchitecture(128),
  optimization: {
    steps: STEPS,
    batchSize: 32,
    gradientAccumulation: 1,
    learningRate: 3e-3,
    minLearningRate: 3e-4,
    warmupSteps: 10,
    weightDecay: 0.01,
    gradientClip: 1,
    checkpointEvery: 100,
  },
  seed: 1,
  threads: 1,
});

const ours: number[] = [];
const reference: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const out = join(scratch, `ours-${round}`);
  const result = await runTrainer(job(out), { python: PYTHON, label: "bench", progress: new SilentProgress() });
  ours.push(result.tokensPerSecond ?? 0);

  const jobPath = join(scratch, `reference-${round}.json`);
  await writeJsonAtomic(jobPath, job(join(scratch, `reference-${round}`)));
  const baseline = spawnSync(PYTHON, [join(PROJECT_ROOT, "bench", "trainer", "reference_loop.py"), jobPath], { env: { ...process.env, PYTHONPATH: TRAINER_ROOT, OMP_NUM_THREADS: "1" }, encoding: "utf8" });
  if (baseline.status !== 0) throw new Error(`reference loop failed: ${baseline.stderr}`);
  reference.push((JSON.parse(baseline.stdout.trim().split("\n").at(-1) as string) as { tokensPerSecond: number }).tokensPerSecond);
  process.stdout.write(`round ${round + 1}: trainer ${ours.at(-1)?.toFixed(0)} tok/s, reference ${reference.at(-1)?.toFixed(0)} tok/s\n`);
}
const ratio = median(ours) / median(reference);
process.stdout.write(`model: 2 layers, d=128, vocab ${"tiny-qwen (trimmed Qwen3)"}, batch 32, ${STEPS} steps, 1 torch thread\n`);
process.stdout.write(`trainer median ${median(ours).toFixed(0)} tok/s; reference loop median ${median(reference).toFixed(0)} tok/s\n`);
process.stdout.write(`${verdict("trainer / reference tokens/s", ratio, 0.95)}\n`);
await rm(scratch, { recursive: true, force: true });
