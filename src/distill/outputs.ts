import { join } from "node:path";
import type { DistillConfig } from "../core/config/distill-schema.ts";
import { writeFileAtomic } from "../core/atomic-write.ts";
import type { Progress } from "../core/progress.ts";
import type { TeacherMessage } from "../teachers/teacher.ts";
import type { TeacherTally } from "./generate.ts";
import { captureLogprobs } from "./capture.ts";
import { obligationsOf } from "./licences.ts";
import { renderDistillReport } from "./report.ts";
import type { DistillTeacherRun, ProbeFinding, StageCount } from "./run.ts";
import { EXCLUSIONS, type Judged, type PromptSelection } from "./select.ts";
import type { BadLine, DistillPrompt } from "./sources.ts";

interface OutputInput {
  out: string;
  progress: Progress;
  config: DistillConfig;
  configHash: string;
  teachers: DistillTeacherRun[];
  prompts: DistillPrompt[];
  selections: PromptSelection[];
  tallies: Record<string, TeacherTally>;
  stages: StageCount[];
  contamination: Record<string, { prompts: number; records: number }>;
  probeFindings: ProbeFinding[];
  badLines: BadLine[];
}

/** Right answers over checked ones, per tag (the prompt's first) and over all. */
type Accuracy = Record<string, { correct: number; total: number }>;

function tally(accuracy: Accuracy, tag: string, correct: boolean) {
  for (const key of [tag, "all"]) {
    const entry = (accuracy[key] ??= { correct: 0, total: 0 });
    entry.total++;
    if (correct) entry.correct++;
  }
}

/**
 * The assistant's turn as the config keeps reasoning: inline in `<think>`, dropped, or in `reasoning_content`. The
 * text is trimmed: the blank lines a chat format leaves after its reasoning are not part of the answer.
 */
function assistantTurn(judged: Judged, mode: DistillConfig["curation"]["reasoning"]): Record<string, string> {
  const content = judged.answer.content?.trim();
  const reasoning = judged.answer.reasoning?.trim();
  if (!reasoning || mode === "strip") return { role: "assistant", content: content! };
  if (mode === "keep") return { role: "assistant", content: `<think>\n${reasoning}\n</think>\n\n${content}` };
  return { role: "assistant", content: content!, reasoning_content: reasoning };
}

/**
 * Writes the run's files, each atomically, each a function of its inputs only (no clock, no timings): `dataset.jsonl`
 * (OpenAI fine-tuning chat records with provenance in `metadata`), `preferences.jsonl`, `errors.jsonl`,
 * `manifest.json`, the notices a teacher's licence requires, and `report.html`.
 */
