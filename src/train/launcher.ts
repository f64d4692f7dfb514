import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { availableParallelism } from "node:os";
import { createInterface } from "node:readline";
import { writeFileAtomic, writeJsonAtomic } from "../core/atomic-write.ts";
import type { Architecture, Optimization } from "../core/config/schema.ts";
import { EngineError } from "../core/errors.ts";
import { sha256 } from "../core/hash.ts";
import { TRAINER_ROOT } from "../core/paths.ts";
import type { Progress } from "../core/progress.ts";
import { lossCurveSvg } from "./loss-curve.ts";

/** What the Python trainer reads (trainer/avocado_trainer/train.py). */
export interface TrainJob {
  shards: string;
  out: string;
  architecture: Architecture;
  optimization: Optimization;
  seed: number;
  threads: number;
  initFrom?: string;
  padId?: number;
  bosId?: number;
  eosId?: number;
  /** "cpu" (default) or "cuda" (one GPU per rank under --processes). */
  device?: "cpu" | "cuda";
  /** The loss mix (student.loss): SFT and KD weights, divergence, temperature, tail; absent: SFT only. */
  loss?: Record<string, number | string>;
  /** "ddp" (default) or "fsdp" (parameters and optimizer state sharded across processes). */
  parallel?: "ddp" | "fsdp";
  /** Stop (after checkpointing) once this step is reached; tests use it. */
  stopAfterSteps?: number;
}

export interface TrainerEvent {
  event: string;
  step?: number;
  steps?: number;
  loss?: number;
  tokensPerSecond?: number;
  message?: string;
  [key: string]: unknown;
}

export interface TrainResult {
  history: [number, number][];
  finalLoss: number | undefined;
  tokensPerSecond: number | undefined;
  seconds: number;
  events: TrainerEvent[];
}

export interface TrainOptions {
  python: string;
  label: string;
  progress: Progress;
  /** Data-parallel processes (gloo); 1 runs a single process. */
  processes?: number;
  onEvent?: (event: TrainerEvent) => void;
  signal?: AbortSignal;
  /** Trainers this one runs beside (the cores are shared between them); default 1. */
  sharing?: number;
}

/**
 * Torch threads per process: the job's, capped so that every process of every trainer running together has a core.
 * More threads than cores made the tiny models' training four times slower here (two trainers of two threads each on
 * two cores), not faster.
 */
export function threadsPerProcess(threads: number, processes: number, sharing = 1, cores = availableParallelism()) {
  return Math.max(1, Math.min(threads, Math.floor(cores / Math.max(1, processes * sharing))));
}

/**
 * Runs the PyTorch trainer on a job, turning its JSON-lines events into a
 * progress bar and, at the end, a loss curve (`loss-curve.svg`, `loss.json`)
 * beside the model. Under `processes > 1` it starts the ranks itself
 * (RANK, WORLD_SIZE, and a rendezvous file), which works on torch 1.13 and 2.x.
 */
export async function runTrainer(job: TrainJob, options: TrainOptions): Promise<TrainResult> {
  const jobPath = join(job.out, "job.json");
  const processes = options.processes ?? 1;
  job = { ...job, threads: threadsPerProcess(job.threads, processes, options.sharing) };
  await writeJsonAtomic(jobPath, job);
  // The ranks meet through this file (the trainer's FileStore): unlike a port picked free beforehand, no other launch
  // can take it in between.
  const rendezvous = processes > 1 ? join(job.out, `rendezvous-${randomUUID()}`) : undefined;
  const started = Date.now();
  const events: TrainerEvent[] = [];
  const history: [number, number][] = [];
  const stderrTail: string[] = [];
  let task: ReturnType<Progress["task"]> | undefined;
  let lastRate: number | undefined;

  const children: ChildProcess[] = [];
  for (let rank = 0; rank < processes; rank++) {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PYTHONPATH: [TRAINER_ROOT, process.env.PYTHONPATH].filter(Boolean).join(":"),
      PYTHONUNBUFFERED: "1",
      OMP_NUM_THREADS: String(job.threads),
    };
    if (processes > 1)
      Object.assign(env, {
        AVOCADO_RENDEZVOUS: rendezvous,
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: String(processes),
      });
    children.push(
      spawn(options.python, ["-m", "avocado_trainer.train", "--job", jobPath], {
        env,
        stdio: ["ignore", "pipe", "pipe"],
        signal: options.signal,
        killSignal: "SIGKILL",
      }),
    );
  }

  const exits = children.map(
    (child, rank) =>
      new Promise<number>((resolveExit) => {
        child.on("error", (error) => {
          stderrTail.push(`rank ${rank}: ${error.message}`);
          resolveExit(-1);
        });
        child.on("close", (code, signal) => {
          const status = code ?? (signal ? 128 : -1);
          // A dead rank leaves the others waiting in a collective forever: stop them too.
          if (status !== 0)
            for (const other of children) if (other !== child && other.exitCode === null) other.kill("SIGKILL");
          resolveExit(status);
        });
        createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) => {
          stderrTail.push(line);
          if (stderrTail.length > 40) stderrTail.shift();
        });
        if (rank !== 0) {
          child.stdout?.resume();
          return;
        }
        createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
          let event: TrainerEvent;
          try {
            event = JSON.parse(line) as TrainerEvent;
          } catch {
            stderrTail.push(line);
            return;
          }
          events.push(event);
          options.onEvent?.(event);
          if (event.event === "start") task = options.progress.task(options.label, Number(event.steps), "steps");
          if (event.event === "step" && event.step !== undefined && event.loss !== undefined) {
            history.push([event.step, event.loss]);
            lastRate = event.tokensPerSecond;
            task?.update(event.step, { loss: event.loss.toFixed(3), "tok/s": Math.round(event.tokensPerSecond ?? 0) });
          }
        });
      }),
  );
  const codes = await Promise.all(exits);
  if (rendezvous) rmSync(rendezvous, { force: true });
  const failed = codes.findIndex((code) => code !== 0);
  if (failed >= 0) {
    task?.finish({ status: "failed" });
    const error = events.find((e) => e.event === "error");
    const detail = error?.message ?? stderrTail.slice(-8).join("\n");
    throw new EngineError(`the trainer failed (rank ${failed}, exit ${codes[failed]}) on job ${jobPath}: ${detail}`);
  }
  task?.finish({ loss: history.at(-1)?.[1].toFixed(3) ?? "n/a" });
  const done = events.find((e) => e.event === "done");
  // A resumed run's events start mid-way; the done event carries the whole curve from the checkpoint.
  const fullHistory = Array.isArray(done?.history) ? (done.history as [number, number][]) : history;
  if (done) {
    await writeJsonAtomic(join(job.out, "loss.json"), fullHistory);
    await writeFileAtomic(join(job.out, "loss-curve.svg"), lossCurveSvg(options.label, fullHistory));
  }
  return {
    history: fullHistory,
    finalLoss: fullHistory.at(-1)?.[1],
    tokensPerSecond: lastRate,
    seconds: (Date.now() - started) / 1000,
    events,
  };
}

let trainerHash: string | undefined;

/** The trainer's own code is part of every build key: changing it rebuilds the teachers. */
export function trainerCodeHash(): string {
  if (trainerHash === undefined) {
    const folder = join(TRAINER_ROOT, "avocado_trainer");
    const files = readdirSync(folder)
      .filter((f) => f.endsWith(".py"))
      .sort();
    trainerHash = sha256(files.map((f) => `${f}\n${readFileSync(join(folder, f), "utf8")}`).join("\n"));
  }
  return trainerHash;
}
