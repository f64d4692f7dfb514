import { rm } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "../core/atomic-write.ts";
import type { AvocadoConfig } from "../core/config/schema.ts";
import type { StudentConfig } from "../core/config/student-schema.ts";
import type { Progress } from "../core/progress.ts";
import { ResponseCache } from "../evals/cache.ts";
import { runEval, type ModelUnderTest } from "../evals/run.ts";
import { openSuite } from "../evals/suite.ts";
import type { Comparison, EvalSummary } from "../evals/summary.ts";
import { openEvalModels } from "./models.ts";
import { trainStudent, type StudentTraining } from "./train-student.ts";

export interface Variant {
  name: string;
  describe: string;
  student: (base: StudentConfig) => StudentConfig;
  /** Variants sharing a train folder share their off-policy phase (its job key decides). */
  trainAs?: string;
}

const withLoss = (base: StudentConfig, loss: Partial<StudentConfig["loss"]>, rounds = 0): StudentConfig => ({
  ...base,
  loss: { ...base.loss, ...loss },
  onPolicy: { ...base.onPolicy, rounds },
  evaluate: false,
});

/** SFT only, then each KD term added, both cross-tokenizer methods, then on-policy rounds on the hybrid student. */
export const VARIANTS: Variant[] = [
  { name: "sft", describe: "SFT only", student: (b) => withLoss(b, { kd: 0, crossKd: 0 }) },
  { name: "kd", describe: "+ same-tokenizer KD", student: (b) => withLoss(b, { kd: 1, crossKd: 0 }) },
  {
    name: "uld",
    describe: "+ cross-tokenizer KD (ULD)",
    student: (b) => withLoss(b, { kd: 1, crossKd: 1, crossTokenizer: "uld" }),
  },
  {
    name: "hybrid",
    describe: "+ cross-tokenizer KD (hybrid)",
    student: (b) => withLoss(b, { kd: 1, crossKd: 1, crossTokenizer: "hybrid" }),
  },
  {
    name: "on-policy",
    describe: "+ on-policy (GKD)",
    student: (b) => withLoss(b, { kd: 1, crossKd: 1, crossTokenizer: "hybrid" }, Math.max(1, b.onPolicy.rounds)),
    trainAs: "hybrid",
  },
];

export interface AblationRow {
  model: string;
  describe: string;
  /** skill → accuracy with its interval. */
  skills: Record<string, { estimate: number; low: number; high: number }>;
  /** skill → (this − the best teacher on that skill), paired, with its interval. */
  versusBestTeacher: Record<string, { teacher: string; estimate: number; low: number; high: number }>;
}

/** Runs `tasks` with at most `limit` at a time (one trainer per core). */
async function pool<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const index = next++;
      results[index] = await tasks[index]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

/**
 * Trains each variant on the same distill run (two at a time: one per core), evaluates them all beside the teachers
 * on the skills suite in one paired run, and tabulates per skill each model's accuracy and, per student, its paired
 * difference from the best teacher on that skill.
 */
