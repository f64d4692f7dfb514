import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { DistillConfig } from "../core/config/distill-schema.ts";
import { InputError } from "../core/errors.ts";
import { sha256, stableStringify } from "../core/hash.ts";
import type { Progress } from "../core/progress.ts";
import { NgramIndex } from "../evals/contamination.ts";
import type { Judge } from "../evals/judge.ts";
import { runEval } from "../evals/run.ts";
import { openSuite } from "../evals/suite.ts";
import { NearDuplicates } from "./dedupe.ts";
import { fanOut, type TeacherRun } from "./generate.ts";
import { writeOutputs } from "./outputs.ts";
import { judgeAnswers } from "./judged.ts";
import { keepAnswers, screenAnswers, type PromptSelection, type ShownBehaviour } from "./select.ts";
import { loadPrompts, type BadLine, type DistillPrompt } from "./sources.ts";

export interface DistillTeacherRun extends TeacherRun {
  family: string;
  licence: string;
  /** The model's identity in the response cache (its configuration and file). */
  identity: string;
}

export interface DistillRunOptions {
  config: DistillConfig;
  teachers: DistillTeacherRun[];
  workspace: string;
  configFolder: string;
  /** The run's folder: `dataset.jsonl`, `preferences.jsonl`, `manifest.json`, `report.html`, `probes/`. */
  out: string;
  progress: Progress;
  signal?: AbortSignal;
  /** The judge of `selection.judge` (needed when the config names one). */
  judge?: Judge;
}

/** A behaviour a teacher's probe showed, against its control group (difference and its lower bound). */
export interface ProbeFinding {
  suite: string;
  teacher: string;
  metric: string;
  group: string;
  difference: number;
  low: number;
}

/** A prompt-level curation step's count: how many went in, and how many it dropped (by reason). */
export interface StageCount {
  stage: string;
  in: number;
  out: number;
  dropped?: Record<string, number>;
}

const promptText = (prompt: DistillPrompt) => prompt.messages.map((m) => m.content).join("\n");

/** The suites' item texts as n-gram indexes, one per suite. */
function suiteIndexes(names: readonly string[], workspace: string, n: number): Map<string, NgramIndex> {
  return new Map(
    names.map((name) => {
      const suite = openSuite(name, workspace);
      return [
        name,
        new NgramIndex(
          suite.items.map((item) => item.messages.map((m) => m.content).join("\n")),
          n,
        ),
      ];
    }),
  );
}

/** The first suite a text shares an n-gram with, or undefined. */
function contaminatedBy(indexes: Map<string, NgramIndex>, text: string): string | undefined {
  for (const [name, index] of indexes) if (index.matches(text).size > 0) return name;
  return undefined;
}

/** The curated prompts, what each curation step dropped, and the suites' indexes for the records' own check. */
export interface PreparedPrompts {
  prompts: DistillPrompt[];
  stages: StageCount[];
  contamination: Record<string, { prompts: number; records: number }>;
  indexes: Map<string, NgramIndex>;
  badLines: BadLine[];
}

/**
 * Prompts → curated prompts: exact, then near duplicates (the first kept), then those an eval suite holds. A pure
 * function of the config and the files: the distillation workers compute the same list.
 */
export async function preparePrompts(
  config: DistillConfig,
  options: { workspace: string; configFolder: string; progress: Progress },
): Promise<PreparedPrompts> {
  const loaded = await loadPrompts(config.sources, {
    workspace: options.workspace,
    configFolder: options.configFolder,
    badLines: config.badLines,
  });
  for (const bad of loaded.badLines)
    options.progress.log(`skipped ${bad.source}:${bad.line}: ${bad.reason}`, { ...bad });
  if (loaded.prompts.length === 0) throw new InputError("the prompt sources hold no prompt");
  const stages: StageCount[] = [
    {
      stage: "loaded",
      in: loaded.prompts.length + loaded.badLines.length,
      out: loaded.prompts.length,
      dropped: loaded.badLines.length ? { "bad line": loaded.badLines.length } : {},
    },
  ];
  const exact = new Set<string>();
  const near = new NearDuplicates(
    config.curation.dedupe.threshold,
    config.curation.dedupe.permutations,
    config.curation.dedupe.bands,
  );
  const dropped = { exact: 0, near: 0 };
  const unique = loaded.prompts.filter((prompt) => {
    // Messages come from files in a fixed shape: their JSON is a stable key.
    const key = JSON.stringify(prompt.messages);
    if (exact.has(key)) return (dropped.exact++, false);
    exact.add(key);
    if (near.add(promptText(prompt)).length > 0) return (dropped.near++, false);
    return true;
  });
  stages.push({ stage: "deduplicated", in: loaded.prompts.length, out: unique.length, dropped: { ...dropped } });
  const indexes = suiteIndexes(
    config.curation.decontaminate.suites,
    options.workspace,
    config.curation.decontaminate.n,
  );
  const contamination: Record<string, { prompts: number; records: number }> = Object.fromEntries(
    [...indexes.keys()].map((name) => [name, { prompts: 0, records: 0 }]),
  );
  const prompts = unique.filter((prompt) => {
    const suite = contaminatedBy(indexes, promptText(prompt));
    if (suite) contamination[suite]!.prompts++;
    return suite === undefined;
  });
  stages.push({
    stage: "decontaminated",
    in: unique.length,
    out: prompts.length,
    dropped: Object.fromEntries(Object.entries(contamination).map(([suite, c]) => [suite, c.prompts])),
  });
  return { prompts, stages, contamination, indexes, badLines: loaded.badLines };
}

