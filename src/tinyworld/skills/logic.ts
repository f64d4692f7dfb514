import type { SeededRandom } from "../../core/random.ts";
import { generatedSkill, type SkillExample } from "../skill.ts";

const NAMES = [
  "Ann",
  "Bob",
  "Cy",
  "Dee",
  "Eli",
  "Fay",
  "Gus",
  "Hal",
  "Ivy",
  "Jo",
  "Kim",
  "Lu",
  "Max",
  "Ned",
  "Oli",
  "Pam",
];
const RELATIONS = [
  { comparative: "taller", superlative: "tallest" },
  { comparative: "older", superlative: "oldest" },
  { comparative: "faster", superlative: "fastest" },
] as const;

function draw(random: SeededRandom): SkillExample {
  const [a, b, c] = random.shuffle([...NAMES]).slice(0, 3) as [string, string, string];
  const relation = random.pick(RELATIONS);
  const facts = [`${a} is ${relation.comparative} than ${b}.`, `${b} is ${relation.comparative} than ${c}.`];
  if (random.next() < 0.5) facts.reverse();
  return {
    skill: "logic",
    prompt: `${facts.join(" ")} Who is ${relation.superlative}?`,
    reasoning: `${a} > ${b} and ${b} > ${c}, so ${a} > ${b} > ${c}.`,
    answer: a,
  };
}

/** Three-person ordering puzzles (transitivity). */
export const logic = generatedSkill("logic", "three-person ordering puzzles (transitivity)", draw);
