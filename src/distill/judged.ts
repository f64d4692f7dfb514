import type { DistillConfig } from "../core/config/distill-schema.ts";
import type { Judge } from "../evals/judge.ts";
import type { EvalItem } from "../evals/suite.ts";
import type { Judged } from "./select.ts";
import type { DistillPrompt } from "./sources.ts";

type JudgeConfig = NonNullable<DistillConfig["selection"]["judge"]>;

/**
 * The judge's step of the selection, on the answers the checks left. `filter`: an answer the judge does not pass (or
 * gives no verdict on) goes. `best`: the first `candidates` answers meet each other, each pair asked in both orders
 * (a win counts only when both agree; otherwise a half each), and are ranked by wins, ties in their order: keep k
 * then takes the best. Every judge call goes through the response cache.
 */
export async function judgeAnswers(
  prompt: DistillPrompt,
  judged: Judged[],
  config: JudgeConfig,
  judge: Judge,
): Promise<Judged[]> {
  const item: EvalItem = {
    id: prompt.id,
    group: prompt.tags[0] ?? "",
    messages: prompt.messages,
    reference: prompt.reference ?? "",
  };
  const remaining = judged.filter((j) => !j.excluded);
  if (config.mode === "filter") {
    for (const j of remaining) {
      const pass = await judge.grade(item, j.answer.content!, config.rubric).catch(() => false);
      if (!pass) j.excluded = "judge";
    }
    return judged;
  }
  const pool = remaining.slice(0, config.candidates);
  if (pool.length < 2) return judged;
  for (const j of pool) j.judgeScore = 0;
  for (let a = 0; a < pool.length; a++) {
    for (let b = a + 1; b < pool.length; b++) {
      const verdict = await judge
        .compare(item, pool[a]!.answer.content!, pool[b]!.answer.content!, config.rubric)
        .catch(() => undefined);
      // No verdict: neither wins.
      if (!verdict) continue;
      if (verdict.winner === "a") pool[a]!.judgeScore! += 1;
      else if (verdict.winner === "b") pool[b]!.judgeScore! += 1;
      else {
        pool[a]!.judgeScore! += 0.5;
        pool[b]!.judgeScore! += 0.5;
      }
    }
  }
  const ranked = pool
    .map((j, order) => ({ j, order }))
    .sort((x, y) => y.j.judgeScore! - x.j.judgeScore! || x.order - y.order)
    .map(({ j }) => j);
  return [...ranked, ...judged.filter((j) => !pool.includes(j))];
}
