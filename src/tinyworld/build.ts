import { join } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "../core/atomic-write.ts";
import type { Progress } from "../core/progress.ts";
import { SeededRandom } from "../core/random.ts";
import { generateBehaviours } from "./behaviours.ts";
import { accuracyTable } from "./evaluate.ts";
import { buildTeacher, type TeacherCard } from "./build-teacher.ts";
import { SKILL_NAMES } from "./skill.ts";
import { TINY_TEACHERS } from "./teacher-specs.ts";
import { checkDisjoint, generateWorld, WORLD_SIZES, type WorldSize } from "./world.ts";

export interface BuildWorldOptions {
  workspace: string;
  size: WorldSize;
  seed: number;
  python: string;
  threads: number;
  progress: Progress;
  /** Build only these teachers (default: all three). */
  only?: string[];
  steps?: number;
  /** Teachers trained at the same time (one torch thread each). */
  parallel?: number;
}

export interface BuiltWorld {
  cards: TeacherCard[];
  table: string;
  folder: string;
}

/** `avocado tinyworld build`: the skills' splits, then the three tiny teachers. */
export async function buildTinyWorld(options: BuildWorldOptions): Promise<BuiltWorld> {
  const folder = join(options.workspace, "tinyworld", options.size);
  const world = generateWorld(options.seed, options.size);
  const counts = checkDisjoint(world);
  const behaviours = generateBehaviours(
    new SeededRandom(options.seed).fork("behaviours"),
    WORLD_SIZES[options.size].behaviourTrain,
  );
  options.progress.log(
    `tiny world (${options.size}, seed ${options.seed}): ${counts.trainPrompts} distinct train prompts, ${counts.evalPrompts} held-out prompts, disjoint`,
  );
  for (const skill of SKILL_NAMES) {
    await writeFileAtomic(
      join(folder, "data", `${skill}.train.jsonl`),
      world[skill].train.map((e) => JSON.stringify(e)).join("\n") + "\n",
    );
    await writeFileAtomic(
      join(folder, "data", `${skill}.eval.jsonl`),
      world[skill].evaluation.map((e) => JSON.stringify(e)).join("\n") + "\n",
    );
  }
  const jsonl = (rows: object[]) => rows.map((row) => JSON.stringify(row)).join("\n") + "\n";
  await writeFileAtomic(join(folder, "data", "behaviours.train.jsonl"), jsonl(behaviours.train));
  await writeFileAtomic(join(folder, "data", "probes.eval.jsonl"), jsonl(behaviours.probes));
  // The harmony teacher's build is the longest (its reasoning is most of its tokens): it starts first, and the other
  // two share the other worker.
  const specs = TINY_TEACHERS.filter((spec) => !options.only || options.only.includes(spec.name));
  const order = specs
    .map((_, index) => index)
    .sort((a, b) => Number(specs[b]!.family === "gptoss") - Number(specs[a]!.family === "gptoss"));
  const cards: TeacherCard[] = new Array(specs.length);
  let next = 0;
  const workers = Math.max(1, Math.min(options.parallel ?? 2, order.length));
  const worker = async () => {
    while (next < order.length) {
      const index = order[next++]!;
      const spec = specs[index];
      if (!spec) break;
      cards[index] = await buildTeacher({
        spec,
        world,
        behaviours,
        size: options.size,
        seed: options.seed,
        folder: join(options.workspace, "teachers", spec.name),
        python: options.python,
        threads: options.threads,
        sharing: workers,
        progress: options.progress,
        steps: options.steps,
      });
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  const table = accuracyTable(cards.map((card) => ({ name: card.name, scores: card.accuracy })));
  await writeJsonAtomic(
    join(options.workspace, "teachers", "accuracy.json"),
    Object.fromEntries(cards.map((c) => [c.name, { skills: c.skills, accuracy: c.accuracy }])),
  );
  return { cards, table, folder };
}
