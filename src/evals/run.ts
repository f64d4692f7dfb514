import { appendFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../core/atomic-write.ts";
import { errorMessage, InputError } from "../core/errors.ts";
import { sha256, stableStringify } from "../core/hash.ts";
import type { Family } from "../core/family.ts";
import type { Progress } from "../core/progress.ts";
import type { Teacher } from "../teachers/teacher.ts";
import { judgePairs, type Judge } from "./judge.ts";
import { renderReport } from "./report.ts";
import { summarize, type EvalSummary } from "./summary.ts";
import type { EvalItem, Suite } from "./suite.ts";

/** One model's answer to one item, as `items.jsonl` holds it (no timings: the same answers give the same file). */
export interface ItemRecord {
  model: string;
  item: string;
  /** Which of an item's samples (absent when each item is asked once). */
  sample?: number;
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
  /** The paired bootstrap's seed. */
  seed?: number;
  /** Answers per item (default 1, greedy); more are sampled at `temperature`, sample s with seed s + 1. */
  samples?: number;
  /** The sampling temperature when `samples` > 1 (default 0.7). */
  temperature?: number;
  /** A judge teacher: scores rubric suites, classes probe answers, and compares pairs on a pairwise rubric. */
  judge?: Judge;
}

const key = (model: string, item: string, sample = 0) => `${model}\u0000${item}\u0000${sample}`;

/** The records of an earlier, interrupted run (a torn last line is dropped: its call is made again). */
function previousRecords(path: string): Map<string, ItemRecord> {
  const records = new Map<string, ItemRecord>();
  if (!existsSync(path)) return records;
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    try {
      const record = JSON.parse(line) as ItemRecord;
      // A failed call is tried again on a rerun; an answer is kept.
      if (record.error === undefined) records.set(key(record.model, record.item, record.sample), record);
    } catch {
      // the line being written when the run was killed
    }
  }
  return records;
}

/**
 * Asks every model every item (greedy, the suite's max tokens; or `samples` times, sampled), scores each answer, and
 * appends each record to `items.jsonl` as it lands, so a killed run resumes without repeating a call. At the end
 * `items.jsonl` is rewritten in a fixed order (models, items, samples), and `summary.json` and `report.html` written:
 * the same records give the same files.
 */
