import type { Command } from "commander";
import { join, resolve } from "node:path";
import { AvocadoError, InputError } from "../../core/errors.ts";
import { newId } from "../../core/ids.ts";
import { JsonLogger } from "../../core/logger.ts";
import type { Teacher } from "../../teachers/teacher.ts";
import { commandContext, type CommandContext, type GlobalOptions } from "../context.ts";
import { positiveInteger } from "../options.ts";

interface GateOptions {
  cache?: string;
  judge?: string;
  candidate: string;
  baseline: string;
  suite: string;
  margin: string;
  out?: string;
}

/** The candidate failed the gate: exit 1 (2 is bad input). */
class GateFailedError extends AvocadoError {
  constructor(reason: string) {
    super("gate_failed", `the gate failed: ${reason}`);
  }
}

/**
 * Opens models by name (configured or tiny teachers, GGUF paths), warnings logged on stderr, every answer going
 * through the response cache (`--cache`, by default `<workspace>/evals/cache.db`).
 */
async function openModels(context: CommandContext, names: string[], cacheUrl: string | undefined, judgeName?: string) {
  const { findTeacher, openTeacher } = await import("../../teachers/registry.ts");
  const { ResponseCache, cachedTeacher, modelIdentity } = await import("../../evals/cache.ts");
  const cache = await ResponseCache.open(cacheUrl ?? `sqlite:${join(context.workspace, "evals", "cache.db")}`);
  const logger = new JsonLogger(undefined, "warn");
  const models: { name: string; teacher: Teacher }[] = [];
  let judgeTeacher: Teacher | undefined;
  const close = async () => {
    for (const model of models) await model.teacher.close();
    await judgeTeacher?.close();
    await cache.close();
  };
  const open = async (name: string) => {
    const entry = await findTeacher(context.config, context.workspace, name);
    const teacher = await openTeacher(entry.config, { logger });
    return cachedTeacher(teacher, await modelIdentity(entry.config), cache);
  };
  try {
    for (const name of names) models.push({ name, teacher: await open(name) });
    if (judgeName !== undefined) judgeTeacher = await open(judgeName);
  } catch (error) {
    await close();
    throw error;
  }
  const { Judge } = await import("../../evals/judge.ts");
  return { models, cache, close, judge: judgeTeacher ? new Judge(judgeTeacher) : undefined };
}

interface RunOptions {
  cache?: string;
  models: string;
  suite: string;
  out?: string;
  limit?: string;
  concurrency?: string;
  samples?: string;
  temperature?: string;
  judge?: string;
}

function temperatureOf(text: string): number {
  const value = Number(text);
  if (!(value > 0 && value <= 2)) throw new InputError(`--temperature must be above 0 and at most 2 (found '${text}')`);
  return value;
}

const percent = (value: number) => `${(100 * value).toFixed(1)}%`;