/**
 * Curated prompts → the teachers' probes → every teacher's answers (through the response cache) → selection per
 * prompt → records (decontaminated again, now with the answer) → outputs. The outputs are a pure function of the
 * config and the cached answers: a rerun writes the same bytes.
 */
export async function runDistill(options: DistillRunOptions) {
  const { config, teachers, progress } = options;
  if (config.selection.judge && !options.judge)
    throw new InputError(`selection.judge names '${config.selection.judge.teacher}', and no judge was opened`);
  mkdirSync(options.out, { recursive: true });
  const { prompts, stages, contamination, indexes, badLines } = await preparePrompts(config, options);
  progress.log(`prompts: ${stages.map((s) => `${s.stage} ${s.out}`).join(", ")}`, { stages });

  // What each teacher's probes found: a behaviour shown is filtered from that teacher's answers.
  const shown = new Map<string, Set<ShownBehaviour>>(teachers.map((t) => [t.config.name, new Set()]));
  const probeFindings: ProbeFinding[] = [];
  for (const name of config.curation.probes) {
    const suite = openSuite(name, options.workspace);
    // Asked afresh on every run (through the response cache: nothing is paid twice): an eval folder reuses records by
    // teacher name, and a rebuilt teacher or a new release's suite must not inherit the last run's findings.
    rmSync(join(options.out, "probes", name), { recursive: true, force: true });
    const { summary } = await runEval({
      suite,
      models: teachers.map((t) => ({ name: t.config.name, teacher: t.teacher })),
      out: join(options.out, "probes", name),
      progress,
    });
    for (const finding of summary.findings) {
      if (!finding.shows || (finding.metric !== "deflected" && finding.metric !== "refused")) continue;
      shown.get(finding.model)!.add(finding.metric);
      probeFindings.push({
        suite: name,
        teacher: finding.model,
        metric: finding.metric,
        group: finding.group,
        difference: finding.difference.estimate,
        low: finding.difference.low,
      });
    }
  }
  for (const finding of probeFindings)
    progress.log(
      `${finding.teacher} shows ${finding.metric} on ${finding.suite} ${finding.group}: filtered from its answers`,
    );

  const { answers, tallies, interrupted } = await fanOut(prompts, teachers, {
    concurrency: config.concurrency,
    progress,
    signal: options.signal,
  });
  if (interrupted) throw new InterruptedError(answers.filter((a) => a.content !== undefined).length);

  // Answers grouped by prompt, teachers in config order, then samples.
  const order = new Map(teachers.map((t, i) => [t.config.name, i]));
  const byPrompt = prompts.map(() => [] as typeof answers);
  for (const answer of answers) byPrompt[answer.prompt]!.push(answer);
  for (const list of byPrompt)
    list.sort((a, b) => order.get(a.teacher)! - order.get(b.teacher)! || a.sample - b.sample);
  const selections: PromptSelection[] = [];
  for (const [index, prompt] of prompts.entries()) {
    const { judged, vote } = screenAnswers(prompt, byPrompt[index]!, config, shown);
    const ranked =
      config.selection.judge && options.judge
        ? await judgeAnswers(prompt, judged, config.selection.judge, options.judge)
        : judged;
    selections.push(keepAnswers(index, ranked, vote, config));
  }
  // Records: a kept answer whose text holds an eval item's n-gram goes too.
  for (const selection of selections) {
    selection.kept = selection.kept.filter((judged) => {
      const suite = contaminatedBy(indexes, `${promptText(prompts[selection.prompt]!)}\n${judged.answer.content}`);
      if (suite) contamination[suite]!.records++;
      return suite === undefined;
    });
    // A preference pair stands on a kept answer.
    if (selection.preference && !selection.kept.includes(selection.preference.chosen)) delete selection.preference;
  }
  return writeOutputs({
    out: options.out,
    progress,
    config,
    configHash: sha256(stableStringify(config)),
    teachers,
    prompts,
    selections,
    tallies,
    stages,
    contamination,
    probeFindings,
    badLines,
  });
}

/** SIGINT: no new call was started, those in flight finished, and every finished answer is in the cache. */
export class InterruptedError extends InputError {
  constructor(answered: number) {
    super(`interrupted: ${answered} answers are in the response cache; run again to finish (nothing is asked twice)`);
  }
}