export async function runEval(
  options: EvalRunOptions,
): Promise<{ summary: EvalSummary; records: ItemRecord[]; reused: number; called: number }> {
  const { suite, models, out, progress } = options;
  const samples = options.samples ?? 1;
  const temperature = samples > 1 ? (options.temperature ?? 0.7) : 0;
  if (samples > 1 && suite.items.some((item) => item.choices))
    throw new InputError(`'${suite.name}' is scored by log-likelihood: one answer an item, --samples does not apply`);
  if (suite.judged?.required && !options.judge)
    throw new InputError(`the suite '${suite.name}' is scored by a judge: give one (--judge)`);
  const judge = suite.judged && options.judge ? { judge: options.judge, score: suite.judged.score } : undefined;
  mkdirSync(out, { recursive: true });
  // A judge's scores are not the pattern rules': a folder holds one or the other.
  await checkSameSuite(out, suite, {
    ...(samples > 1 ? { samples, temperature } : {}),
    ...(judge ? { judge: judge.judge.teacher.name } : {}),
  });
  const itemsPath = join(out, "items.jsonl");
  const done = previousRecords(itemsPath);
  const units = suite.items.flatMap((item) => Array.from({ length: samples }, (_, sample) => ({ item, sample })));
  // Answers this run need not ask for again (the folder may also hold other models' records).
  const reused = models.reduce(
    (sum, model) => sum + units.filter(({ item, sample }) => done.has(key(model.name, item.id, sample))).length,
    0,
  );
  let called = 0;
  await Promise.all(
    models.map(async (model) => {
      const todo = units.filter(({ item, sample }) => !done.has(key(model.name, item.id, sample)));
      const task = progress.task(model.name, units.length, samples > 1 ? "answers" : "items");
      let finished = units.length - todo.length;
      task.update(finished);
      let next = 0;
      const worker = async () => {
        while (next < todo.length) {
          const { item, sample } = todo[next++]!;
          const record = await ask(model, item, suite, samples > 1 ? { sample, temperature } : undefined, judge);
          called++;
          appendFileSync(itemsPath, `${JSON.stringify(record)}\n`);
          done.set(key(model.name, item.id, sample), record);
          task.update(++finished);
        }
      };
      await Promise.all(Array.from({ length: options.concurrency ?? 4 }, worker));
      task.finish();
    }),
  );
  const ordered = models.flatMap((model) =>
    units.map(({ item, sample }) => done.get(key(model.name, item.id, sample))!),
  );
  await writeFileAtomic(itemsPath, ordered.map((record) => `${JSON.stringify(record)}\n`).join(""));
  const names = models.map((model) => model.name);
  const summary = summarize(suite, names, ordered, options.seed ?? 1, samples);
  if (suite.pairwise && !options.judge) progress.log(`${suite.name}: its pairwise rubric needs a judge (--judge)`);
  if (suite.pairwise && options.judge) {
    const answers = new Map(ordered.map((r) => [key(r.model, r.item, r.sample), r.answer]));
    summary.pairwise = await judgePairs(
      options.judge,
      suite.pairwise,
      suite.items,
      (model, item) => answers.get(key(model, item)),
      names,
    );
  }
  await writeFileAtomic(join(out, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);
  await writeFileAtomic(join(out, "report.html"), renderReport(summary));
  return { summary, records: ordered, reused, called };
}

/**
 * Records are reused by model and item id: a folder holding a run of another suite, or of this one with other items,
 * answer length, sampling or judge, must not lend them. Its fingerprint is kept in `run.json`.
 */
async function checkSameSuite(out: string, suite: Suite, sampling: object): Promise<void> {
  const fingerprint = sha256(
    stableStringify({
      suite: suite.name,
      maxTokens: suite.maxTokens,
      ...sampling,
      ...(suite.template ? { template: suite.template } : {}),
      items: suite.items.map((item) => [item.id, item.messages, item.reference, item.choices ?? null]),
    }),
  );
  const path = join(out, "run.json");
  if (existsSync(path)) {
    const previous = JSON.parse(readFileSync(path, "utf8")) as { suite?: string; fingerprint?: string };
    if (previous.fingerprint !== fingerprint) {
      throw new InputError(
        `${out} holds a run of ${previous.suite === suite.name ? "other items or settings of" : `the suite '${previous.suite}', not`} '${suite.name}': give another --out`,
      );
    }
    return;
  }
  await writeFileAtomic(path, `${JSON.stringify({ suite: suite.name, fingerprint }, null, 2)}\n`);
}

async function ask(
  model: ModelUnderTest,
  item: EvalItem,
  suite: Suite,
  sampled: { sample: number; temperature: number } | undefined,
  judge: { judge: Judge; score: NonNullable<Suite["judged"]>["score"] } | undefined,
): Promise<ItemRecord> {
  if (item.choices) return choose(model, item, suite);
  // Each sample its own seed: reproducible, and a key of its own in the response cache.
  const sampling = sampled ? { temperature: sampled.temperature, seed: sampled.sample + 1 } : { temperature: 0 };
  const which = { model: model.name, item: item.id, ...(sampled ? { sample: sampled.sample } : {}), group: item.group };
  try {
    const response = await model.teacher.generate({
      messages: item.messages,
      maxTokens: suite.maxTokens,
      ...sampling,
      ...suite.template,
    });
    return {
      ...which,
      // A judge's failure (no verdict) fails the item: counted as an error like the model's own.
      scores: judge ? await judge.score(judge.judge, item, response.content) : suite.score(item, response.content),
      answer: response.content,
      reasoning: response.reasoning === "" ? undefined : response.reasoning,
      completionTokens: response.usage.completionTokens,
    };
  } catch (error) {
    return { ...which, error: errorMessage(error) };
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
async function choose(model: ModelUnderTest, item: EvalItem, suite: Suite): Promise<ItemRecord> {
  try {
    // Each answer and then the end of the turn: "2000" must not win over "20000" by stopping short.
    const end = END_OF_ANSWER[model.teacher.family];
    const logprobs: number[] = [];
    for (const choice of item.choices!) {
      const request = { messages: item.messages, continuation: choice + end, ...suite.template };
      logprobs.push((await model.teacher.score(request)).logprob);
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
