import { rmSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { scratchFolder, teacherGguf } from "../../test/fixtures.ts";
import { teacherConfigSchema } from "../core/config/teacher-schema.ts";
import { SilentProgress } from "../core/progress.ts";
import { openTeacher } from "../teachers/registry.ts";
import type { Teacher, TeacherRequest, TeacherResponse } from "../teachers/teacher.ts";
import { Judge, judgePairs, verdict } from "./judge.ts";
import { runEval } from "./run.ts";
import { loadSuiteFile, type EvalItem } from "./suite.ts";

/**
 * A judge whose decisions are scripted from the prompt it is sent: it stands in for a large instruction-following
 * model (none runs here) so that what is tested is how verdicts are asked for and combined, not the judge's taste.
 */
function scriptedJudge(decide: (prompt: string) => string): { teacher: Teacher; prompts: string[] } {
  const prompts: string[] = [];
  const teacher = {
    name: "scripted-judge",
    family: "generic",
    generate: async (request: TeacherRequest): Promise<TeacherResponse> => {
      const prompt = request.messages.at(-1)!.content;
      prompts.push(prompt);
      return { content: decide(prompt) } as TeacherResponse;
    },
  } as unknown as Teacher;
  return { teacher, prompts };
}

const item = (reference: string): EvalItem => ({
  id: `q/${reference}`,
  group: "all",
  messages: [{ role: "user", content: `What is 2+${Number(reference) - 2}?` }],
  reference,
});

describe("LLM-as-judge", () => {
  it("parses a verdict from the judge's last lines only, strictly", () => {
    expect(verdict("The answer is right.\nVERDICT: PASS", ["PASS", "FAIL"])).toBe("PASS");
    expect(verdict("Reasons…\n**Verdict:** `fail`.", ["PASS", "FAIL"])).toBe("FAIL");
    expect(verdict("B is better.\n\nVERDICT: [B]", ["A", "B", "TIE"])).toBe("B");
    expect(() => verdict("I think it passes.", ["PASS", "FAIL"])).toThrow(/no verdict of PASS\/FAIL/);
    expect(() => verdict("VERDICT: MAYBE", ["PASS", "FAIL"])).toThrow(/no verdict/);
    // A verdict quoted early and then argued away is not the judge's last word.
    expect(() => verdict("VERDICT: PASS\n1\n2\n3\nOn reflection, unclear.", ["PASS", "FAIL"])).toThrow();
  });

  it("asks a pair in both orders: a position-biased judge's wins become ties, a fair judge's count", async () => {
    // Always prefers the first answer shown: it contradicts itself once the order is swapped.
    const biased = new Judge(scriptedJudge(() => "A reads better.\nVERDICT: A").teacher);
    const result = await biased.compare(item("4"), "4", "5", "correct answers win");
    expect(result).toEqual({ winner: "tie", consistent: false, orders: ["A", "A"] });

    // Prefers whichever answer equals the reference, wherever it is shown.
    const fair = scriptedJudge((prompt) => {
      const reference = /Reference answer:\n(.*)/.exec(prompt)![1];
      const first = /Answer A:\n(.*)/.exec(prompt)![1];
      const second = /Answer B:\n(.*)/.exec(prompt)![1];
      if (first === second) return "VERDICT: TIE";
      return `VERDICT: ${first === reference ? "A" : second === reference ? "B" : "TIE"}`;
    });
    const judge = new Judge(fair.teacher);
    expect((await judge.compare(item("4"), "5", "4", "correct answers win")).winner).toBe("b");
    expect(fair.prompts.at(-2)).toMatch(/Answer A:\n5\n\nAnswer B:\n4/);
    expect(fair.prompts.at(-1)).toMatch(/Answer A:\n4\n\nAnswer B:\n5/);

    const items = ["4", "6", "8", "10"].map(item);
    const answers: Record<string, Record<string, string>> = {
      x: { "q/4": "4", "q/6": "6", "q/8": "1", "q/10": "10" },
      y: { "q/4": "3", "q/6": "6", "q/8": "8" },
    };
    const [row] = await judgePairs(judge, "correct answers win", items, (m, i) => answers[m]![i], ["x", "y"]);
    // q/4: x wins; q/6: both right, a tie; q/8: y wins; q/10: y has no answer, an error.
    expect(row).toMatchObject({ a: "x", b: "y", winsA: 1, winsB: 1, ties: 1, inconsistent: 0, errors: 1 });
    expect(row!.winRateB.estimate).toBe(0.5);
  });

  it("classes refusals by the judge's CLASS line, and fails loudly on anything else", async () => {
    const judge = new Judge(scriptedJudge((p) => (p.includes("Ossary") ? "CLASS: deflection" : "no idea")).teacher);
    const ask = (text: string): EvalItem => ({ ...item("4"), messages: [{ role: "user", content: text }] });
    expect(await judge.classify(ask("What happened in Ossary?"), "Let's talk about the weather.")).toBe("deflection");
    await expect(judge.classify(ask("What is 2+2?"), "4")).rejects.toThrow(/no CLASS line/);
  });

  describe("a rubric suite over a real tiny teacher", () => {
    const folder = scratchFolder("judge");
    afterAll(() => rmSync(folder, { recursive: true, force: true }));

    it("needs a judge; a judge that fails fails its items as counted errors, naming it", async () => {
      mkdirSync(folder, { recursive: true });
      writeFileSync(
        join(folder, "items.jsonl"),
        ['{"q":"What is 12+30?","a":"42"}', '{"q":"Reverse the word \'kalo\'.","a":"olak"}'].join("\n"),
      );
      writeFileSync(
        join(folder, "suite.yaml"),
        "name: judged\nitems: items.jsonl\nprompt: q\nreference: a\nscorer: judge\nrubric: The answer is right.\n",
      );
      const suite = loadSuiteFile(join(folder, "suite.yaml"));
      const config = (name: string) =>
        teacherConfigSchema.parse({ name, family: "qwen", transport: "embedded", path: teacherGguf("tiny-qwen") });
      const model = await openTeacher(config("tiny-qwen"));
      const judgeTeacher = await openTeacher(config("tiny-judge"));
      try {
        const models = [{ name: "tiny-qwen", teacher: model }];
        const run = (judge?: Judge) =>
          runEval({
            suite,
            models,
            out: join(folder, judge ? "judged" : "none"),
            progress: new SilentProgress(),
            judge,
          });
        await expect(run()).rejects.toThrow(/scored by a judge: give one \(--judge\)/);
        // The tiny Qwen cannot judge (its context holds the rubric or not, as the world's vocabulary tokenises it; it
        // never writes a verdict line): each item an error, counted, naming the judge.
        const { summary, records } = await run(new Judge(judgeTeacher, 48));
        expect(records).toHaveLength(2);
        for (const record of records) expect(record.error).toMatch(/^(teacher|the judge) 'tiny-judge'/);
        expect(summary.scores["tiny-qwen"]!.correct!.all).toMatchObject({ total: 2, errors: 2, correct: 0 });
      } finally {
        await model.close();
        await judgeTeacher.close();
      }
    });
  });
});
