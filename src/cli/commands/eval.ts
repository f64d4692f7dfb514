import type { Command } from "commander";
import { join, resolve } from "node:path";
import { InputError } from "../../core/errors.ts";
import { newId } from "../../core/ids.ts";
import { JsonLogger } from "../../core/logger.ts";
import { commandContext, type GlobalOptions } from "../context.ts";
import { positiveInteger } from "../options.ts";

interface RunOptions {
  models: string;
  suite: string;
  out?: string;
  limit?: string;
  concurrency?: string;
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
    .action(async (options: RunOptions, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const { openSuite } = await import("../../evals/suite.ts");
      const { runEval } = await import("../../evals/run.ts");
      const { findTeacher, openTeacher } = await import("../../teachers/registry.ts");
      const names = options.models
        .split(",")
        .map((name) => name.trim())
        .filter(Boolean);
      if (names.length === 0) throw new InputError("--models names no model");
      const suite = openSuite(options.suite, context.workspace);
      if (options.limit !== undefined) suite.items = suite.items.slice(0, positiveInteger(options.limit, "--limit"));
      const logger = new JsonLogger(undefined, "warn");
      const models = [];
      try {
        for (const name of names) {
          const entry = await findTeacher(context.config, context.workspace, name);
          models.push({ name, teacher: await openTeacher(entry.config, { logger }) });
        }
        const out = resolve(options.out ?? join(context.workspace, "evals", newId("eval")));
        const { summary, reused, called } = await runEval({
          suite,
          models,
          out,
          concurrency:
            options.concurrency === undefined ? undefined : positiveInteger(options.concurrency, "--concurrency"),
          progress: context.progress,
        });
        const metric = summary.metrics[0]!;
        const lines = [`${summary.suite}: ${summary.items} items, ${called} calls made, ${reused} answers reused`];
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
            `  ${c.b} − ${c.a} on ${c.group}: ${percent(c.difference.estimate)} [${percent(c.difference.low)}, ${percent(c.difference.high)}], McNemar p ${c.mcnemarP.toPrecision(2)} (detectable: ${percent(c.minimumDetectable)})`,
          );
        }
        lines.push(`records: ${join(out, "items.jsonl")}; summary: ${join(out, "summary.json")}`);
        context.print(lines.join("\n"), { out, reused, called, summary });
      } finally {
        for (const model of models) await model.teacher.close();
      }
    });
}
