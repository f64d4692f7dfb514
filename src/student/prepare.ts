import { CHAT_FORMATS } from "../chat/chat-format.ts";
import type { Architecture } from "../core/config/schema.ts";
import type { StudentConfig } from "../core/config/student-schema.ts";
import { InputError } from "../core/errors.ts";
import type { TokenizerFamily } from "../core/family.ts";
import type { Progress } from "../core/progress.ts";
import { encodeLlamaText } from "../tokenizers/encode-llama-text.ts";
import { referenceTokenizer } from "../tokenizers/index.ts";
import { trimVocabulary, type TrimmedVocabulary } from "../tokenizers/trim.ts";
import { kdSidecar } from "../train/kd-shards.ts";
import { renderExample } from "../train/render.ts";
import { writeShards } from "../train/shards.ts";
import { alignRecord, checkSpelling, KdMode, StudentVocabulary, type KdRow, type SpellingTally } from "./align.ts";
import type { DistillRecord, DistillRunData, TeacherLogprobs } from "./run-data.ts";

/** A record's weight: the teacher's static weight, times (with `evidence`) how strongly selection backed the answer. */
export function recordWeight(record: DistillRecord, config: StudentConfig): number {
  const base = config.teachers[record.teacher] ?? 1;
  if (config.weighting === "static") return base;
  const { verified, vote, judgeScore } = record.selection;
  if (verified === true) return base;
  if (vote) return base * (vote.votes / Math.max(1, vote.of));
  // A judge's score is its wins against the prompt's other answers: one win counts fully.
  if (judgeScore !== undefined) return base * Math.min(1, 0.5 + 0.5 * judgeScore);
  return base;
}

export interface PreparedData {
  vocabulary: TrimmedVocabulary;
  sequences: number;
  maxLength: number;
  targetTokens: number;
  /** KD rows by mode (same tokenizer, other tokenizer mapped by text, other tokenizer sorted). */
  kdRows: { same: number; crossExact: number; crossSorted: number };
  /** Records used per teacher (weight > 0). */
  records: Record<string, number>;
  /** The records' lines in the dataset, in shard order (lineage for licences). */
  lines: number[];
}

/** One sequence to train on: a dataset record, or (on-policy) a student's own answer scored by a teacher. */
export interface StudentExample {
  record: DistillRecord;
  weight: number;
  /** false: the answer is no SFT target (a student's own sample: only the teacher's distribution is learnt). */
  sft: boolean;
  teacherTokens?: TeacherLogprobs;
}

/** The examples of a run with their weights (records of weight 0 left out). */
export function runExamples(run: DistillRunData, config: StudentConfig): StudentExample[] {
  return run.records
    .map((record) => ({
      record,
      weight: recordWeight(record, config),
      sft: true,
      ...(run.logprobs.has(record.line) ? { teacherTokens: run.logprobs.get(record.line)! } : {}),
    }))
    .filter((example) => example.weight > 0);
}

/**
 * Renders examples in the student's chat format, trims its tokenizer to them (and to the prompts it will be evaluated
 * on), aligns the teachers' top-k with its tokens, and writes shards with the KD sidecar. Refuses a context shorter
 * than the longest sequence, and a teacher whose log-prob ids spell other text than its answers.
 */
export async function prepareStudentData(options: {
  examples: readonly StudentExample[];
  config: StudentConfig;
  architecture: Architecture;
  k: number;
  folder: string;
  extraPrompts: readonly string[];
  progress: Progress;
  /** Reuse a vocabulary (an on-policy round keeps the student's). */
  vocabulary?: TrimmedVocabulary;
}): Promise<PreparedData> {
  const { config, examples } = options;
  const family: TokenizerFamily = config.tokenizer;
  const format = CHAT_FORMATS[family];
  const tokenizer = referenceTokenizer(family);
  const task = options.progress.task("render", examples.length, "records");
  const rendered = examples.map((example, i) => {
    task.update(i + 1);
    const { record } = example;
    return renderExample(format, tokenizer, {
      system: record.system,
      user: record.user,
      reasoning: record.reasoning,
      answer: record.answer,
    });
  });
  task.finish();
  if (rendered.length === 0) throw new InputError("the distill run has no record to train on (all weights 0?)");
  let vocabulary = options.vocabulary;
  if (!vocabulary) {
    const used = new Set<number>();
    for (const r of rendered) for (const id of r.tokens) used.add(id);
    for (const prompt of options.extraPrompts)
      for (const id of encodeLlamaText(tokenizer, format.renderPrompt({ user: prompt }))) used.add(id);
    const specials = format.controlTokens.map((text) => tokenizer.specialTokens.get(text)!);
    vocabulary = trimVocabulary(tokenizer, used, specials);
  }
  const maxLength = Math.max(...rendered.map((r) => r.tokens.length));
  if (maxLength > options.architecture.context)
    throw new InputError(
      `the student is too small for the data's context: the longest record is ${maxLength} tokens, student.architecture.context is ${options.architecture.context} (raise it, or drop long answers with distill curation.maxChars)`,
    );

  const student = new StudentVocabulary(tokenizer, vocabulary);
  const spelling = new Map<string, SpellingTally>();
  const kdRows = { same: 0, crossExact: 0, crossSorted: 0 };
  const wantKd = config.loss.kd > 0 || config.loss.crossKd > 0;
  const alignTask = options.progress.task("align teacher log-probs", examples.length, "records");
  const rows = examples.map((example, i): KdRow[] => {
    alignTask.update(i + 1);
    const teacher = example.teacherTokens;
    if (!wantKd || !teacher) return [];
    const sameFamily = teacher.family === family;
    if (sameFamily ? config.loss.kd === 0 : config.loss.crossKd === 0) return [];
    const tally = spelling.get(example.record.teacher) ?? { tokens: 0, misspelled: 0 };
    spelling.set(example.record.teacher, tally);
    const aligned = alignRecord({
      student,
      tokens: rendered[i]!.tokens,
      completionStart: rendered[i]!.promptLength,
      answer: example.record.answer,
      teacher: {
        family: teacher.family,
        tokenizer: referenceTokenizer(teacher.family as TokenizerFamily),
        tokens: teacher.tokens,
      },
      sameFamily,
      cross: config.loss.crossTokenizer,
      k: options.k,
      spelling: tally,
    });
    for (const row of aligned)
      if (row.mode === KdMode.same) kdRows.same++;
      else if (row.mode === KdMode.crossExact) kdRows.crossExact++;
      else kdRows.crossSorted++;
    return aligned;
  });
  alignTask.finish(kdRows);
  for (const [teacher, tally] of spelling) {
    const teacherFamily = examples.find((e) => e.record.teacher === teacher)!.teacherTokens!.family;
    checkSpelling(teacher, teacherFamily, tally);
  }
  const sequences = rendered.map((r, i) => ({
    tokens: vocabulary.fromFull(r.tokens),
    mask: examples[i]!.sft ? r.mask : r.mask.map(() => false),
  }));
  const index = await writeShards(
    options.folder,
    vocabulary.size,
    sequences,
    { family, fullIds: [...vocabulary.fullIds] },
    kdSidecar(
      sequences.map((s) => s.tokens.length),
      rows,
      examples.map((e) => e.weight),
      Math.max(1, options.k),
    ),
  );
  const records: Record<string, number> = {};
  for (const e of examples) records[e.record.teacher] = (records[e.record.teacher] ?? 0) + 1;
  return {
    vocabulary,
    sequences: sequences.length,
    maxLength,
    targetTokens: index.targetTokens,
    kdRows,
    records,
    lines: examples.map((e) => e.record.line),
  };
}