export function registerEval(program: Command): void {
  const evals = program
    .command("eval")
    .description("evaluate models on suites: per-item records, intervals, paired comparisons");
  evals
    .command("run")
    .description("ask every model every item of a suite; resumes an interrupted run given the same --out")
    .requiredOption("--models <names>", "teachers (configured, built tiny ones) or GGUF paths, comma-separated")
    .requiredOption("--suite <name>", "tinyworld, gsm8k, or a suite file (YAML)")
    .option("--out <dir>", "where items.jsonl and summary.json go (default: <workspace>/evals/<new id>)")
    .option("--limit <n>", "only the first n items (a quick look; the statistics say how little n decides)")
    .option("--concurrency <n>", "calls in flight per model")
    .option("--samples <k>", "answers per item, sampled (intervals clustered by item)", "1")
    .option("--temperature <t>", "the sampling temperature with --samples (default 0.7)")
    .option("--judge <name>", "a judge teacher: grades rubric suites, classes probe answers, compares pairs")
    .option("--cache <url>", "the response cache: sqlite:<path> or postgres://… (default: <workspace>/evals/cache.db)")
    .action(async (options: RunOptions, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const { openSuite } = await import("../../evals/suite.ts");
      const { runEval } = await import("../../evals/run.ts");
      const names = options.models
        .split(",")
        .map((name) => name.trim())
        .filter(Boolean);
      if (names.length === 0) throw new InputError("--models names no model");
      const suite = openSuite(options.suite, context.workspace);
      if (options.limit !== undefined) suite.items = suite.items.slice(0, positiveInteger(options.limit, "--limit"));
      const { models, cache, close, judge } = await openModels(context, names, options.cache, options.judge);
      try {
        const out = resolve(options.out ?? join(context.workspace, "evals", newId("eval")));
        const { summary, reused, called } = await runEval({
          suite,
          models,
          out,
          concurrency:
            options.concurrency === undefined ? undefined : positiveInteger(options.concurrency, "--concurrency"),
          progress: context.progress,
          samples: positiveInteger(options.samples ?? "1", "--samples"),
          temperature: options.temperature === undefined ? undefined : temperatureOf(options.temperature),
          judge,
        });
        const metric = summary.metrics[0]!;
        const lines = [
          `${summary.suite}: ${summary.items} items; ${reused} answers reused from ${out}, ${called} asked: ` +
            `${cache.hits} from the response cache, ${cache.misses} calls to the models`,
        ];
        for (const model of summary.models) {
          const all = summary.scores[model]![metric]!["all"]!;
          const groups = Object.entries(summary.scores[model]![metric]!)
            .filter(([group]) => group !== "all")
            .map(([group, s]) => `${group} ${percent(s.estimate)} [${percent(s.low)}, ${percent(s.high)}]`);
          lines.push(
            `  ${model}: ${metric} ${percent(all.estimate)} [${percent(all.low)}, ${percent(all.high)}]` +
              `${all.errors ? `, ${all.errors} errors` : ""}${groups.length > 1 ? `; ${groups.join("; ")}` : ""}`,
          );
        }
        for (const c of summary.comparisons.filter((comparison) => comparison.significant)) {
          lines.push(
            `  ${c.b} − ${c.a} on ${c.group}: ${percent(c.difference.estimate)} [${percent(c.difference.low)}, ${percent(c.difference.high)}], ${c.test === "mcnemar" ? "McNemar" : "cluster bootstrap"} p ${c.pValue.toPrecision(2)} (detectable: ${percent(c.minimumDetectable)})`,
          );
        }
        for (const f of summary.findings) {
          lines.push(
            `  ${f.model} ${f.shows ? "SHOWS" : "does not show"} ${f.metric} on ${f.group}: ` +
              `${percent(f.difference.estimate)} [${percent(f.difference.low)}, ${percent(f.difference.high)}] above ${f.control}`,
          );
        }
        for (const p of summary.pairwise ?? []) {
          lines.push(
            `  judged ${p.b} against ${p.a}: ${p.winsB} wins, ${p.winsA} losses, ${p.ties} ties ` +
              `(${p.inconsistent} from orders that disagreed), ${p.errors} errors`,
          );
        }
        lines.push(`report: ${join(out, "report.html")} (records: items.jsonl, summary.json)`);
        context.print(lines.join("\n"), {
          out,
          reused,
          called,
          cacheHits: cache.hits,
          modelCalls: cache.misses,
          summary,
        });
      } finally {
        await close();
      }
    });

  evals
    .command("gate")
    .description("non-inferiority of a candidate against a baseline: exit 0 passes, 1 fails, 2 bad input")
    .requiredOption("--candidate <name>", "the model that would ship")
    .requiredOption("--baseline <name>", "the model it must be no worse than")
    .requiredOption("--suite <name>", "tinyworld, gsm8k, or a suite file (YAML)")
    .option("--margin <m>", "the largest drop allowed, as a fraction (0.05 = 5 points)", "0.05")
    .option("--judge <name>", "a judge teacher (rubric suites; probe answers classed by it)")
    .option("--out <dir>", "records of both models (reused when there; default: <workspace>/evals/<new id>)")
    .option("--cache <url>", "the response cache: sqlite:<path> or postgres://… (default: <workspace>/evals/cache.db)")
    .action(async (options: GateOptions, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const margin = Number(options.margin);
      if (!(margin > 0 && margin < 1))
        throw new InputError(`--margin must be a fraction between 0 and 1 (found '${options.margin}')`);
      const { openSuite } = await import("../../evals/suite.ts");
      const { runEval } = await import("../../evals/run.ts");
      const { gate } = await import("../../evals/gate.ts");
      const suite = openSuite(options.suite, context.workspace);
      const names = [options.candidate, options.baseline];
      const { models, close, judge } = await openModels(context, names, options.cache, options.judge);
      try {
        const out = resolve(options.out ?? join(context.workspace, "evals", newId("gate")));
        const { records } = await runEval({ suite, models, out, progress: context.progress, judge });
        const result = gate(suite, records, options.candidate, options.baseline, margin);
        const lines = result.checks.map(
          (check) =>
            `  ${check.metric}${check.group === "all" ? "" : ` (${check.group})`}, ${check.better} is better: ${check.verdict.toUpperCase()}: ${options.candidate} − ${options.baseline} ${percent(check.difference)} [${percent(check.low)}, ${percent(check.high)}]; ${check.reason}`,
        );
        context.print(
          [
            `gate on ${suite.name} (${result.items} items, margin ${percent(margin)}): ${result.pass ? "PASS" : "FAIL"}`,
            ...lines,
          ].join("\n"),
          { out, ...result },
        );
        if (!result.pass) {
          const failed = result.checks.filter((check) => check.verdict !== "pass");
          throw new GateFailedError(
            failed.map((check) => `${check.metric} ${check.verdict}: ${check.reason}`).join("; "),
          );
        }
      } finally {
        await close();
      }
    });

  evals
    .command("contamination")
    .description("n-gram overlap between a dataset (JSONL) and a suite: the records that hold an item's words")
    .requiredOption("--dataset <file>", "a JSONL dataset (chat records, prompts, anything with text in it)")
    .requiredOption("--suite <name>", "tinyworld, gsm8k, or a suite file (YAML)")
    .option("--n <words>", "the n-gram length", "13")
    .action(async (options: { dataset: string; suite: string; n: string }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const { openSuite } = await import("../../evals/suite.ts");
      const { contamination } = await import("../../evals/contamination.ts");
      const suite = openSuite(options.suite, context.workspace);
      const texts = suite.items.map((item) => item.messages.map((message) => message.content).join("\n"));
      const report = contamination(resolve(options.dataset), texts, positiveInteger(options.n, "--n"));
      context.print(
        `${report.contaminated} of ${report.records} records share a ${report.n}-gram with ${suite.name} ` +
          `(${report.itemsTouched} of ${report.items} items touched)` +
          (report.lines.length > 0
            ? `; lines ${report.lines.slice(0, 20).join(", ")}${report.lines.length > 20 ? ", …" : ""}`
            : ""),
        report,
      );
    });
}
