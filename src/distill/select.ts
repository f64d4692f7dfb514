import type { DistillConfig } from "../core/config/distill-schema.ts";
import { classifyRefusal } from "../evals/refusal.ts";
import { NearDuplicates } from "./dedupe.ts";
import type { Answer } from "./generate.ts";
import type { DistillPrompt } from "./sources.ts";
import { extractAnswer, verifyAnswer } from "./verify.ts";

/** Why an answer was not kept, in the order the checks run. */
export const EXCLUSIONS = [
  "failed",
  "probe",
  "length",
  "language",
  "verify",
  "vote",
  "judge",
  "duplicate",
  "surplus",
] as const;
export type Exclusion = (typeof EXCLUSIONS)[number];

/** A behaviour a teacher's probes found: its answers classed so are not kept. */
export type ShownBehaviour = "deflected" | "refused";

export interface Judged {
  answer: Answer;
  /** The answer's extracted value (the vote's ballot). */
  extracted?: string;
  /** Right by the prompt's reference (undefined: no reference). */
  correct?: boolean;
  /** Best-of-N: wins against the other answers compared, by the judge (a tie counts a half). */
  judgeScore?: number;
  excluded?: Exclusion;
}

export interface PromptSelection {
  prompt: number;
  judged: Judged[];
  /** The kept answers, best first. */
  kept: Judged[];
  /** The vote's winner and its supporters (absent where no vote was needed or none won). */
  vote?: { answer: string; votes: number; of: number };
  /** A kept answer beside one the selection rejected as wrong, for preference training. */
  preference?: { chosen: Judged; rejected: Judged };
}

/** The share of letters in Latin script (1 for text with no letters). */
function latinShare(text: string): number {
  const letters = text.match(/\p{L}/gu) ?? [];
  if (letters.length === 0) return 1;
  return (text.match(/\p{Script=Latin}/gu) ?? []).length / letters.length;
}

/**
 * The answers worth keeping for one prompt, each check in turn: a teacher's answer classed as the behaviour its probes
 * found (deflection, refusal) goes; so do answers too short, too long or in another script; answers the reference says
 * are wrong; and, where there is no reference, answers that disagree with the vote. The vote is the majority of the
 * extracted answers of every teacher's remaining answers. Ties go to the answer more teachers gave, then to the one
 * whose first supporter comes first (teachers in config order, then samples). Then (with a judge, `judged.ts`) the
 * judge's rubric, then near-duplicates of an answer kept before go, and the first `keep` are kept.
 */
export function selectAnswers(
  prompt: DistillPrompt,
  index: number,
  answers: readonly Answer[],
  config: DistillConfig,
  shown: ReadonlyMap<string, ReadonlySet<ShownBehaviour>>,
): PromptSelection {
  const { judged, vote } = screenAnswers(prompt, answers, config, shown);
  return keepAnswers(index, judged, vote, config);
}

/** Every check before the judge: failures, the probe filter, length and script, the reference, the vote. */
export function screenAnswers(
  prompt: DistillPrompt,
  answers: readonly Answer[],
  config: DistillConfig,
  shown: ReadonlyMap<string, ReadonlySet<ShownBehaviour>>,
): { judged: Judged[]; vote?: PromptSelection["vote"] } {
  const { selection, curation } = config;
  const judged: Judged[] = answers.map((answer) => {
    if (answer.content === undefined) return { answer, excluded: "failed" };
    const content = answer.content;
    const item: Judged = { answer, extracted: extractAnswer(prompt, content) };
    const verdict = verifyAnswer(prompt, content, selection.tolerance);
    if (verdict !== undefined) item.correct = verdict;
    const behaviours = shown.get(answer.teacher);
    const kind = behaviours?.size ? classifyRefusal(content) : undefined;
    if (
      (behaviours?.has("deflected") && kind === "deflection") ||
      (behaviours?.has("refused") && (kind === "full_refusal" || kind === "partial_refusal"))
    )
      item.excluded = "probe";
    else if (content.trim().length < curation.minChars || content.length > curation.maxChars) item.excluded = "length";
    else if (curation.latinShare > 0 && latinShare(content) < curation.latinShare) item.excluded = "language";
    else if (selection.verify && item.correct === false) item.excluded = "verify";
    return item;
  });

  let vote: PromptSelection["vote"];
  const verified =
    selection.verify &&
    (prompt.verifier === "custom" || (prompt.reference !== undefined && prompt.verifier !== "none"));
  if (selection.vote && !verified) {
    const remaining = judged.filter((j) => !j.excluded);
    const ballots = new Map<string, { votes: number; teachers: Set<string>; first: number }>();
    remaining.forEach((j, order) => {
      if (j.extracted === undefined) return;
      const entry = ballots.get(j.extracted) ?? { votes: 0, teachers: new Set<string>(), first: order };
      entry.votes++;
      entry.teachers.add(j.answer.teacher);
      ballots.set(j.extracted, entry);
    });
    const ranked = [...ballots.entries()].sort(
      ([, a], [, b]) => b.votes - a.votes || b.teachers.size - a.teachers.size || a.first - b.first,
    );
    const winner = ranked[0];
    // Where a reference exists (verification off) one answer suffices; otherwise minVotes must agree.
    const needed = prompt.reference === undefined ? selection.minVotes : 1;
    if (winner && winner[1].votes >= needed) vote = { answer: winner[0], votes: winner[1].votes, of: remaining.length };
    for (const j of remaining) if (!vote || j.extracted !== vote.answer) j.excluded = "vote";
  }
  return { judged, ...(vote ? { vote } : {}) };
}

/** Near duplicates out, then the first `keep` of the answers left (in their order: best first), and a preference. */
export function keepAnswers(
  index: number,
  judged: Judged[],
  vote: PromptSelection["vote"] | undefined,
  config: DistillConfig,
): PromptSelection {
  const { selection, curation } = config;
  const kept: Judged[] = [];
  const seen = new Set<string>();
  // Made when a second answer is left to compare: most prompts have one, and need no index.
  let near: NearDuplicates | undefined;
  for (const j of judged) {
    if (j.excluded) continue;
    const text = j.answer.content!;
    if (!near && seen.size > 0 && !seen.has(text)) {
      const { threshold, permutations, bands } = curation.dedupe;
      near = new NearDuplicates(threshold, permutations, bands);
      for (const earlier of seen) near.add(earlier);
    }
    const duplicate = seen.has(text) || (near !== undefined && near.add(text).length > 0);
    seen.add(text);
    if (duplicate) j.excluded = "duplicate";
    else if (kept.length >= selection.keep) j.excluded = "surplus";
    else kept.push(j);
  }
  const rejected = judged.find((j) => j.excluded === "verify" || j.excluded === "vote" || j.excluded === "judge");
  return {
    prompt: index,
    judged,
    kept,
    ...(vote ? { vote } : {}),
    ...(kept[0] && rejected ? { preference: { chosen: kept[0], rejected } } : {}),
  };
}
