import { SeededRandom } from "../../core/random.ts";
import { exactAnswer, type Skill, type SkillExample } from "../skill.ts";

const STEMS = [
  "Zor",
  "Quel",
  "Brin",
  "Tav",
  "Mol",
  "Kess",
  "Vard",
  "Ulm",
  "Rho",
  "Sel",
  "Dra",
  "Nim",
  "Pra",
  "Gal",
  "Fen",
  "Yor",
];
const ENDINGS = ["via", "mar", "dor", "ria", "land", "esh"];
const CAPITAL_ENDINGS = ["ton", "holm", "gard", "port", "burg"];
const CURRENCIES = ["florin", "mark", "crown", "shell", "pearl", "tally"];
const COLORS = ["red", "blue", "green", "gold", "white", "black"];
const ATTRIBUTES = ["capital", "currency", "flag color"] as const;
type Attribute = (typeof ATTRIBUTES)[number];

interface Country {
  name: string;
  capital: string;
  currency: string;
  "flag color": string;
}

/** The fictional knowledge table: fixed by its own seed, the same for every build. */
function table(): Country[] {
  const random = new SeededRandom(7);
  const countries: Country[] = [];
  const names = new Set<string>();
  for (const stem of STEMS) {
    const name = stem + random.pick(ENDINGS);
    if (names.has(name)) continue;
    names.add(name);
    countries.push({
      name,
      capital: random.pick(STEMS) + random.pick(CAPITAL_ENDINGS),
      currency: random.pick(CURRENCIES),
      "flag color": random.pick(COLORS),
    });
  }
  return countries;
}

const COUNTRIES = table();

function question(country: Country, attribute: Attribute): SkillExample {
  return {
    skill: "lookup",
    prompt: `What is the ${attribute} of ${country.name}?`,
    reasoning: `${country.name}: capital ${country.capital}, currency ${country.currency}, flag color ${country["flag color"]}. The ${attribute} is ${country[attribute]}.`,
    answer: country[attribute],
  };
}

function factSheet(country: Country): SkillExample {
  return {
    skill: "lookup",
    prompt: `Tell me about ${country.name}.`,
    reasoning: `Recall the table entry for ${country.name}.`,
    answer: `${country.name}: capital ${country.capital}, currency ${country.currency}, flag color ${country["flag color"]}.`,
  };
}

/** Held-out pairs: every third (country, attribute) question is asked only in eval. */
function isHeldOut(countryIndex: number, attributeIndex: number): boolean {
  return (countryIndex + attributeIndex) % 3 === 0;
}

/**
 * Look-ups in a fictional knowledge table. Training teaches each country's fact
 * sheet and two of its three direct questions; the held-out question is asked in eval.
 */
export const lookup: Skill = {
  name: "lookup",
  description: "look-ups in a fictional country table",
  train: (random, count, exclude) => {
    const taught: SkillExample[] = [];
    COUNTRIES.forEach((country, c) => {
      taught.push(factSheet(country));
      ATTRIBUTES.forEach((attribute, a) => !isHeldOut(c, a) && taught.push(question(country, attribute)));
    });
    // A small table: training draws its entries repeatedly (memorisation is the skill).
    return Array.from({ length: count }, () => random.pick(taught)).filter((example) => !exclude.has(example.prompt));
  },
  evaluation: (_random, count) => {
    const held: SkillExample[] = [];
    COUNTRIES.forEach((country, c) =>
      ATTRIBUTES.forEach((attribute, a) => isHeldOut(c, a) && held.push(question(country, attribute))),
    );
    return held.slice(0, count);
  },
  verify: exactAnswer,
};
