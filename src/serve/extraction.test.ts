import { describe, expect, it } from "vitest";
import { extractionReport, simhash } from "./extraction.ts";

describe("extraction signals", () => {
  it("hashes similar prompts to nearby SimHashes and unrelated ones far apart", () => {
    const bits = (a: string, b: string) =>
      [...(BigInt(`0x${a}`) ^ BigInt(`0x${b}`)).toString(2)].filter((c) => c === "1").length;
    const template = (x: string) =>
      `Translate the following sentence into French, keeping the tone formal and precise, word ${x}.`;
    expect(simhash("What is 25*12?")).toMatch(/^[0-9a-f]{16}$/);
    expect(simhash(template("apple"))).toBe(simhash(template("apple")));
    expect(bits(simhash(template("apple")), simhash(template("pear")))).toBeLessThanOrEqual(12);
    expect(bits(simhash(template("apple")), simhash("Write a haiku about the sea at night"))).toBeGreaterThan(16);
  });

  it("hashes an ASCII prompt (its fast path) exactly as the general path does", () => {
    const alphabet = "aZ09 _-.,!?\n\tQxyzABC*";
    let seed = 20261126;
    const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    for (let n = 0; n < 5_000; n++) {
      const text = Array.from(
        { length: Math.floor(random() * 80) },
        () => alphabet[Math.floor(random() * alphabet.length)],
      ).join("");
      // An em dash (neither letter nor digit) sends the same words down the general path.
      expect(simhash(text), JSON.stringify(text)).toBe(simhash(`${text}\u2014`));
    }
    // Only the first 4,000 characters count, a word cut at the limit included.
    expect(simhash(`${"word ".repeat(799)}abcdefgh`)).toBe(simhash(`${"word ".repeat(799)}abcde`));
    expect(simhash(`\u2014${"word ".repeat(799)}abcdefgh`)).toBe(simhash(`${"word ".repeat(799)}abcd`));
  });

  it("scores a templated, logprob-heavy sweep far above ordinary use", () => {
    const now = Date.now();
    const words = Array.from({ length: 400 }, (_, i) => `item${i}`);
    const sweep = words.map((w, i) => ({
      created_at: now - i,
      completion_tokens: 400,
      prompt_simhash: simhash(`Give the probability of every next word after: the quick brown fox jumps over ${w}`),
      logprobs: 5,
      temperature: 0,
    }));
    const ordinary = Array.from({ length: 40 }, (_, i) => ({
      created_at: now - i,
      completion_tokens: 200,
      prompt_simhash: simhash(["hello there", "summarise this email", "plan a trip to Rome", "fix my SQL"][i % 4]!),
      logprobs: -1,
      temperature: 0.7,
    }));
    const suspicious = extractionReport(sweep, 1);
    const normal = extractionReport(ordinary, 1);
    expect(suspicious.parts.logprobs).toBe(30);
    expect(suspicious.facts.templatedShare).toBeGreaterThan(0.5);
    expect(suspicious.score).toBeGreaterThanOrEqual(60);
    expect(normal.score).toBeLessThan(10);
    expect(normal.parts.coverage).toBe(0);
    expect(extractionReport([], 7).score).toBe(0);
  });
});
