import { join } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "../core/atomic-write.ts";
import type { AvocadoConfig, Architecture, Optimization } from "../core/config/schema.ts";
import type { StudentConfig } from "../core/config/student-schema.ts";
import { InputError } from "../core/errors.ts";
import { sha256, stableStringify } from "../core/hash.ts";
import type { Progress } from "../core/progress.ts";
import { openSuite } from "../evals/suite.ts";
import { exportModel, ggufFileName } from "../export/export-model.ts";
import { lossCurveSvg } from "../train/loss-curve.ts";
import { runTrainer, trainerCodeHash, type TrainResult } from "../train/launcher.ts";
import { resetUnlessSame } from "./job-key.ts";
import { onPolicyRound } from "./on-policy.ts";
import { prepareStudentData, runExamples, type PreparedData } from "./prepare.ts";
import { readDistillRun, type DistillRunData } from "./run-data.ts";
import { inheritedLicences } from "./licences.ts";

export const DEFAULT_STUDENT_ARCHITECTURE = {
  layers: 4,
  hidden: 128,
  heads: 4,
  kvHeads: 2,
  headDim: 32,
  ffn: 384,
  ropeTheta: 10_000,
  rmsNormEps: 1e-6,
  tieEmbeddings: true,
};
export const DEFAULT_STUDENT_OPTIMIZATION: Optimization = {
  steps: 1500,
  batchSize: 32,
  gradientAccumulation: 1,
  learningRate: 3e-3,
  minLearningRate: 3e-4,
  warmupSteps: 75,
  weightDecay: 0.01,
  gradientClip: 1,
  checkpointEvery: 100,
};

export interface TrainStudentOptions {
  config: AvocadoConfig;
  student: StudentConfig;
  workspace: string;
  python: string;
  progress: Progress;
  /** The distill run's folder. */
  runFolder: string;
  /** Checkpoints and shards: `<workspace>/runs/train/<run>/`. */
  trainFolder: string;
  /** The model's folder: `<workspace>/models/<name>/`. */
  modelFolder: string;
  /** Overrides the optimization's steps (tests, quick looks). */
  steps?: number;
  /** Trainers running beside this one (they share the cores); default 1. */
  sharing?: number;
  log: (line: string) => void;
}

export interface StudentTraining {
  name: string;
  run: DistillRunData;
  data: PreparedData;
  architecture: Architecture;
  optimization: Optimization;
  phases: { name: string; result: TrainResult }[];
  terms: Record<string, [number, number][]>;
  gguf: string;
  licences: ReturnType<typeof inheritedLicences>;
  seconds: number;
}

/** The prompts the student will be evaluated on: its vocabulary must read them as its teachers did. */
function evalPrompts(student: StudentConfig, workspace: string): string[] {
  const prompts: string[] = [];
  for (const name of student.suites) {
    try {
      for (const item of openSuite(name, workspace).items)
        for (const message of item.messages) if (message.role === "user") prompts.push(message.content);
    } catch {
      // A suite that cannot open here (no tiny world) adds no prompts; the eval step reports it.
    }
  }
  return prompts;
}

/**
 * Trains the student on a distill run: data (render, trim, align teacher top-k) → the PyTorch trainer (SFT + KD,
 * DDP) → optional on-policy rounds → HF weights and GGUF in the model folder, with loss curves per term and the
 * licences inherited from the teachers whose records trained it. Interrupted, a rerun resumes from the checkpoint.
 */
