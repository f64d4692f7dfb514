import { appendFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../core/atomic-write.ts";
import { errorMessage, InputError } from "../core/errors.ts";
import { sha256, stableStringify } from "../core/hash.ts";
import type { Family } from "../core/family.ts";
import type { Progress } from "../core/progress.ts";
import type { Teacher } from "../teachers/teacher.ts";
import {
  differenceSd,
  mcnemarExact,
  minimumDetectableEffect,
  pairedBootstrap,
  wilson,
  type Interval,
} from "./stats.ts";
import { renderReport } from "./report.ts";
import type { EvalItem, Suite } from "./suite.ts";

/** One model's answer to one item, as `items.jsonl` holds it (no timings: the same answers give the same file). */
export interface ItemRecord {
  model: string;
  item: string;
  group: string;
  /** One boolean per metric of the suite; absent when the call failed. */
  scores?: Record<string, boolean>;
  answer?: string;
  reasoning?: string;
  /** The call failed (after the teacher's own retries): the item counts as an error, never dropped. */
  error?: string;
  completionTokens?: number;
}

export interface ModelUnderTest {
  name: string;
  teacher: Teacher;
}

export interface EvalRunOptions {
  suite: Suite;
  models: ModelUnderTest[];
  /** `items.jsonl` and `summary.json` go here; records already there are kept, and their calls not made again. */
  out: string;
  /** Calls in flight per model (each teacher's scheduler may hold them to less). */
  concurrency?: number;
  progress: Progress;
  seed?: number;
}

const key = (model: string, item: string) => `${model}\u0000${item}`;

/** The records of an earlier, interrupted run (a torn last line is dropped: its call is made again). */
function previousRecords(path: string): Map<string, ItemRecord> {
  const records = new Map<string, ItemRecord>();
  if (!existsSync(path)) return records;
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    try {
      const record = JSON.parse(line) as ItemRecord;
      // A failed call is tried again on a rerun; an answer is kept.
      if (record.error === undefined) records.set(key(record.model, record.item), record);
    } catch {
      // the line being written when the run was killed
    }
  }
  return records;
}

/**
 * Asks every model every item (greedy, the suite's max tokens), scores each answer, and appends each record to
 * `items.jsonl` as it lands, so a killed run resumes without repeating a call. At the end `items.jsonl` is rewritten
 * in a fixed order (models, then items), and `summary.json` and `report.html` written: the same records give the same
 * files.
 */