export async function runAblation(options: {
  config: AvocadoConfig;
  workspace: string;
  python: string;
  progress: Progress;
  runFolder: string;
  out: string;
  steps?: number;
  parallel?: number;
  log: (line: string) => void;
}): Promise<{
  rows: AblationRow[];
  summary: EvalSummary;
  table: string;
  best: string;
  trainings: Map<string, StudentTraining>;
}> {
  const base = options.config.student;
  const trainings = new Map<string, StudentTraining>();
  const train = (sharing: number) => (variant: Variant) => async () => {
    const student = { ...variant.student(base), name: `${base.name}-${variant.name}` };
    const training = await trainStudent({
      ...options,
      sharing,
      student,
      trainFolder: join(options.workspace, "runs", "train", `ablation-${variant.trainAs ?? variant.name}`),
      modelFolder: join(options.workspace, "models", student.name),
    });
    trainings.set(variant.name, training);
    options.log(`${student.name}: trained in ${training.seconds.toFixed(0)} s`);
  };
  const first = VARIANTS.filter((v) => !v.trainAs);
  const parallel = options.parallel ?? 2;
  await pool(first.map(train(Math.min(parallel, first.length))), parallel);
  await pool(VARIANTS.filter((v) => v.trainAs).map(train(1)), 1);

  const suite = openSuite("tinyworld", options.workspace);
  const cache = await ResponseCache.open(`sqlite:${join(options.workspace, "evals", "cache.db")}`);
  const models: ModelUnderTest[] = [];
  const teachers = [...trainings.values()][0]!.run.teachers.map((t) => t.name);
  let summary: EvalSummary;
  try {
    await openEvalModels({
      config: options.config,
      workspace: options.workspace,
      family: base.tokenizer,
      students: VARIANTS.map((v) => trainings.get(v.name)!),
      teachers,
      cache,
      into: models,
    });
    // Records of an earlier ablation name other weights: start afresh (the response cache keeps every answer).
    await rm(join(options.out, "tinyworld"), { recursive: true, force: true });
    ({ summary } = await runEval({ suite, models, out: join(options.out, "tinyworld"), progress: options.progress }));
  } finally {
    for (const model of models) await model.teacher.close();
    await cache.close();
  }
  const rows = tabulate(summary, teachers, new Map(VARIANTS.map((v) => [`${base.name}-${v.name}`, v.describe])));
  const best = rows
    .filter((r) => !teachers.includes(r.model))
    .sort((a, b) => b.skills.all!.estimate - a.skills.all!.estimate)[0]!.model;
  const table = renderTable(rows, teachers, best);
  await writeJsonAtomic(join(options.out, "ablation.json"), { rows, best, teachers, run: options.runFolder });
  await writeFileAtomic(join(options.out, "ablation.md"), `${table}\n`);
  return { rows, summary, table, best, trainings: new Map([...trainings.values()].map((t) => [t.name, t])) };
}

function comparisonOf(summary: EvalSummary, a: string, b: string, group: string): Comparison | undefined {
  return summary.comparisons.find((c) => c.group === group && ((c.a === a && c.b === b) || (c.a === b && c.b === a)));
}

export function tabulate(
  summary: EvalSummary,
  teachers: readonly string[],
  describe: Map<string, string>,
): AblationRow[] {
  const metric = summary.metrics[0]!;
  const groups = Object.keys(summary.scores[summary.models[0]!]![metric]!);
  return summary.models.map((model) => {
    const scores = summary.scores[model]![metric]!;
    const skills = Object.fromEntries(
      groups.map((g) => [g, { estimate: scores[g]!.estimate, low: scores[g]!.low, high: scores[g]!.high }]),
    );
    const versusBestTeacher: AblationRow["versusBestTeacher"] = {};
    if (!teachers.includes(model))
      for (const g of groups) {
        const bestTeacher = [...teachers].sort(
          (x, y) => summary.scores[y]![metric]![g]!.estimate - summary.scores[x]![metric]![g]!.estimate,
        )[0]!;
        const c = comparisonOf(summary, bestTeacher, model, g);
        if (!c) continue;
        // Comparisons are b − a: orient as model − teacher.
        const sign = c.b === model ? 1 : -1;
        const [low, high] =
          sign === 1 ? [c.difference.low, c.difference.high] : [-c.difference.high, -c.difference.low];
        versusBestTeacher[g] = { teacher: bestTeacher, estimate: sign * c.difference.estimate, low, high };
      }
    return { model, describe: describe.get(model) ?? "teacher", skills, versusBestTeacher };
  });
}

const pct = (x: number) => (100 * x).toFixed(1);

export function renderTable(rows: readonly AblationRow[], teachers: readonly string[], best: string): string {
  const groups = Object.keys(rows[0]!.skills);
  const header = `| model | ${groups.join(" | ")} |`;
  const lines = [header, `|---|${groups.map(() => "---").join("|")}|`];
  for (const row of rows) {
    const cells = groups.map((g) => {
      const s = row.skills[g]!;
      const d = row.versusBestTeacher[g];
      const vs = d ? `<br>Δ ${d.estimate >= 0 ? "+" : ""}${pct(d.estimate)} [${pct(d.low)}, ${pct(d.high)}]` : "";
      return `${pct(s.estimate)} [${pct(s.low)}, ${pct(s.high)}]${vs}`;
    });
    const label = teachers.includes(row.model) ? `${row.model} (teacher)` : `${row.model}: ${row.describe}`;
    lines.push(`| ${row.model === best ? `**${label}**` : label} | ${cells.join(" | ")} |`);
  }
  lines.push(
    "",
    "Accuracy % on the held-out split [95% interval]; Δ: the student minus the best teacher on that skill, paired " +
      "(cluster bootstrap over the same items), in points [95% interval]. Bold: the best student on all skills.",
  );
  return lines.join("\n");
}