export async function writeOutputs(input: OutputInput) {
  const { config, prompts, selections, teachers } = input;
  const teacherOf = new Map(teachers.map((t) => [t.config.name, t]));
  const provenance = (judged: Judged, prompt: DistillPrompt, selection: PromptSelection) => {
    const run = teacherOf.get(judged.answer.teacher)!;
    const { name, samples: _samples, tags: _tags, budgetMicros: _budget, ...sampling } = run.config;
    return {
      prompt: prompt.id,
      tags: prompt.tags,
      teacher: name,
      model: run.identity,
      sample: judged.answer.sample,
      sampling: { ...sampling, seed: judged.answer.sample + 1 },
      selection: {
        ...(judged.correct !== undefined ? { verified: judged.correct } : {}),
        ...(selection.vote ? { vote: selection.vote } : {}),
        ...(judged.extracted !== undefined ? { extracted: judged.extracted } : {}),
        ...(judged.judgeScore !== undefined ? { judgeScore: judged.judgeScore } : {}),
      },
    };
  };
  const messagesOf = (prompt: DistillPrompt, judged: Judged): (TeacherMessage | Record<string, string>)[] => [
    ...prompt.messages,
    assistantTurn(judged, config.curation.reasoning),
  ];
  const dataset: string[] = [];
  const preferences: string[] = [];
  const errors: string[] = [];
  const selectedAccuracy: Accuracy = {};
  const teacherAccuracy: Record<string, Accuracy> = Object.fromEntries(teachers.map((t) => [t.config.name, {}]));
  const contributed: Record<string, number> = Object.fromEntries(teachers.map((t) => [t.config.name, 0]));
  const excluded: Record<string, Record<string, number>> = Object.fromEntries(
    teachers.map((t) => [t.config.name, Object.fromEntries(EXCLUSIONS.map((reason) => [reason, 0]))]),
  );
  // The probe filter's effect per tag: answers it removed, and whether another teacher's answer still covers it.
  const probeFiltered: Record<string, { removed: number; prompts: number; covered: number }> = {};
  for (const selection of selections) {
    const prompt = prompts[selection.prompt]!;
    const tag = prompt.tags[0] ?? "untagged";
    for (const judged of selection.judged) {
      const teacher = judged.answer.teacher;
      if (judged.excluded) excluded[teacher]![judged.excluded]!++;
      if (judged.correct !== undefined) tally(teacherAccuracy[teacher]!, tag, judged.correct);
      if (judged.answer.error !== undefined)
        errors.push(
          JSON.stringify({ prompt: prompt.id, teacher, sample: judged.answer.sample, error: judged.answer.error }),
        );
    }
    const filtered = selection.judged.filter((j) => j.excluded === "probe").length;
    if (filtered > 0) {
      const entry = (probeFiltered[tag] ??= { removed: 0, prompts: 0, covered: 0 });
      entry.removed += filtered;
      entry.prompts++;
      if (selection.kept.length > 0) entry.covered++;
    }
    for (const judged of selection.kept) {
      contributed[judged.answer.teacher]!++;
      if (judged.correct !== undefined) tally(selectedAccuracy, tag, judged.correct);
      dataset.push(
        JSON.stringify({ messages: messagesOf(prompt, judged), metadata: provenance(judged, prompt, selection) }),
      );
    }
    if (selection.preference) {
      const { chosen, rejected } = selection.preference;
      preferences.push(
        JSON.stringify({
          prompt: prompt.messages,
          chosen: [assistantTurn(chosen, config.curation.reasoning)],
          rejected: [assistantTurn(rejected, config.curation.reasoning)],
          metadata: {
            prompt: prompt.id,
            chosen: chosen.answer.teacher,
            rejected: rejected.answer.teacher,
            reason: rejected.excluded,
          },
        }),
      );
    }
  }
  const logprobs = await captureLogprobs({
    out: input.out,
    config,
    teachers,
    prompts,
    selections,
    assistantText: (selection, kept) => assistantTurn(selection.kept[kept]!, config.curation.reasoning).content!,
    progress: input.progress,
  });
  const licences = teachers.map((t) => ({ teacher: t.config.name, ...obligationsOf(t.licence) }));
  const notices = new Map(
    licences.filter((l) => l.notice && contributed[l.teacher]! > 0).map((l) => [l.notice!.file, l.notice!.text]),
  );
  const manifest = {
    format: "avocado-distill/1",
    configHash: input.configHash,
    records: dataset.length,
    preferences: preferences.length,
    stages: [
      ...input.stages,
      { stage: "answered", prompts: prompts.length, answers: selections.reduce((s, x) => s + x.judged.length, 0) },
      { stage: "selected", prompts: selections.filter((s) => s.kept.length > 0).length, records: dataset.length },
    ],
    decontamination: input.contamination,
    probes: { findings: input.probeFindings, filtered: probeFiltered },
    teachers: teachers.map((t) => ({
      name: t.config.name,
      family: t.family,
      model: t.identity,
      licence: t.licence,
      ...input.tallies[t.config.name]!,
      contributed: contributed[t.config.name]!,
      excluded: excluded[t.config.name]!,
      accuracy: teacherAccuracy[t.config.name]!,
    })),
    selectedAccuracy,
    ...(logprobs ? { logprobs } : {}),
    licences: licences.map(({ notice, ...rest }) => ({ ...rest, ...(notice ? { notice: notice.file } : {}) })),
    badLines: input.badLines,
  };
  const lines = (rows: string[]) => rows.map((row) => `${row}\n`).join("");
  await writeFileAtomic(join(input.out, "dataset.jsonl"), lines(dataset));
  await writeFileAtomic(join(input.out, "preferences.jsonl"), lines(preferences));
  await writeFileAtomic(join(input.out, "errors.jsonl"), lines(errors));
  for (const [file, text] of notices) await writeFileAtomic(join(input.out, file), text);
  await writeFileAtomic(join(input.out, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  await writeFileAtomic(join(input.out, "report.html"), renderDistillReport(manifest));
  return manifest;
}

export type DistillManifest = Awaited<ReturnType<typeof writeOutputs>>;
