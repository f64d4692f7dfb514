import { existsSync, readdirSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import type { Command } from "commander";
import { writeJsonAtomic } from "../../core/atomic-write.ts";
import { architectureSchema, optimizationSchema } from "../../core/config/schema.ts";
import { InputError } from "../../core/errors.ts";
import { readShardIndex } from "../../train/shards.ts";
import { commandContext, type CommandContext, type GlobalOptions } from "../context.ts";
import { positiveInteger } from "../options.ts";
import { ensureTorch } from "../ensure-torch.ts";

const DEFAULT_ARCHITECTURE = { layers: 2, hidden: 128, heads: 4, kvHeads: 2, headDim: 32, ffn: 384, context: 256 };
const DEFAULT_OPTIMIZATION = { steps: 600, batchSize: 32, learningRate: 3e-3 };

interface TrainOptions {
  shards?: string;
  out?: string;
  from?: string;
  run?: string;
  name: string;
  processes: string;
  steps?: string;
  initFrom?: string;
  evaluate?: boolean;
  ablation?: boolean;
}

/** A distill run by name (runs/distill/<name>) or path; none named: the latest finished one. */
function distillRunFolder(context: CommandContext, name: string | undefined): string {
  const runs = join(context.workspace, "runs", "distill");
  if (name) {
    const folder = isAbsolute(name) || name.includes("/") ? resolve(name) : join(runs, name);
    if (!existsSync(join(folder, "manifest.json")))
      throw new InputError(`no finished distill run at ${folder} (it has no manifest.json; run 'avocado distill run')`);
    return folder;
  }
  const finished = existsSync(runs)
    ? readdirSync(runs)
        .map((entry) => join(runs, entry))
        .filter((folder) => existsSync(join(folder, "manifest.json")))
        .sort((a, b) => statSync(join(b, "manifest.json")).mtimeMs - statSync(join(a, "manifest.json")).mtimeMs)
    : [];
  if (finished.length === 0)
    throw new InputError(
      `no finished distill run in ${runs}: run 'avocado distill run' first, or name one with --from`,
    );
  return finished[0]!;
}

async function trainShards(context: CommandContext, options: TrainOptions) {
  if (!options.out) throw new InputError("--shards needs --out");
  const shards = resolve(options.shards!);
  const index = await readShardIndex(shards);
  const processes = positiveInteger(options.processes, "--processes");
  const architecture = architectureSchema.parse(context.config.train.architecture ?? DEFAULT_ARCHITECTURE);
  const parsed = optimizationSchema.safeParse({
    ...(context.config.train.optimization ?? DEFAULT_OPTIMIZATION),
    ...(options.steps ? { steps: Number(options.steps) } : {}),
  });
  if (!parsed.success)
    throw new InputError(
      `--steps / train.optimization: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  ensureTorch(context.python);
  const out = resolve(options.out);
  const result = await (
    await import("../../train/launcher.ts")
  ).runTrainer(
    {
      shards,
      out,
      architecture: { ...architecture, context: Math.max(architecture.context, index.maxLength) },
      optimization: parsed.data,
      seed: context.config.train.seed,
      threads: context.config.train.threads,
      initFrom: options.initFrom ? resolve(options.initFrom) : undefined,
    },
    { python: context.python, label: `train ${options.name}`, progress: context.progress, processes },
  );
  if (index.tokenizer)
    await writeJsonAtomic(join(out, "avocado-model.json"), { name: options.name, ...index.tokenizer });
  context.print(
    `trained ${options.name}: final loss ${result.finalLoss?.toFixed(4)}; weights, loss.json and loss-curve.svg in ${out}`,
    { out, finalLoss: result.finalLoss, seconds: result.seconds },
  );
}

async function trainStudentCommand(context: CommandContext, options: TrainOptions) {
  const student = { ...context.config.student };
  if (options.processes !== "1") student.processes = positiveInteger(options.processes, "--processes");
  if (options.initFrom) student.initFrom = resolve(options.initFrom);
  if (options.evaluate === false) student.evaluate = false;
  const runFolder = distillRunFolder(context, options.from ?? student.from);
  ensureTorch(context.python);
  const { trainStudent } = await import("../../student/train-student.ts");
  const { evaluateStudent } = await import("../../student/evaluate.ts");
  const { writeStudentCard } = await import("../../student/card.ts");
  const runName = options.run ?? student.name;
  const modelFolder = resolve(options.out ?? join(context.workspace, "models", student.name));
  const training = await trainStudent({
    config: context.config,
    student,
    workspace: context.workspace,
    python: context.python,
    progress: context.progress,
    runFolder,
    trainFolder: join(context.workspace, "runs", "train", runName),
    modelFolder,
    steps: options.steps ? positiveInteger(options.steps, "--steps") : undefined,
    log: (line) => context.progress.log(line),
  });
  const evaluation = student.evaluate
    ? await evaluateStudent({
        config: context.config,
        workspace: context.workspace,
        name: student.name,
        family: student.tokenizer,
        gguf: training.gguf,
        teachers: training.run.teachers.map((t) => t.name),
        suites: student.suites,
        out: join(modelFolder, "evals"),
        progress: context.progress,
      })
    : undefined;
  const card = await writeStudentCard(modelFolder, training, evaluation);
  const gate =
    card.gate === null ? "not evaluated" : card.gate.pass ? "PASS" : `FAIL (${card.gate.failures.length} checks)`;
  context.print(
    [
      `trained ${student.name} from ${runFolder} in ${training.seconds.toFixed(0)} s: ${training.data.sequences} records; ` +
        `final ${Object.entries(training.terms)
          .map(([t, p]) => `${t} ${p.at(-1)?.[1].toFixed(4)}`)
          .join(", ")}`,
      `release gate: ${gate}`,
      ...(card.gate && !card.gate.pass ? card.gate.failures.slice(0, 8).map((f) => `  ${f}`) : []),
      `model: ${modelFolder} (MODEL_CARD.md, ${training.gguf.split("/").at(-1)}, licenses.json, loss-*.svg)`,
    ].join("\n"),
    { model: modelFolder, gguf: training.gguf, gate: card.gate, terms: training.terms, seconds: training.seconds },
  );
}

async function ablationCommand(context: CommandContext, options: TrainOptions) {
  const runFolder = distillRunFolder(context, options.from ?? context.config.student.from);
  ensureTorch(context.python);
  const { runAblation } = await import("../../student/ablation.ts");
  const out = join(context.workspace, "runs", "ablation", options.run ?? "latest");
  const result = await runAblation({
    config: context.config,
    workspace: context.workspace,
    python: context.python,
    progress: context.progress,
    runFolder,
    out,
    steps: options.steps ? positiveInteger(options.steps, "--steps") : undefined,
    log: (line) => context.progress.log(line),
  });
  // The best student goes through what any student does: every suite against every teacher, the gate, its card.
  const { evaluateStudent } = await import("../../student/evaluate.ts");
  const { writeStudentCard } = await import("../../student/card.ts");
  const training = result.trainings.get(result.best)!;
  const modelFolder = join(context.workspace, "models", result.best);
  const evaluation = await evaluateStudent({
    config: context.config,
    workspace: context.workspace,
    name: result.best,
    family: context.config.student.tokenizer,
    gguf: training.gguf,
    teachers: training.run.teachers.map((t) => t.name),
    suites: context.config.student.suites,
    out: join(modelFolder, "evals"),
    progress: context.progress,
  });
  const card = await writeStudentCard(modelFolder, training, evaluation);
  const findings = evaluation.suites
    .flatMap((s) => s.summary.findings)
    .map((f) => `  ${f.model} ${f.shows ? "SHOWS" : "does not show"} ${f.metric} on ${f.group}`);
  context.print(
    [
      result.table,
      "",
      `saved: ${join(out, "ablation.md")}, ablation.json; best student: ${result.best}`,
      `its release gate: ${card.gate?.pass ? "PASS" : `FAIL: ${card.gate?.failures.join("; ")}`}`,
      ...findings,
      `card: ${join(modelFolder, "MODEL_CARD.md")}`,
    ].join("\n"),
    { out, rows: result.rows, best: result.best, gate: card.gate },
  );
}

export function registerTrain(program: Command): void {
  program
    .command("train")
    .description(
      "train the student on a distill run (SFT + KD from its teachers; student: in avocado.yaml), then evaluate and gate it; or a model on raw --shards",
    )
    .option(
      "--from <run>",
      "the distill run (a name in runs/distill, or a folder; default: student.from, else the latest)",
    )
    .option(
      "--run <name>",
      "the training run's name: runs/train/<name>/ (default: the student's name); the same name resumes",
    )
    .option("--out <dir>", "the model folder (default: <workspace>/models/<student name>); with --shards: required")
    .option("--ablation", "train SFT only, + KD, + cross-tokenizer KD (ULD, hybrid), + on-policy; tabulate per skill")
    .option("--no-evaluate", "skip the eval suites and the release gate (the card then says it is ungated)")
    .option(
      "--shards <dir>",
      "raw token-id shards (index.json, tokens.bin, mask.bin, offsets.bin) instead of a distill run",
    )
    .option("--name <name>", "model name with --shards", "student")
    .option("--processes <n>", "data-parallel processes (gloo)", "1")
    .option("--steps <n>", "override the optimization's steps")
    .option("--init-from <dir>", "initialise from a Hugging Face Qwen3 folder (config.json + safetensors)")
    .action(async (options: TrainOptions, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      if (options.shards) await trainShards(context, options);
      else if (options.ablation) await ablationCommand(context, options);
      else await trainStudentCommand(context, options);
    });
}