export async function trainStudent(options: TrainStudentOptions): Promise<StudentTraining> {
  const started = Date.now();
  const { student, progress } = options;
  const run = readDistillRun(options.runFolder);
  const known = run.teachers.map((t) => t.name);
  const unknown = Object.keys(student.teachers).filter((name) => !known.includes(name));
  if (unknown.length > 0)
    throw new InputError(
      `student.teachers names ${unknown.join(", ")}, not a teacher of the run ${options.runFolder} (${known.join(", ")})`,
    );
  const examples = runExamples(run, student);
  const optimization: Optimization = {
    ...(student.optimization ?? DEFAULT_STUDENT_OPTIMIZATION),
    ...(options.steps ? { steps: options.steps, warmupSteps: Math.min(10, options.steps) } : {}),
  };
  // The context: as configured (refused when too short), else the data's longest record rounded up.
  const provisional = student.architecture ?? { ...DEFAULT_STUDENT_ARCHITECTURE, context: 1 << 20 };
  const shardsFolder = join(options.trainFolder, "shards");
  const data = await prepareStudentData({
    examples,
    config: student,
    architecture: provisional as Architecture,
    k: run.k,
    folder: shardsFolder,
    extraPrompts: evalPrompts(student, options.workspace),
    progress,
  });
  const architecture: Architecture = student.architecture ?? {
    ...DEFAULT_STUDENT_ARCHITECTURE,
    context: Math.ceil((data.maxLength + 96) / 64) * 64,
  };
  options.log(
    `${data.sequences} records (${Object.entries(data.records)
      .map(([t, n]) => `${t} ${n}`)
      .join(", ")}); vocabulary ${data.vocabulary.size}; KD rows: same tokenizer ${data.kdRows.same}, ` +
      `other tokenizers ${data.kdRows.crossExact} mapped + ${data.kdRows.crossSorted} sorted; longest ${data.maxLength} tokens`,
  );
  const job = {
    architecture,
    optimization,
    seed: options.config.train.seed,
    threads: options.config.train.threads,
    loss: student.loss,
    parallel: student.parallel,
    ...(student.initFrom ? { initFrom: student.initFrom } : {}),
    padId: data.vocabulary.role("pad") ?? 0,
    bosId: data.vocabulary.role("bos"),
    eosId: data.vocabulary.role("eos"),
  };
  // A checkpoint of another job (config, data) is not resumed: the key names what it was trained from.
  const key = sha256(
    stableStringify({
      job,
      data: { ...data, vocabulary: data.vocabulary.fullIds },
      run: run.digest,
      trainer: trainerCodeHash(),
    }),
  );
  const offPolicy = join(options.trainFolder, "off-policy");
  await resetUnlessSame(offPolicy, key);
  const phases: StudentTraining["phases"] = [];
  const result = await runTrainer(
    { ...job, shards: shardsFolder, out: offPolicy },
    {
      python: options.python,
      label: `train ${student.name}`,
      progress,
      processes: student.processes,
      sharing: options.sharing,
    },
  );
  phases.push({ name: "off-policy", result });
  let source = offPolicy;
  for (let round = 1; round <= student.onPolicy.rounds; round++) {
    const out = join(options.trainFolder, `on-policy-${round}`);
    const roundResult = await onPolicyRound({
      ...options,
      run,
      examples,
      vocabulary: data.vocabulary,
      architecture,
      job,
      round,
      source,
      out,
      key: `${key}/${round}`,
    });
    phases.push({ name: `on-policy ${round}`, result: roundResult });
    source = out;
  }

  await exportModel({
    source,
    out: options.modelFolder,
    encodings: ["f32"],
    descriptor: { name: student.name, family: student.tokenizer, fullIds: [...data.vocabulary.fullIds] },
  });
  const terms = termCurves(phases);
  for (const [term, points] of Object.entries(terms))
    await writeFileAtomic(
      join(options.modelFolder, `loss-${term}.svg`),
      lossCurveSvg(`${student.name}: ${term}`, points),
    );
  await writeJsonAtomic(join(options.modelFolder, "loss.json"), terms);
  const licences = inheritedLicences(run, data.lines);
  await writeJsonAtomic(join(options.modelFolder, "licenses.json"), licences);
  return {
    name: student.name,
    run,
    data,
    architecture,
    optimization,
    phases,
    terms,
    gguf: join(options.modelFolder, ggufFileName("f32")),
    licences,
    seconds: (Date.now() - started) / 1000,
  };
}

/** Each loss term over all phases, steps continuing across them. */
function termCurves(phases: StudentTraining["phases"]): Record<string, [number, number][]> {
  const curves: Record<string, [number, number][]> = { total: [] };
  let offset = 0;
  for (const phase of phases) {
    const done = phase.result.events.find((e) => e.event === "done");
    const terms = (done?.terms ?? {}) as Record<string, [number, number][]>;
    for (const [step, loss] of phase.result.history) curves.total!.push([offset + step, loss]);
    for (const [term, points] of Object.entries(terms))
      for (const [step, loss] of points) (curves[term] ??= []).push([offset + step, loss]);
    offset += phase.result.history.at(-1)?.[0] ?? 0;
  }
  return curves;
}
