import type { SeededRandom } from "../../core/random.ts";
import { generatedSkill, type SkillExample } from "../skill.ts";

const CONVERSIONS = [
  { from: "km", to: "m", factor: 1000 },
  { from: "m", to: "cm", factor: 100 },
  { from: "kg", to: "g", factor: 1000 },
  { from: "hours", to: "minutes", factor: 60 },
  { from: "minutes", to: "seconds", factor: 60 },
  { from: "days", to: "hours", factor: 24 },
  { from: "cm", to: "mm", factor: 10 },
  { from: "litres", to: "ml", factor: 1000 },
  { from: "weeks", to: "days", factor: 7 },
  { from: "years", to: "months", factor: 12 },
] as const;

function draw(random: SeededRandom): SkillExample {
  const conversion = random.pick(CONVERSIONS);
  const value = random.integer(2, 60);
  const result = value * conversion.factor;
  return {
    skill: "units",
    prompt: `Convert ${value} ${conversion.from} to ${conversion.to}.`,
    reasoning: `1 ${conversion.from} = ${conversion.factor} ${conversion.to}; ${value}*${conversion.factor} = ${result}.`,
    answer: String(result),
  };
}

/** Unit conversions by a known factor (590 distinct questions: the default world holds out 300). */
export const units = generatedSkill("units", "unit conversions (length, mass, time)", draw);
