import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CHAT_FORMATS } from "../chat/chat-format.ts";
import { writeFileAtomic } from "../core/atomic-write.ts";
import type { Architecture } from "../core/config/schema.ts";
import { errorMessage } from "../core/errors.ts";
import { SeededRandom } from "../core/random.ts";
import { withOffsets } from "../distill/logprobs.ts";
import { exportModel, ggufFileName } from "../export/export-model.ts";
import { findTeacher, openTeacher } from "../teachers/registry.ts";
import type { Teacher } from "../teachers/teacher.ts";
import { referenceTokenizer } from "../tokenizers/index.ts";
import type { TrimmedVocabulary } from "../tokenizers/trim.ts";
import { runTrainer, type TrainJob, type TrainResult } from "../train/launcher.ts";
import { renderExample } from "../train/render.ts";
import { prepareStudentData, type StudentExample } from "./prepare.ts";
import type { DistillRunData } from "./run-data.ts";
import { resetUnlessSame } from "./job-key.ts";
import { studentModelConfig } from "./models.ts";
import type { TrainStudentOptions } from "./train-student.ts";

interface RoundOptions extends TrainStudentOptions {
  run: DistillRunData;
  examples: readonly StudentExample[];
  vocabulary: TrimmedVocabulary;
  architecture: Architecture;
  job: Omit<TrainJob, "shards" | "out">;
  round: number;
  /** The weights the round starts from (HF folder). */
  source: string;
  out: string;
  key: string;
}

/**
 * One GKD round (Agarwal et al. 2024): the student answers prompts of the run by sampling, each answer's teacher (the
 * one whose record the prompt kept) scores it by teacher forcing through `Teacher.score`, and the student trains on
 * those sequences with KD only (its own answer is no SFT target), mixed with off-policy records at `mix`.
 */
export async function onPolicyRound(options: RoundOptions): Promise<TrainResult> {
  const { student, progress, vocabulary } = options;
  const settings = student.onPolicy;
  // The round fine-tunes a trained student: it starts at the off-policy phase's final rate (restarting at the peak
  // undid what that phase learnt: the first ablation's on-policy student fell from 58 % to 40 %) and decays from there.
  const base = options.job.optimization;
  const start = base.minLearningRate > 0 ? base.minLearningRate : base.learningRate / 10;
  const optimization = {
    ...base,
    steps: settings.steps,
    warmupSteps: 0,
    learningRate: start,
    minLearningRate: start / 10,
  };
  // The round's settings and schedule are part of its key: another one starts the round afresh.
  await resetUnlessSame(options.out, `${options.key}/${JSON.stringify({ settings, optimization })}`);
  const samplesPath = join(options.out, "samples.jsonl");
  let onPolicy: StudentExample[];
  if (existsSync(samplesPath)) {
    onPolicy = readFileSync(samplesPath, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as StudentExample);
  } else {
    onPolicy = await sampleAndScore(options);
    await writeFileAtomic(samplesPath, onPolicy.map((e) => `${JSON.stringify(e)}\n`).join(""));
  }
  const random = new SeededRandom(options.config.train.seed + options.round).fork("on-policy-mix");
  const offCount = Math.round((onPolicy.length * (1 - settings.mix)) / Math.max(settings.mix, 1e-6));
  const mixed = [...onPolicy, ...random.shuffle([...options.examples]).slice(0, offCount)];
  const shards = join(options.out, "shards");
  await prepareStudentData({
    examples: mixed,
    config: student,
    architecture: options.architecture,
    k: options.run.k,
    folder: shards,
    extraPrompts: [],
    progress,
    vocabulary,
  });
  return runTrainer(
    { ...options.job, optimization, initFrom: options.source, shards, out: options.out },
    {
      python: options.python,
      label: `on-policy round ${options.round}`,
      progress,
      processes: student.processes,
      sharing: options.sharing,
    },
  );
}

async function sampleAndScore(options: RoundOptions): Promise<StudentExample[]> {
  const { student, progress, vocabulary } = options;
  const settings = student.onPolicy;
  const sampler = join(options.out, "sampler");
  await exportModel({
    source: options.source,
    out: sampler,
    encodings: ["f32"],
    descriptor: { name: student.name, family: student.tokenizer, fullIds: [...vocabulary.fullIds] },
  });
  const studentModel = await openTeacher(
    studentModelConfig(student.name, student.tokenizer, join(sampler, ggufFileName("f32")), settings.maxTokens),
  );
  const teachers = new Map<string, Teacher>();
  const format = CHAT_FORMATS[student.tokenizer];
  const tokenizer = referenceTokenizer(student.tokenizer);
  const random = new SeededRandom(options.config.train.seed + options.round).fork("on-policy");
  const scorable = options.examples.filter((e) => e.teacherTokens);
  const chosen = random.shuffle([...scorable]).slice(0, settings.prompts);
  const out: StudentExample[] = [];
  const skipped: Record<string, number> = {};
  const skip = (reason: string) => (skipped[reason] = (skipped[reason] ?? 0) + 1);
  const task = progress.task(`on-policy round ${options.round}: sample and score`, chosen.length, "prompts");
  try {
    for (const [i, example] of chosen.entries()) {
      task.update(i + 1);
      const { record } = example;
      const messages = [
        ...(record.system ? [{ role: "system" as const, content: record.system }] : []),
        { role: "user" as const, content: record.user },
      ];
      const answer = await studentModel.generate({
        messages,
        temperature: settings.temperature,
        maxTokens: settings.maxTokens,
        seed: options.round * 1_000_003 + i,
      });
      const content = answer.content.trim();
      if (content === "" || answer.finishReason === "length") {
        skip("no finished answer");
        continue;
      }
      const rendered = renderExample(format, tokenizer, { user: record.user, system: record.system, answer: content });
      if (!rendered.tokens.every((id) => vocabulary.has(id))) {
        skip("tokens outside the student's vocabulary");
        continue;
      }
      let teacher = teachers.get(record.teacher);
      if (!teacher) {
        const entry = await findTeacher(options.config, options.workspace, record.teacher);
        teacher = await openTeacher(entry.config);
        teachers.set(record.teacher, teacher);
      }
      try {
        const scored = await teacher.score({ messages, continuation: content, topLogprobs: options.run.k });
        out.push({
          record: { ...record, answer: content, reasoning: undefined },
          weight: example.weight,
          sft: false,
          teacherTokens: {
            teacher: record.teacher,
            family: example.teacherTokens!.family,
            tokens: withOffsets(content, scored.tokens, options.run.k),
          },
        });
      } catch (error) {
        skip(`scoring failed: ${errorMessage(error).slice(0, 80)}`);
      }
    }
  } finally {
    task.finish({ kept: out.length, ...skipped });
    await studentModel.close();
    for (const teacher of teachers.values()) await teacher.close();
  }
  options.log(
    `on-policy round ${options.round}: ${out.length} of ${chosen.length} student answers scored by their teachers` +
      (Object.keys(skipped).length ? ` (skipped: ${JSON.stringify(skipped)})` : ""),
  );
  return out;
}
