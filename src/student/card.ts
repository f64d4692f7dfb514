import { basename, join, relative } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "../core/atomic-write.ts";
import { CARD_FILE, type ModelCard } from "../export/model-card.ts";
import type { StudentEvaluation } from "./evaluate.ts";
import type { StudentTraining } from "./train-student.ts";

const percent = (x: number) => `${(100 * x).toFixed(1)}%`;

function evalTables(evaluation: StudentEvaluation, folder: string): string[] {
  const lines: string[] = [];
  for (const outcome of evaluation.suites) {
    const { summary } = outcome;
    for (const metric of summary.metrics) {
      const groups = Object.keys(summary.scores[summary.models[0]!]![metric]!);
      lines.push(
        `### ${outcome.suite}: ${metric} (${summary.items} items; [report](${relative(folder, outcome.report)}))`,
        "",
        `| model | ${groups.join(" | ")} |`,
        `|---|${groups.map(() => "---").join("|")}|`,
      );
      for (const model of summary.models) {
        const cells = groups.map((g) => {
          const s = summary.scores[model]![metric]![g]!;
          return `${percent(s.estimate)} [${percent(s.low)}, ${percent(s.high)}]`;
        });
        lines.push(`| ${model} | ${cells.join(" | ")} |`);
      }
      lines.push("");
    }
    for (const f of summary.findings.filter((x) => x.model === summary.models[0]))
      lines.push(
        `${f.model} ${f.shows ? "**shows**" : "does not show"} ${f.metric} on ${f.group}: ${percent(f.difference.estimate)} [${percent(f.difference.low)}, ${percent(f.difference.high)}] above ${f.control}.`,
        "",
      );
  }
  return lines;
}

/** Writes `MODEL_CARD.md` (for people) and `avocado-card.json` (for `avocado serve`'s release check). */
export async function writeStudentCard(
  folder: string,
  training: StudentTraining,
  evaluation: StudentEvaluation | undefined,
): Promise<ModelCard> {
  const card: ModelCard = {
    format: "avocado-card/1",
    name: training.name,
    gate: evaluation
      ? {
          pass: evaluation.pass,
          margin: evaluation.margin,
          failures: evaluation.failures,
          underpowered: evaluation.suites.some((s) =>
            s.gates.some((g) => g.result.checks.some((check) => check.verdict === "underpowered")),
          ),
          reports: evaluation.suites.map((s) => relative(folder, s.report)),
        }
      : null,
  };
  const a = training.architecture;
  const last = (term: string) => training.terms[term]?.at(-1)?.[1];
  const verdict = !evaluation
    ? "**not evaluated**: `avocado serve` refuses it without `--allow-ungated`."
    : evaluation.pass
      ? `**PASS**: no teacher is better by more than ${percent(evaluation.margin)} on any gated rate.`
      : `**FAIL**: \`avocado serve\` refuses it without \`--allow-ungated\`.\n\n${evaluation.failures.map((f) => `- ${f}`).join("\n")}`;
  const text = [
    `# ${training.name}`,
    "",
    `A student distilled by Avocado from the distill run \`${basename(training.run.folder)}\` (config ${training.run.configHash.slice(0, 12)}).`,
    "",
    "## Model",
    "",
    `- Qwen3-style decoder: ${a.layers} layers, d=${a.hidden}, ${a.heads} heads (${a.kvHeads} KV), FFN ${a.ffn}, context ${a.context}.`,
    `- Tokenizer: ${training.data.vocabulary.reference.description}, trimmed to ${training.data.vocabulary.size} tokens (id map in the GGUF).`,
    `- Files: \`${basename(training.gguf)}\` (GGUF), \`model.safetensors\` + \`config.json\` (Hugging Face layout).`,
    "",
    "## Training",
    "",
    `- ${training.data.sequences} records: ${Object.entries(training.data.records)
      .map(([t, n]) => `${t} ${n}`)
      .join(", ")}.`,
    `- KD rows: ${training.data.kdRows.same} same tokenizer, ${training.data.kdRows.crossExact} other tokenizers mapped by text, ${training.data.kdRows.crossSorted} sorted (ULD).`,
    `- Phases: ${training.phases.map((p) => `${p.name} (${p.result.history.at(-1)?.[0] ?? 0} steps, ${p.result.seconds.toFixed(0)} s)`).join(", ")}.`,
    `- Final losses: ${Object.keys(training.terms)
      .map((t) => `${t} ${last(t)?.toFixed(4)}`)
      .join(", ")}. Curves: ${Object.keys(training.terms)
      .map((t) => `[${t}](loss-${t}.svg)`)
      .join(", ")}.`,
    "",
    "## Release gate",
    "",
    verdict,
    "",
    ...(evaluation ? ["## Evaluation", "", ...evalTables(evaluation, folder)] : []),
    "## Licences inherited",
    "",
    "From the teachers whose records trained it (`licenses.json`):",
    "",
    ...training.licences.teachers.map(
      (l) => `- **${l.teacher}** (${l.licence}; ${l.records} records): ${l.obligations}`,
    ),
    ...(training.licences.notInherited.length
      ? ["", `None from ${training.licences.notInherited.join(", ")}: no record of theirs trained it.`]
      : []),
    "",
  ].join("\n");
  for (const licence of training.licences.teachers)
    if (licence.notice) await writeFileAtomic(join(folder, licence.notice.file), licence.notice.text);
  await writeFileAtomic(join(folder, "MODEL_CARD.md"), text);
  await writeJsonAtomic(join(folder, CARD_FILE), card);
  return card;
}
