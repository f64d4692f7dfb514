import type { SeededRandom } from "../core/random.ts";

/** One tiny-world task instance: a prompt with a verifiable answer and worked reasoning. */
export interface SkillExample {
  skill: SkillName;
  prompt: string;
  reasoning: string;
  answer: string;
}

export const SKILL_NAMES = ["arithmetic", "reverse", "lookup", "units", "logic"] as const;
export type SkillName = (typeof SKILL_NAMES)[number];

/**
 * A seeded generator of examples with verifiable answers. `train` and `eval`
 * draw from the same distribution; the builder checks their disjointness.
 */
export interface Skill {
  readonly name: SkillName;
  readonly description: string;
  /** Held-out evaluation examples, distinct prompts. Drawn first. */
  evaluation(random: SeededRandom, count: number): SkillExample[];
  /** Training examples (repeats allowed), never one whose prompt is in `exclude` (the eval prompts). */
  train(random: SeededRandom, count: number, exclude: ReadonlySet<string>): SkillExample[];
  /** True when a model's final answer is correct. */
  verify(modelAnswer: string, expected: string): boolean;
}

/** Lower-case, trim, strip surrounding punctuation and quotes: what "the same answer" means for short answers. */
export function normalizeAnswer(text: string): string {
  return text
    .trim()
    .toLowerCase()
    .replace(/^["'`\s]+|["'`.!\s]+$/g, "")
    .replace(/\s+/g, " ");
}

export function exactAnswer(modelAnswer: string, expected: string): boolean {
  return normalizeAnswer(modelAnswer) === normalizeAnswer(expected);
}

/** Draws up to `count` examples with distinct prompts from a generator (bounded tries). */
export function distinctExamples(count: number, make: () => SkillExample): SkillExample[] {
  const seen = new Set<string>();
  const out: SkillExample[] = [];
  for (let tries = 0; out.length < count && tries < count * 50; tries++) {
    const example = make();
    if (seen.has(example.prompt)) continue;
    seen.add(example.prompt);
    out.push(example);
  }
  return out;
}

/** Draws `count` examples (repeats allowed) whose prompts are not in `exclude` (bounded tries). */
export function examplesExcluding(
  count: number,
  make: () => SkillExample,
  exclude: ReadonlySet<string>,
): SkillExample[] {
  const out: SkillExample[] = [];
  for (let tries = 0; out.length < count && tries < count * 50; tries++) {
    const example = make();
    if (!exclude.has(example.prompt)) out.push(example);
  }
  return out;
}

/** A skill whose examples all come from one seeded generator (every skill but the look-up table). */
export function generatedSkill(
  name: SkillName,
  description: string,
  draw: (random: SeededRandom) => SkillExample,
): Skill {
  return {
    name,
    description,
    evaluation: (random, count) => distinctExamples(count, () => draw(random)),
    train: (random, count, exclude) => examplesExcluding(count, () => draw(random), exclude),
    verify: exactAnswer,
  };
}
