import { cp, readFile, rm, truncate } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PYTHON, scratchFolder, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { sha256File } from "../core/hash.ts";
import { SilentProgress } from "../core/progress.ts";
import { runTrainer, threadsPerProcess, type TrainJob } from "./launcher.ts";

const SHARDS = join(TEST_WORKSPACE, "teachers", "tiny-gemma", "train", "shards");
const scratch = scratchFolder("trainer");

function job(out: string, overrides: Partial<TrainJob> = {}): TrainJob {
  return {
    shards: SHARDS,
    out,
    architecture: {
      layers: 1,
      hidden: 32,
      heads: 2,
      kvHeads: 1,
      headDim: 16,
      ffn: 64,
      context: 128,
      ropeTheta: 10_000,
      rmsNormEps: 1e-6,
      tieEmbeddings: true,
    },
    optimization: {
      steps: 12,
      batchSize: 8,
      gradientAccumulation: 1,
      learningRate: 3e-3,
      minLearningRate: 3e-4,
      warmupSteps: 2,
      weightDecay: 0.01,
      gradientClip: 1,
      checkpointEvery: 1,
    },
    seed: 7,
    threads: 1,
    ...overrides,
  };
}

const options = { python: PYTHON, label: "test", progress: new SilentProgress() };

describe("PyTorch trainer", () => {
  afterAll(() => rm(scratch, { recursive: true, force: true }));

  it("is deterministic and resumes exactly after kill -9", async () => {
    const reference = await runTrainer(job(join(scratch, "reference")), options);
    expect(reference.history).toHaveLength(12);
    expect(reference.history.at(-1)![1]).toBeLessThan(reference.history[0]![1]);

    const again = await runTrainer(job(join(scratch, "again")), options);
    expect(again.history).toEqual(reference.history);

    const resumed = join(scratch, "resumed");
    const controller = new AbortController();
    await expect(
      runTrainer(job(resumed), {
        ...options,
        signal: controller.signal,
        onEvent: (event) => {
          if (event.event === "checkpoint" && event.step === 5) controller.abort();
        },
      }),
    ).rejects.toThrow(/trainer failed/);
    const result = await runTrainer(job(resumed), options);
    expect(result.events.find((e) => e.event === "resume")?.step).toBeGreaterThanOrEqual(5);
    const done = result.events.find((e) => e.event === "done") as unknown as { history: [number, number][] };
    expect(done.history).toEqual(reference.history);
    expect(await sha256File(join(resumed, "model.safetensors"))).toBe(
      await sha256File(join(scratch, "reference", "model.safetensors")),
    );
    expect(result.history).toEqual(reference.history);
    expect(JSON.parse(await readFile(join(resumed, "loss.json"), "utf8"))).toEqual(reference.history);
    expect(await readFile(join(resumed, "loss-curve.svg"), "utf8")).toMatch(/<svg/);
  });

  it("gives the same loss curve with 2 data-parallel processes as with 1 at the same global batch (|Δloss| ≤ 1e-4)", async () => {
    const single = await runTrainer(
      job(join(scratch, "single"), { optimization: { ...job("").optimization, steps: 8, checkpointEvery: 100 } }),
      options,
    );
    const parallel = await runTrainer(
      job(join(scratch, "parallel"), { optimization: { ...job("").optimization, steps: 8, checkpointEvery: 100 } }),
      { ...options, processes: 2 },
    );
    expect(parallel.events.find((e) => e.event === "start")?.processes).toBe(2);
    expect(parallel.history).toHaveLength(8);
    for (let i = 0; i < 8; i++)
      expect(Math.abs(parallel.history[i]![1] - single.history[i]![1])).toBeLessThanOrEqual(1e-4);
  });

  it("gives the same loss curve with gradient accumulation at the same global batch", async () => {
    const base = { ...job("").optimization, steps: 6, checkpointEvery: 100 };
    const whole = await runTrainer(job(join(scratch, "whole"), { optimization: base }), options);
    const accumulated = await runTrainer(
      job(join(scratch, "accumulated"), { optimization: { ...base, gradientAccumulation: 4 } }),
      options,
    );
    for (let i = 0; i < 6; i++)
      expect(Math.abs(accumulated.history[i]![1] - whole.history[i]![1])).toBeLessThanOrEqual(1e-4);
  });

  it("initialises from a Hugging Face Qwen3 folder", async () => {
    const fresh = await runTrainer(
      job(join(scratch, "fresh"), { optimization: { ...job("").optimization, steps: 1 } }),
      options,
    );
    const warm = await runTrainer(
      job(join(scratch, "warm"), {
        initFrom: join(scratch, "reference"),
        optimization: { ...job("").optimization, steps: 1 },
      }),
      options,
    );
    expect(warm.history[0]![1]).toBeLessThan(fresh.history[0]![1] - 0.5);
  });

  it("reports a crash with the file that caused it", async () => {
    const broken = join(scratch, "broken-shards");
    await cp(SHARDS, broken, { recursive: true });
    await truncate(join(broken, "tokens.bin"), 100);
    await expect(runTrainer(job(join(scratch, "crash"), { shards: broken }), options)).rejects.toThrow(
      /tokens\.bin: holds 25 values, index\.json says \d+ \(truncated\?\)/,
    );
    await expect(
      runTrainer(job(join(scratch, "crash2")), { ...options, python: "/nonexistent/python3" }),
    ).rejects.toThrow(/trainer failed/);
    const other = job(join(scratch, "reference"), { optimization: { ...job("").optimization, steps: 20 } });
    await expect(
      runTrainer({ ...other, architecture: { ...other.architecture, hidden: 64 } }, options),
    ).rejects.toThrow(/checkpoint\.pt: does not match this job's model/);
  });
});

describe("threadsPerProcess", () => {
  it("gives every process of every trainer running together a core, and never less than one thread", () => {
    expect(threadsPerProcess(2, 1, 2, 2)).toBe(1); // two trainers of two threads on two cores: one each
    expect(threadsPerProcess(4, 2, 1, 16)).toBe(4); // enough cores: the job's own count
    expect(threadsPerProcess(8, 2, 1, 8)).toBe(4);
    expect(threadsPerProcess(1, 4, 2, 2)).toBe(1);
  });
});
