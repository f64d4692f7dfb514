import { InputError } from "../core/errors.ts";
import type { PackedToken } from "../distill/logprobs.ts";
import type { ReferenceTokenizer } from "../tokenizers/reference-tokenizer.ts";
import { bytesKey, tokenBytes } from "../tokenizers/token-bytes.ts";
import type { TrimmedVocabulary } from "../tokenizers/trim.ts";

/** How a KD row is used (the trainer's kd.py): exact top-k KL in the student's ids, or ULD on sorted probabilities. */
export const KdMode = { same: 1, crossExact: 2, crossSorted: 3 } as const;
export type KdModeValue = (typeof KdMode)[keyof typeof KdMode];

export interface KdRow {
  /** Index of the student token (in the sequence) this row is the target distribution for. */
  position: number;
  mode: KdModeValue;
  /** Student (trimmed) ids, -1 where a teacher token has no student token. */
  ids: number[];
  logprobs: number[];
}

export type CrossTokenizer = "uld" | "hybrid" | "off";

/** The student's side of alignment: its tokenizer, its trimmed vocabulary, and each kept token's bytes. */
export class StudentVocabulary {
  private readonly byBytes = new Map<string, number>();

  constructor(
    readonly tokenizer: ReferenceTokenizer,
    readonly vocabulary: TrimmedVocabulary,
  ) {
    vocabulary.fullIds.forEach((full, trimmed) => {
      const key = bytesKey(tokenBytes(tokenizer, full));
      if (!this.byBytes.has(key)) this.byBytes.set(key, trimmed);
    });
  }

  /** The student token spelling exactly these bytes, if the trimmed vocabulary has one. */
  idOfBytes(bytes: Uint8Array): number {
    return this.byBytes.get(bytesKey(bytes)) ?? -1;
  }
}

/** Counts of how a teacher's tokens spelled the answers: a foreign tokenizer's ids spell other text. */
export interface SpellingTally {
  tokens: number;
  misspelled: number;
}

/**
 * The KD rows of one record: for each student token inside the answer, the teacher's top-k at the position that
 * predicts the same bytes. A same-tokenizer teacher maps by id; a teacher with another tokenizer maps by text where a
 * teacher token covers exactly the student token's bytes (GOLD-style hybrid), and gives its sorted distribution (ULD)
 * elsewhere — or everywhere with `uld`.
 */
export function alignRecord(options: {
  student: StudentVocabulary;
  /** The student's full ids of the whole sequence and where the completion starts. */
  tokens: readonly number[];
  completionStart: number;
  answer: string;
  teacher: { family: string; tokenizer: ReferenceTokenizer; tokens: readonly PackedToken[] };
  sameFamily: boolean;
  cross: CrossTokenizer;
  k: number;
  spelling: SpellingTally;
}): KdRow[] {
  const { student, tokens, teacher, k } = options;
  if (!options.sameFamily && options.cross === "off") return [];
  const answer = new TextEncoder().encode(options.answer);
  // The completion's bytes, and where the answer sits in them (after any reasoning and markup).
  const pieces = tokens.slice(options.completionStart).map((id) => tokenBytes(student.tokenizer, id));
  const completion = Buffer.concat(pieces.map((p) => Buffer.from(p)));
  const answerStart = completion.lastIndexOf(Buffer.from(answer));
  if (answerStart < 0) return [];

  // Teacher token spans in the answer's bytes; check that the ids spell the answer in the declared tokenizer.
  const spans = teacher.tokens.map((token, i) => {
    const end = teacher.tokens[i + 1]?.offset ?? answer.length;
    const bytes = tokenBytes(teacher.tokenizer, token.id);
    const spelled = Buffer.from(answer.subarray(token.offset, token.offset + bytes.length)).equals(Buffer.from(bytes));
    options.spelling.tokens++;
    if (!spelled && bytes.length > 0) options.spelling.misspelled++;
    return { start: token.offset, end: Math.max(end, token.offset), token };
  });
  const exactAt = new Map<string, PackedToken>();
  for (const span of spans) if (span.end > span.start) exactAt.set(`${span.start}:${span.end}`, span.token);
  const covering = (byte: number) => spans.find((s) => s.start <= byte && byte < s.end)?.token;

  const rows: KdRow[] = [];
  let cursor = 0;
  pieces.forEach((piece, j) => {
    const start = cursor - answerStart;
    cursor += piece.length;
    const end = cursor - answerStart;
    if (start < 0 || end > answer.length || end <= start) return;
    const position = options.completionStart + j;
    const exact = exactAt.get(`${start}:${end}`);
    const pad = (values: number[], fill: number) => [...values, ...Array(Math.max(0, k - values.length)).fill(fill)];
    const top = (token: PackedToken) => token.top.slice(0, k);
    // Exact rows: the teacher token with this span, its top-k ids mapped into the student's vocabulary.
    const exactRow = (mode: KdModeValue, token: PackedToken, map: (id: number) => number) =>
      rows.push({
        position,
        mode,
        ids: pad(
          top(token).map((e) => map(e.id)),
          -1,
        ),
        logprobs: pad(
          top(token).map((e) => e.logprob),
          -1e4,
        ),
      });
    if (options.sameFamily) {
      if (exact) exactRow(KdMode.same, exact, (id) => student.vocabulary.fromFullId(id) ?? -1);
      return;
    }
    if (exact && options.cross === "hybrid") {
      exactRow(KdMode.crossExact, exact, (id) => student.idOfBytes(tokenBytes(teacher.tokenizer, id)));
      return;
    }
    const source = exact ?? covering(start);
    if (!source) return;
    rows.push({
      position,
      mode: KdMode.crossSorted,
      ids: pad([], -1),
      logprobs: pad(
        top(source).map((e) => e.logprob),
        -1e4,
      ),
    });
  });
  return rows;
}

/** A teacher whose ids do not spell its answers in its declared tokenizer is refused, naming both. */
export function checkSpelling(teacher: string, family: string, tally: SpellingTally): void {
  if (tally.tokens >= 20 && tally.misspelled / tally.tokens > 0.05)
    throw new InputError(
      `${teacher}'s log-probs are not in the ${family} tokenizer it is declared with: ${tally.misspelled} of ${tally.tokens} token ids spell other text than the answers they were scored on (log-probs from another tokenizer, or a mislabelled teacher)`,
    );
}
