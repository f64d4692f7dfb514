import { InputError } from "../core/errors.ts";
import { SeededRandom } from "../core/random.ts";
import { SKILL_NAMES, type SkillExample, type SkillName } from "./skill.ts";
import { SKILLS } from "./skills/index.ts";

export type WorldSize = "default" | "test";

/** A size from the command line or config, or a clear error. */
export function parseWorldSize(value: string): WorldSize {
  if (value !== "default" && value !== "test")
    throw new InputError(`the tiny-world size must be "default" or "test" (found ${JSON.stringify(value)})`);
  return value;
}

export const WORLD_SIZES: Record<WorldSize, { trainPerSkill: number; evalPerSkill: number }> = {
  default: { trainPerSkill: 3000, evalPerSkill: 60 },
  test: { trainPerSkill: 500, evalPerSkill: 24 },
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
  const { trainPerSkill, evalPerSkill } = WORLD_SIZES[size];
  const allEval = new Set<string>();
  const evaluations = {} as Record<SkillName, SkillExample[]>;
  for (const name of SKILL_NAMES) {
    evaluations[name] = SKILLS[name].evaluation(root.fork(`${name}/eval`), evalPerSkill);
    for (const example of evaluations[name]) allEval.add(example.prompt);
  }
  const world = {} as World;
  for (const name of SKILL_NAMES) {
    world[name] = {
      evaluation: evaluations[name],
      train: SKILLS[name].train(root.fork(`${name}/train`), trainPerSkill, allEval),
    };
  }
  checkDisjoint(world);
  return world;
}
