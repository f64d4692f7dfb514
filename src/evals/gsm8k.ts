/**
 * GSM8K answer extraction and scoring by lm-evaluation-harness's rules (its `gsm8k.yaml`), so that our numbers
 * compare with published ones:
 * - strict: the first `#### <number>`;
 * - flexible: the last number-looking run in the answer (`$1,234.` included);
 * - exact match after removing `,`, `$`, everything up to `#### ` and a trailing `.`, ignoring case.
 * What cannot be extracted is `[invalid]`, which matches no reference.
 */

/** What lm-evaluation-harness puts where no answer could be extracted. */
export const INVALID = "[invalid]";

const STRICT = /#### (-?[0-9.,]+)/g;
const FLEXIBLE = /(-?[$0-9.,]{2,})|(-?[0-9]+)/g;
const IGNORED = [/,/g, /\$/g, /[\s\S]*#### /g, /\.$/g];

/** The strict-match answer: the first number after `#### `. */
export function strictAnswer(response: string): string {
  for (const match of response.matchAll(STRICT)) return match[1]!.trim();
  return INVALID;
}

/** The flexible-extract answer: the last run that looks like a number (a group of its pattern, the first non-empty). */
export function flexibleAnswer(response: string): string {
  let last: RegExpMatchArray | undefined;
  for (const match of response.matchAll(FLEXIBLE)) last = match;
  if (!last) return INVALID;
  const group = last[1] || last[2];
  return group ? group.trim() : INVALID;
}

/** A string as exact match compares it: the ignored patterns removed, lower case. */
export function normalizeAnswer(text: string): string {
  let out = text;
  for (const pattern of IGNORED) out = out.replace(pattern, "");
  return out.toLowerCase();
}

/** The number a GSM8K reference solution ends with (`… #### 72` → `72`). */
export function referenceAnswer(solution: string): string {
  return normalizeAnswer(solution);
}

/** Whether an extracted answer matches the reference solution (exact match after normalization). */
export function answerMatches(extracted: string, solution: string): boolean {
  if (extracted === INVALID) return false;
  return normalizeAnswer(extracted) === referenceAnswer(solution);
}

/** Both of lm-evaluation-harness's scores of one response against its reference solution. */
export function scoreGsm8k(response: string, solution: string): { strict: boolean; flexible: boolean } {
  return {
    strict: answerMatches(strictAnswer(response), solution),
    flexible: answerMatches(flexibleAnswer(response), solution),
  };
}
