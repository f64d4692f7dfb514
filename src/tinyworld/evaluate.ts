import type { Progress } from "../core/progress.ts";
import type { EmbeddedEngine } from "../engine/embedded-engine.ts";
import { SKILL_NAMES, type SkillName } from "./skill.ts";
import { SKILLS } from "./skills/index.ts";
import type { World } from "./world.ts";

export interface SkillScore {
  correct: number;
  total: number;
  accuracy: number;
}

export interface ItemResult {
  skill: SkillName;
  prompt: string;
  expected: string;
  answer: string;
  reasoning: string;
  correct: boolean;
}

/** Greedy answers of a model on every skill's held-out split, verified per item. */
export async function evaluateOnWorld(
  engine: EmbeddedEngine,
  world: World,
  progress: Progress,
  label: string,
  concurrency = 4,
): Promise<{ scores: Record<SkillName, SkillScore>; items: ItemResult[] }> {
  const work = SKILL_NAMES.flatMap((skill) => world[skill].evaluation.map((example) => ({ skill, example })));
  const items: ItemResult[] = new Array(work.length);
  const task = progress.task(label, work.length, "prompts");
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < work.length) {
      const index = next++;
      const { skill, example } = work[index] as (typeof work)[number];
      const result = await engine.chat({
        messages: [{ role: "user", content: example.prompt }],
        maxTokens: 96,
        temperature: 0,
      });
      items[index] = {
        skill,
        prompt: example.prompt,
        expected: example.answer,
        answer: result.content,
        reasoning: result.reasoning,
        correct: SKILLS[skill].verify(result.content, example.answer),
      };
      task.update(++done);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  task.finish();
  const scores = {} as Record<SkillName, SkillScore>;
  for (const skill of SKILL_NAMES) {
    const mine = items.filter((item) => item.skill === skill);
    const correct = mine.filter((item) => item.correct).length;
    scores[skill] = { correct, total: mine.length, accuracy: mine.length ? correct / mine.length : 0 };
  }
  return { scores, items };
}

export function accuracyTable(rows: { name: string; scores: Record<SkillName, SkillScore> }[]): string {
  const header = ["teacher", ...SKILL_NAMES];
  const lines = rows.map((row) => [
    row.name,
    ...SKILL_NAMES.map((skill) => `${(row.scores[skill].accuracy * 100).toFixed(0)}%`),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const format = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join("  ");
  return [format(header), format(widths.map((w) => "-".repeat(w))), ...lines.map(format)].join("\n");
}
