import { flexibleAnswer, INVALID, normalizeAnswer as gsm8kNormal, referenceAnswer } from "../evals/gsm8k.ts";
import { normalizeAnswer, type SkillName } from "../tinyworld/skill.ts";
import { SKILL_NAMES } from "../tinyworld/skill.ts";
import { SKILLS } from "../tinyworld/skills/index.ts";
import type { DistillPrompt } from "./sources.ts";

/** A number's canonical text (`1,234.50` → `1234.5`), or undefined when it is none. */
function canonicalNumber(text: string): string | undefined {
  if (text === INVALID) return undefined;
  const value = Number(gsm8kNormal(text).replace(/\.$/, ""));
  return Number.isFinite(value) ? String(value) : undefined;
}

/**
 * What an answer says, for the vote between teachers: the last number for numeric and GSM8K prompts, the normalized
 * short answer otherwise (lower case, trimmed, outer punctuation gone). Undefined when nothing can be extracted.
 */
export function extractAnswer(prompt: DistillPrompt, answer: string): string | undefined {
  if (prompt.verifier === "gsm8k" || prompt.verifier === "numeric") return canonicalNumber(flexibleAnswer(answer));
  const normal = normalizeAnswer(answer);
  return normal === "" ? undefined : normal;
}

/**
 * Whether an answer is right by its prompt's reference (undefined: the prompt has none, or no verifier): exact after
 * normalization, numeric within a relative tolerance, GSM8K's flexible extraction against `#### n`, the tiny world's
 * checker of the prompt's skill, or the source's own check (a regex, a JSON Schema, a module).
 */
export function verifyAnswer(prompt: DistillPrompt, answer: string, tolerance: number): boolean | undefined {
  if (prompt.verifier === "custom") return prompt.check!(answer, prompt);
  const reference = prompt.reference;
  if (reference === undefined || prompt.verifier === "none") return undefined;
  switch (prompt.verifier) {
    case "exact":
      return normalizeAnswer(answer) === normalizeAnswer(reference);
    case "skill": {
      const skill = prompt.tags.find((tag) => (SKILL_NAMES as readonly string[]).includes(tag)) as SkillName;
      return skill ? SKILLS[skill].verify(answer, reference) : normalizeAnswer(answer) === normalizeAnswer(reference);
    }
    case "gsm8k":
    case "numeric": {
      const got = canonicalNumber(flexibleAnswer(answer));
      const want = canonicalNumber(prompt.verifier === "gsm8k" ? referenceAnswer(reference) : reference);
      if (got === undefined || want === undefined) return false;
      const [a, b] = [Number(got), Number(want)];
      return Math.abs(a - b) <= tolerance * Math.max(1, Math.abs(b));
    }
  }
}
