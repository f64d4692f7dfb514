import { SeededRandom } from "../../core/random.ts";
import { exactAnswer, type Skill, type SkillExample } from "../skill.ts";

// Country names are made of an onset, a vowel and a coda, then an ending: enough for hundreds of countries.
const ONSETS = [
  "Z",
  "Qu",
  "Br",
  "T",
  "M",
  "K",
  "V",
  "R",
  "S",
  "Dr",
  "N",
  "Pr",
  "G",
  "F",
  "Y",
  "L",
  "H",
  "Tr",
  "B",
  "D",
];
const VOWELS = ["a", "e", "i", "o", "u"];
const CODAS = ["r", "l", "n", "v", "ss", "m"];
const STEMS = ONSETS.flatMap((onset) => VOWELS.flatMap((vowel) => CODAS.map((coda) => onset + vowel + coda)));
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

/** The fictional knowledge table's first `size` countries: fixed by its own seed, the same for every build. */
function table(size: number): Country[] {
  const random = new SeededRandom(7);
  const countries: Country[] = [];
  const names = new Set<string>();
  while (countries.length < size) {
    const name = random.pick(STEMS) + random.pick(ENDINGS);
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
 * Look-ups in a fictional knowledge table of `countries` countries. Training teaches each country's fact sheet and two
 * of its three direct questions; the held-out question (one a country) is asked in eval.
 */
export function lookupSkill(countries: number): Skill {
  const entries = table(countries);
  return {
    name: "lookup",
    description: "look-ups in a fictional country table",
    train: (random, count, exclude) => {
      const taught: SkillExample[] = [];
      entries.forEach((country, c) => {
        taught.push(factSheet(country));
        ATTRIBUTES.forEach((attribute, a) => !isHeldOut(c, a) && taught.push(question(country, attribute)));
      });
      // A small table: training draws its entries repeatedly (memorisation is the skill).
      return Array.from({ length: count }, () => random.pick(taught)).filter((example) => !exclude.has(example.prompt));
    },
    evaluation: (_random, count) => {
      const held: SkillExample[] = [];
      entries.forEach((country, c) =>
        ATTRIBUTES.forEach((attribute, a) => isHeldOut(c, a) && held.push(question(country, attribute))),
      );
      return held.slice(0, count);
    },
    verify: exactAnswer,
  };
}

/** The table the test world and the checkers use when no world size is given. */
export const lookup: Skill = lookupSkill(16);
