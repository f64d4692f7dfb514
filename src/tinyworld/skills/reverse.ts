import type { SeededRandom } from "../../core/random.ts";
import { generatedSkill, type SkillExample } from "../skill.ts";

const SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ba", "de", "fo", "gu", "pi", "ze", "xo", "wa"];

function word(random: SeededRandom): string {
  const parts = random.integer(2, 3);
  let text = "";
  for (let i = 0; i < parts; i++) text += random.pick(SYLLABLES);
  return text;
}

function draw(random: SeededRandom): SkillExample {
  const w = word(random);
  const letters = [...w];
  const reversed = [...letters].reverse();
  return {
    skill: "reverse",
    prompt: `Reverse the word '${w}'.`,
    reasoning: `Letters: ${letters.join(" ")}. Backwards: ${reversed.join(" ")}.`,
    answer: reversed.join(""),
  };
}

/** String reversal of made-up words, spelled out letter by letter. */
export const reverse = generatedSkill("reverse", "reverse a made-up word, letter by letter", draw);
