import { join } from "node:path";
import { CHAT_FORMATS } from "../chat/chat-format.ts";
import type { DistillConfig } from "../core/config/distill-schema.ts";
import { writeFileAtomic } from "../core/atomic-write.ts";
import { errorMessage } from "../core/errors.ts";
import type { Progress } from "../core/progress.ts";
import { largestError, packLogprobs, withOffsets } from "./logprobs.ts";
import type { DistillTeacherRun } from "./run.ts";
import type { PromptSelection } from "./select.ts";
import type { DistillPrompt } from "./sources.ts";

export interface LogprobSummary {
  k: number;
  records: number;
  tokens: number;
  bytes: number;
  bytesPerToken: number;
  /** The largest difference between a log-prob as scored and as stored. */
  largestError: number;
  /** Records without log-probs: their teacher cannot score, or scoring failed (counted by reason). */
  missing: Record<string, number>;
}

/**
 * What the teacher is scored on: its whole turn as it produced it (a reasoning family's reasoning block first, so the
 * answer's tokens are scored in the context the teacher wrote them in), and where the answer starts in it.
 */
function scoredTurn(family: string, reasoning: string | undefined, answer: string, inline: boolean) {
  const format = CHAT_FORMATS[family as keyof typeof CHAT_FORMATS];
  if (!format?.reasons || inline) return { text: answer, start: 0 };
  const rendered = format.renderCompletion(reasoning ?? "", answer);
  const parts = (typeof rendered === "string" ? [rendered] : rendered).slice(0, -1);
  const text = parts
    .map((part) => (typeof part === "string" ? part : part.type === "specialTokensText" ? part.value : ""))
    .join("");
  return { text, start: text.length - answer.length };
}

/**
 * The teacher's log-probs of every kept answer, teacher-forced after its prompt (the exact assistant text the dataset
 * holds, so byte offsets index it), top `k` a position, through the response cache. Written to `logprobs/<teacher>.bin`
 * (packed records, `logprobs.ts`) with `logprobs/index.jsonl` naming each record's dataset line, file, offset and size.
 */
export async function captureLogprobs(options: {
  out: string;
  config: DistillConfig;
  teachers: readonly DistillTeacherRun[];
  prompts: readonly DistillPrompt[];
  selections: readonly PromptSelection[];
  assistantText: (selection: PromptSelection, kept: number) => string;
  progress: Progress;
}): Promise<LogprobSummary | undefined> {
  const k = options.config.logprobs.topK;
  if (k === 0) return undefined;
  const byName = new Map(options.teachers.map((t) => [t.config.name, t]));
  const shards = new Map<string, Uint8Array[]>();
  const sizes = new Map<string, number>();
  const index: string[] = [];
  const summary: LogprobSummary = {
    k,
    records: 0,
    tokens: 0,
    bytes: 0,
    bytesPerToken: 0,
    largestError: 0,
    missing: {},
  };
  const missing = (reason: string) => (summary.missing[reason] = (summary.missing[reason] ?? 0) + 1);
  const total = options.selections.reduce((sum, s) => sum + s.kept.length, 0);
  const task = options.progress.task("log-probs", total, "records");
  let line = 0;
  for (const selection of options.selections) {
    for (let kept = 0; kept < selection.kept.length; kept++, line++) {
      task.update(line + 1);
      const run = byName.get(selection.kept[kept]!.answer.teacher)!;
      // A server's ids are its model's own; only a trimmed vocabulary's ids mean nothing outside it.
      if (!run.teacher.capabilities.score || run.teacher.capabilities.tokenIds === "trimmed") {
        missing(`${run.config.name} cannot score in its model's own ids`);
        continue;
      }
      const text = options.assistantText(selection, kept);
      const inline = options.config.curation.reasoning === "keep";
      const turn = scoredTurn(run.family, selection.kept[kept]!.answer.reasoning?.trim(), text, inline);
      let tokens;
      try {
        const scored = await run.teacher.score({
          messages: options.prompts[selection.prompt]!.messages,
          continuation: turn.text,
          topLogprobs: Math.min(k, run.teacher.capabilities.maxTopLogprobs || k),
        });
        // Only the answer's tokens are kept, their offsets into the answer.
        const skip = Buffer.byteLength(turn.text.slice(0, turn.start));
        tokens = withOffsets(turn.text, scored.tokens, k)
          .filter((token) => token.offset >= skip)
          .map((token) => ({ ...token, offset: token.offset - skip }));
      } catch (error) {
        missing(`scoring failed: ${errorMessage(error).slice(0, 120)}`);
        continue;
      }
      const packed = packLogprobs(tokens, k);
      summary.largestError = Math.max(summary.largestError, largestError(tokens, packed));
      const file = `${run.config.name}.bin`;
      const offset = sizes.get(file) ?? 0;
      sizes.set(file, offset + packed.length);
      const parts = shards.get(file) ?? [];
      parts.push(packed);
      shards.set(file, parts);
      index.push(
        JSON.stringify({
          record: line,
          teacher: run.config.name,
          family: run.family,
          file,
          offset,
          bytes: packed.length,
        }),
      );
      summary.records++;
      summary.tokens += tokens.length;
      summary.bytes += packed.length;
    }
  }
  task.finish({ records: summary.records });
  for (const [file, parts] of shards) await writeFileAtomic(join(options.out, "logprobs", file), Buffer.concat(parts));
  await writeFileAtomic(join(options.out, "logprobs", "index.jsonl"), index.map((row) => `${row}\n`).join(""));
  summary.bytesPerToken = summary.tokens ? Math.round((100 * summary.bytes) / summary.tokens) / 100 : 0;
  return summary;
}