export async function runEval(
  options: EvalRunOptions,
): Promise<{ summary: EvalSummary; records: ItemRecord[]; reused: number; called: number }> {
  const { suite, models, out, progress } = options;
  mkdirSync(out, { recursive: true });
  await checkSameSuite(out, suite);
  const itemsPath = join(out, "items.jsonl");
  const done = previousRecords(itemsPath);
  // Answers this run need not ask for again (the folder may also hold other models' records).
  const reused = models.reduce(
    (sum, model) => sum + suite.items.filter((item) => done.has(key(model.name, item.id))).length,
    0,
  );
  let called = 0;
  await Promise.all(
    models.map(async (model) => {
      const todo = suite.items.filter((item) => !done.has(key(model.name, item.id)));
      const task = progress.task(model.name, suite.items.length, "items");
      let finished = suite.items.length - todo.length;
      task.update(finished);
      let next = 0;
      const worker = async () => {
        while (next < todo.length) {
          const item = todo[next++]!;
          const record = await ask(model, item, suite);
          called++;
          appendFileSync(itemsPath, `${JSON.stringify(record)}\n`);
          done.set(key(model.name, item.id), record);
          task.update(++finished);
        }
      };
      await Promise.all(Array.from({ length: options.concurrency ?? 4 }, worker));
      task.finish();
    }),
  );
  const ordered = models.flatMap((model) => suite.items.map((item) => done.get(key(model.name, item.id))!));
  await writeFileAtomic(itemsPath, ordered.map((record) => `${JSON.stringify(record)}\n`).join(""));
  const summary = summarize(
    suite,
    models.map((model) => model.name),
    ordered,
    options.seed ?? 1,
  );
  await writeFileAtomic(join(out, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);
  await writeFileAtomic(join(out, "report.html"), renderReport(summary));
  return { summary, records: ordered, reused, called };
}

/**
 * Records are reused by model and item id: a folder holding a run of another suite, or of this one with other items or
 * another answer length, must not lend them. Its fingerprint is kept in `run.json`.
 */
async function checkSameSuite(out: string, suite: Suite): Promise<void> {
  const fingerprint = sha256(
    stableStringify({
      suite: suite.name,
      maxTokens: suite.maxTokens,
      items: suite.items.map((item) => [item.id, item.messages, item.reference, item.choices ?? null]),
    }),
  );
  const path = join(out, "run.json");
  if (existsSync(path)) {
    const previous = JSON.parse(readFileSync(path, "utf8")) as { suite?: string; fingerprint?: string };
    if (previous.fingerprint !== fingerprint) {
      throw new InputError(
        `${out} holds a run of ${previous.suite === suite.name ? "other items of" : `the suite '${previous.suite}', not`} '${suite.name}': give another --out`,
      );
    }
    return;
  }
  await writeFileAtomic(path, `${JSON.stringify({ suite: suite.name, fingerprint }, null, 2)}\n`);
}

async function ask(model: ModelUnderTest, item: EvalItem, suite: Suite): Promise<ItemRecord> {
  if (item.choices) return choose(model, item);
  try {
    const response = await model.teacher.generate({
      messages: item.messages,
      maxTokens: suite.maxTokens,
      temperature: 0,
    });
    return {
      model: model.name,
      item: item.id,
      group: item.group,
      scores: suite.score(item, response.content),
      answer: response.content,
      reasoning: response.reasoning === "" ? undefined : response.reasoning,
      completionTokens: response.usage.completionTokens,
    };
  } catch (error) {
    return { model: model.name, item: item.id, group: item.group, error: errorMessage(error) };
  }
}

/** What a family's model writes when its answer is done (a generic template's end is not known: nothing). */
const END_OF_ANSWER: Record<Family, string> = {
  qwen: "<|im_end|>",
  gemma: "<end_of_turn>",
  gptoss: "<|return|>",
  generic: "",
};

/**
 * A multiple-choice item, scored as lm-evaluation-harness does: the model's log-likelihood of each answer after the
 * question (`Teacher.score`, teacher-forced, the answer followed by the end of the model's turn), the most likely one
 * chosen (`acc`), and the most likely per character (`acc_norm`, fairer to long answers). A teacher that cannot
 * score (an HTTP server without prompt log-probs) fails the item with its clear error, counted.
 */
async function choose(model: ModelUnderTest, item: EvalItem): Promise<ItemRecord> {
  try {
    // Each answer and then the end of the turn: "2000" must not win over "20000" by stopping short.
    const end = END_OF_ANSWER[model.teacher.family];
    const logprobs: number[] = [];
    for (const choice of item.choices!) {
      logprobs.push((await model.teacher.score({ messages: item.messages, continuation: choice + end })).logprob);
    }
    const best = (values: number[]) => values.indexOf(Math.max(...values));
    const right = item.choices!.indexOf(item.reference);
    const chosen = best(logprobs);
    return {
      model: model.name,
      item: item.id,
      group: item.group,
      scores: { acc: chosen === right, acc_norm: best(logprobs.map((l, i) => l / item.choices![i]!.length)) === right },
      answer: item.choices![chosen],
    };
  } catch (error) {
    return { model: model.name, item: item.id, group: item.group, error: errorMessage(error) };
  }
}

export interface GroupScore extends Interval {
  correct: number;
  total: number;
  errors: number;
}

export interface Comparison {
  a: string;
  b: string;
  group: string;
  metric: string;
  /** b − a, with its paired-bootstrap interval. */
  difference: Interval;
  mcnemarP: number;
  /** The smallest difference this many items detects at 80 % power (from the observed spread of differences). */
  minimumDetectable: number;
  significant: boolean;
}

export interface EvalSummary {
  suite: string;
  items: number;
  models: string[];
  metrics: string[];
  /** model → metric → group ("all" included) → score. Errors count as wrong, and are counted. */
  scores: Record<string, Record<string, Record<string, GroupScore>>>;
  /** Every pair of models, on the primary metric, per group and overall. */
  comparisons: Comparison[];
}

/** Accuracy with Wilson intervals per model, metric and group, and paired comparisons of every two models. */
export function summarize(suite: Suite, models: string[], records: ItemRecord[], seed: number): EvalSummary {
  const groups = ["all", ...new Set(suite.items.map((item) => item.group))];
  const byModel = new Map(models.map((model) => [model, records.filter((record) => record.model === model)]));
  const scores: EvalSummary["scores"] = {};
  for (const model of models) {
    scores[model] = {};
    for (const metric of suite.metrics) {
      scores[model][metric] = {};
      for (const group of groups) {
        const mine = byModel.get(model)!.filter((record) => group === "all" || record.group === group);
        const correct = mine.filter((record) => record.scores?.[metric] === true).length;
        const errors = mine.filter((record) => record.error !== undefined).length;
        scores[model][metric][group] = { ...wilson(correct, mine.length), correct, total: mine.length, errors };
      }
    }
  }
  const metric = suite.metrics[0]!;
  const comparisons: Comparison[] = [];
  for (let i = 0; i < models.length; i++) {
    for (let j = i + 1; j < models.length; j++) {
      for (const group of groups) {
        const items = suite.items.filter((item) => group === "all" || item.group === group);
        const value = (model: string) => {
          const index = new Map(byModel.get(model)!.map((record) => [record.item, record]));
          return items.map((item) => (index.get(item.id)?.scores?.[metric] ? 1 : 0));
        };
        const a = value(models[i]!);
        const b = value(models[j]!);
        const difference = pairedBootstrap(a, b, { seed, resamples: 10_000 });
        const mcnemar = mcnemarExact(
          a.map((v) => v === 1),
          b.map((v) => v === 1),
        );
        comparisons.push({
          a: models[i]!,
          b: models[j]!,
          group,
          metric,
          difference: { estimate: difference.estimate, low: difference.low, high: difference.high },
          mcnemarP: mcnemar.pValue,
          minimumDetectable: minimumDetectableEffect(items.length, spreadOf(a, b)),
          significant: mcnemar.pValue < 0.05,
        });
      }
    }
  }
  return { suite: suite.name, items: suite.items.length, models, metrics: suite.metrics, scores, comparisons };
}

/**
 * The spread of per-item differences for the detectable effect: the observed one, or where the two models never
 * disagreed, the most a discordance rate consistent with none seen allows (the rule of three: q ≤ 3/n, sd ≤ √q).
 */
export function spreadOf(a: readonly number[], b: readonly number[]): number {
  const observed = differenceSd(a, b);
  return observed > 0 ? observed : Math.sqrt(3 / Math.max(1, a.length));
}
