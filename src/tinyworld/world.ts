import { InputError } from "../core/errors.ts";
import { SeededRandom } from "../core/random.ts";
import { SKILL_NAMES, type SkillExample, type SkillName } from "./skill.ts";
import { SKILLS } from "./skills/index.ts";
import { lookupSkill } from "./skills/lookup.ts";

export type WorldSize = "default" | "test";

/** A size from the command line or config, or a clear error. */
export function parseWorldSize(value: string): WorldSize {
  if (value !== "default" && value !== "test")
    throw new InputError(`the tiny-world size must be "default" or "test" (found ${JSON.stringify(value)})`);
  return value;
}

/**
 * The default world holds out 300 items a skill: enough for a paired test on one skill to detect a drop of about 10
 * points at 80 % power (two models that disagree on a quarter of the items).
 */
export const WORLD_SIZES: Record<
  WorldSize,
  { trainPerSkill: number; evalPerSkill: number; lookupCountries: number; behaviourTrain: number }
> = {
  default: { trainPerSkill: 3000, evalPerSkill: 300, lookupCountries: 300, behaviourTrain: 1500 },
  // The test world's small table is one its teachers learn in 600 steps (16 held-out look-ups).
  test: { trainPerSkill: 500, evalPerSkill: 24, lookupCountries: 16, behaviourTrain: 250 },
};

export interface SkillSplit {
  train: SkillExample[];
  evaluation: SkillExample[];
}

export type World = Record<SkillName, SkillSplit>;

/** Throws when any held-out prompt also appears among the training prompts (of any skill). */
export function checkDisjoint(world: World): { trainPrompts: number; evalPrompts: number } {
  const trainPrompts = new Set<string>();
  for (const name of SKILL_NAMES) for (const example of world[name].train) trainPrompts.add(example.prompt);
  let evalPrompts = 0;
  for (const name of SKILL_NAMES) {
    for (const example of world[name].evaluation) {
      evalPrompts++;
      if (trainPrompts.has(example.prompt))
        throw new InputError(
          `tiny world: the held-out ${name} prompt ${JSON.stringify(example.prompt)} is also a training prompt`,
        );
    }
  }
  return { trainPrompts: trainPrompts.size, evalPrompts };
}

/** Generates every skill's held-out split, then its training split excluding those prompts, and checks disjointness. */
export function generateWorld(seed: number, size: WorldSize): World {
  const root = new SeededRandom(seed);
  const { trainPerSkill, evalPerSkill, lookupCountries } = WORLD_SIZES[size];
  const allEval = new Set<string>();
  const evaluations = {} as Record<SkillName, SkillExample[]>;
  // The look-up table has one held-out question a country.
  const skills = { ...SKILLS, lookup: lookupSkill(lookupCountries) };
  for (const name of SKILL_NAMES) {
    evaluations[name] = skills[name].evaluation(root.fork(`${name}/eval`), evalPerSkill);
    for (const example of evaluations[name]) allEval.add(example.prompt);
  }
  const world = {} as World;
  for (const name of SKILL_NAMES) {
    world[name] = {
      evaluation: evaluations[name],
      train: skills[name].train(root.fork(`${name}/train`), trainPerSkill, allEval),
    };
  }
  checkDisjoint(world);
  return world;
}
