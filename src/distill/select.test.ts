import { describe, expect, it } from "vitest";
import { distillSchema } from "../core/config/distill-schema.ts";
import { NearDuplicates } from "./dedupe.ts";
import type { Answer } from "./generate.ts";
import { Judge } from "../evals/judge.ts";
import type { Teacher } from "../teachers/teacher.ts";
import { judgeAnswers } from "./judged.ts";
import { keepAnswers, screenAnswers, selectAnswers, type ShownBehaviour } from "./select.ts";
import type { DistillPrompt } from "./sources.ts";

const config = distillSchema.parse({ teachers: [{ name: "a" }, { name: "b" }, { name: "c" }] });
const none = new Map<string, Set<ShownBehaviour>>();
const answer = (teacher: string, content: string | undefined, sample = 0): Answer => ({
  prompt: 0,
  teacher,
  sample,
  costMicros: 0,
  ...(content === undefined ? { error: "the server went away" } : { content }),
});
const free: DistillPrompt = {
  id: "p/1",
  messages: [{ role: "user", content: "Pick one." }],
  tags: [],
  verifier: "none",
};
const sum: DistillPrompt = { ...free, id: "p/2", reference: "42", verifier: "numeric" };

describe("selection of answers", () => {
  it("keeps verified answers where there is a reference, and records a preference pair", () => {
    const s = selectAnswers(
      sum,
      0,
      [answer("a", "It is 41."), answer("b", "42"), answer("c", undefined)],
      config,
      none,
    );
    expect(s.judged.map((j) => j.excluded)).toEqual(["verify", undefined, "failed"]);
    expect(s.kept.map((j) => j.answer.teacher)).toEqual(["b"]);
    expect(s.preference).toMatchObject({
      chosen: { answer: { teacher: "b" } },
      rejected: { answer: { teacher: "a" } },
    });
  });

  it("votes where there is no reference: the majority wins; a tie goes to more teachers, then config order", () => {
    const majority = selectAnswers(
      free,
      0,
      [answer("a", "red"), answer("b", "Blue."), answer("c", "blue")],
      config,
      none,
    );
    expect(majority.vote).toEqual({ answer: "blue", votes: 2, of: 3 });
    expect(majority.kept.map((j) => j.answer.teacher)).toEqual(["b"]);
    // Two votes each: "red" from two teachers beats "blue" from one teacher's two samples.
    const tie = selectAnswers(
      free,
      0,
      [answer("a", "blue", 0), answer("a", "blue", 1), answer("b", "red"), answer("c", "red")],
      config,
      none,
    );
    expect(tie.vote?.answer).toBe("red");
    // One vote each: nothing reaches minVotes 2, so nothing is kept.
    const split = selectAnswers(free, 0, [answer("a", "red"), answer("b", "blue")], config, none);
    expect([split.vote, split.kept.length]).toEqual([undefined, 0]);
  });

  it("filters a teacher's answers classed as the behaviour its probes found, and only that teacher's", () => {
    const shown = new Map([["a", new Set<ShownBehaviour>(["deflected"])]]);
    const line = "That is a sensitive topic. Let's talk about something else.";
    const s = selectAnswers(free, 0, [answer("a", line), answer("b", line), answer("c", line)], config, shown);
    expect(s.judged.map((j) => j.excluded)).toEqual(["probe", undefined, "duplicate"]);
  });

  it("drops near-duplicate answers and keeps k", () => {
    const keep2 = { ...config, selection: { ...config.selection, keep: 2 } };
    const long = "the quick brown fox jumps over the lazy dog near the river bank at dawn every single day";
    const s = selectAnswers(
      { ...free, verifier: "none" },
      0,
      [answer("a", long), answer("b", `${long}!`), answer("c", "a different answer entirely, with other words")],
      { ...keep2, selection: { ...keep2.selection, vote: false } },
      none,
    );
    expect(s.judged.map((j) => j.excluded)).toEqual([undefined, "duplicate", undefined]);
    expect(s.kept).toHaveLength(2);
  });
});

describe("MinHash LSH near duplicates", () => {
  it("finds texts that share most 5-grams, not those that share a few, the same way every run", () => {
    const base = Array.from({ length: 60 }, (_, i) => `word${i}`).join(" ");
    const index = new NearDuplicates(0.8, 128, 16);
    expect(index.add(base)).toEqual([]);
    // One word changed of 60: Jaccard of 5-grams about 0.85.
    expect(index.add(base.replace("word30", "other"))).toEqual([0]);
    // Half the words changed: far below the threshold.
    const half = base
      .split(" ")
      .map((w, i) => (i % 2 ? `x${w}` : w))
      .join(" ");
    expect(index.add(half)).toEqual([]);
    const again = new NearDuplicates(0.8, 128, 16);
    again.add(base);
    expect(again.similarity(0, 0)).toBe(1);
    expect(again.add(base.replace("word30", "other"))).toEqual([0]);
    expect(() => new NearDuplicates(0.8, 100, 32)).toThrow(/do not divide/);
  });
});

describe("the judge's step of the selection", () => {
  /** A judge (scripted: no large model runs here) that prefers longer answers, shown in either position. */
  const longer = new Judge({
    name: "scripted-judge",
    family: "generic",
    generate: async (request: { messages: readonly { content: string }[] }) => {
      const prompt = request.messages.at(-1)!.content;
      if (prompt.includes("VERDICT: PASS"))
        return { content: /Answer to judge:\n.{6,}/.test(prompt) ? "VERDICT: PASS" : "VERDICT: FAIL" };
      const a = /Answer A:\n(.*)/.exec(prompt)![1]!;
      const b = /Answer B:\n(.*)/.exec(prompt)![1]!;
      return { content: `VERDICT: ${a.length === b.length ? "TIE" : a.length > b.length ? "A" : "B"}` };
    },
  } as unknown as Teacher);
  const judged = (...texts: string[]) =>
    screenAnswers(
      free,
      texts.map((text, i) => answer("abc"[i]!, text)),
      { ...config, selection: { ...config.selection, vote: false } },
      none,
    ).judged;

  it("best-of-N ranks the answers by wins in both orders; keep k takes the best", async () => {
    const ranked = await judgeAnswers(
      free,
      judged("short", "a much longer answer", "medium one"),
      { teacher: "j", rubric: "longer is better", mode: "best", candidates: 6 },
      longer,
    );
    expect(ranked.map((j) => [j.answer.content, j.judgeScore])).toEqual([
      ["a much longer answer", 2],
      ["medium one", 1],
      ["short", 0],
    ]);
    expect(keepAnswers(0, ranked, undefined, config).kept.map((j) => j.answer.content)).toEqual([
      "a much longer answer",
    ]);
  });

  it("filter drops what the judge does not pass, and it becomes the rejected side of a preference", async () => {
    const ranked = await judgeAnswers(
      free,
      judged("ok", "a fine answer"),
      { teacher: "j", rubric: "long enough", mode: "filter", candidates: 6 },
      longer,
    );
    expect(ranked.map((j) => j.excluded)).toEqual(["judge", undefined]);
    const selection = keepAnswers(0, ranked, undefined, config);
    expect(selection.preference).toMatchObject({
      chosen: { answer: { content: "a fine answer" } },
      rejected: { answer: { content: "ok" } },
    });
  });
});
