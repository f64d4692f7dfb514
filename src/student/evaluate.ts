import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { AvocadoConfig } from "../core/config/schema.ts";
import { errorMessage } from "../core/errors.ts";
import type { Progress } from "../core/progress.ts";
import { ResponseCache } from "../evals/cache.ts";
import { gate, type GateResult } from "../evals/gate.ts";
import { runEval, type ModelUnderTest } from "../evals/run.ts";
import { openSuite } from "../evals/suite.ts";
import type { EvalSummary } from "../evals/summary.ts";
import { openEvalModels } from "./models.ts";

export interface SuiteOutcome {
  suite: string;
  summary: EvalSummary;
  report: string;
  /** The gate of the student against each teacher. */
  gates: { teacher: string; result: GateResult }[];
}

export interface StudentEvaluation {
  suites: SuiteOutcome[];
  /** Suites that could not run, with why (they fail the gate). */
  errors: { suite: string; error: string }[];
  pass: boolean;
  margin: number;
  failures: string[];
}

/**
 * Runs each suite on the student and on every teacher of its run (through the evals response cache), then the
 * non-inferiority gate of the student against each teacher on each suite: it ships only if no teacher is better by
 * more than the margin on any gated rate (accuracy, and where a probe suite gates them, deflection and over-refusal).
 */
export async function evaluateStudent(options: {
  config: AvocadoConfig;
  workspace: string;
  name: string;
  /** The student's tokenizer family (its chat format). */
  family: string;
  gguf: string;
  teachers: readonly string[];
  suites: readonly string[];
  out: string;
  progress: Progress;
  margin?: number;
}): Promise<StudentEvaluation> {
  const margin = options.margin ?? 0.05;
  const cache = await ResponseCache.open(`sqlite:${join(options.workspace, "evals", "cache.db")}`);
  const models: ModelUnderTest[] = [];
  const outcome: StudentEvaluation = { suites: [], errors: [], pass: true, margin, failures: [] };
  try {
    await openEvalModels({
      config: options.config,
      workspace: options.workspace,
      family: options.family,
      students: [{ name: options.name, gguf: options.gguf }],
      teachers: options.teachers,
      cache,
      into: models,
    });
    for (const suiteName of options.suites) {
      let suite;
      try {
        suite = openSuite(suiteName, options.workspace);
      } catch (error) {
        outcome.errors.push({ suite: suiteName, error: errorMessage(error) });
        outcome.failures.push(`${suiteName}: could not run (${errorMessage(error)})`);
        continue;
      }
      const out = join(options.out, suiteName);
      // Records there name the model, not its weights: a retrained student starts afresh (answers stay cached).
      await rm(out, { recursive: true, force: true });
      const { summary, records } = await runEval({ suite, models, out, progress: options.progress });
      const gates = options.teachers.map((teacher) => ({
        teacher,
        result: gate(suite, records, options.name, teacher, margin),
      }));
      for (const { teacher, result } of gates)
        for (const check of result.checks.filter((c) => c.verdict !== "pass"))
          outcome.failures.push(
            `${suiteName} vs ${teacher}: ${check.metric}${check.group === "all" ? "" : ` (${check.group})`} ${check.verdict}: ${check.reason}`,
          );
      outcome.suites.push({ suite: suiteName, summary, report: join(out, "report.html"), gates });
    }
  } finally {
    for (const model of models) await model.teacher.close();
    await cache.close();
  }
  outcome.pass = outcome.failures.length === 0 && outcome.suites.length > 0;
  return outcome;
}
