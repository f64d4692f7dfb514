import type { SeededRandom } from "../../core/random.ts";
import { generatedSkill, type SkillExample } from "../skill.ts";

function addition(a: number, b: number): SkillExample {
  const ones = (a % 10) + (b % 10);
  const carry = ones >= 10 ? 1 : 0;
  const tens = Math.floor(a / 10) + Math.floor(b / 10) + carry;
  const reasoning = `${a}+${b}: ones ${a % 10}+${b % 10}=${ones}, write ${ones % 10} carry ${carry}; tens ${Math.floor(a / 10)}+${Math.floor(b / 10)}+${carry}=${tens}. So ${a + b}.`;
  return { skill: "arithmetic", prompt: `What is ${a}+${b}?`, reasoning, answer: String(a + b) };
}

function multiplication(a: number, b: number): SkillExample {
  const tens = Math.floor(b / 10) * 10;
  const ones = b % 10;
  const reasoning = `${a}*${b} = ${a}*${tens} + ${a}*${ones} = ${a * tens} + ${a * ones} = ${a * b}.`;
  return { skill: "arithmetic", prompt: `What is ${a}*${b}?`, reasoning, answer: String(a * b) };
}

function draw(random: SeededRandom): SkillExample {
  return random.next() < 0.6
    ? addition(random.integer(10, 99), random.integer(10, 99))
    : multiplication(random.integer(2, 29), random.integer(11, 39));
}

/** Two-digit addition with carries, and small multiplications, with worked steps. */
export const arithmetic = generatedSkill(
  "arithmetic",
  "two-digit addition and small multiplication with worked steps",
  draw,
);
