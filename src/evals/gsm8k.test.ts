import { describe, expect, it } from "vitest";
import { flexibleAnswer, INVALID, normalizeAnswer, scoreGsm8k, strictAnswer } from "./gsm8k.ts";

/**
 * Response, reference, strict answer, flexible answer, strict match, flexible match: the last four as
 * lm-evaluation-harness's gsm8k.yaml gives them (its regexes run through Python's `re`, its filters and exact match
 * reproduced line by line, when this table was written).
 */
const CASES: [string, string, string, string, boolean, boolean][] = [
  ["The answer is 18.\n#### 18", "#### 18", "18", "18", true, true],
  ["#### 18", "#### 18", "18", "18", true, true],
  ["She makes $18 a day.", "#### 18", "[invalid]", "$18", false, true],
  ["She makes $18.", "#### 18", "[invalid]", "$18.", false, true],
  ["It costs $1,234.", "#### 1234", "[invalid]", "$1,234.", false, true],
  ["#### 1,234", "#### 1234", "1,234", "1,234", true, true],
  ["#### $1,234", "#### 1234", "[invalid]", "$1,234", false, true],
  ["#### -5", "#### -5", "-5", "-5", true, true],
  ["The temperature drops to -5 degrees.", "#### -5", "[invalid]", "-5", false, true],
  ["-5", "#### -5", "[invalid]", "-5", false, true],
  ["#### 3.5", "#### 3.5", "3.5", "3.5", true, true],
  ["It takes 3.5 hours.", "#### 3.5", "[invalid]", "3.5", false, true],
  ["#### 3.50", "#### 3.5", "3.50", "3.50", false, false],
  ["First 12, then 7, so 19 in all.", "#### 19", "[invalid]", "19", false, true],
  ["First 12, then 7, so 19 in all. #### 19", "#### 19", "19", "19", true, true],
  ["#### 19 and later 20", "#### 19", "19", "20", true, false],
  ["#### 7\n#### 8", "#### 7", "7", "8", true, false],
  ["No idea.", "#### 4", "[invalid]", "[invalid]", false, false],
  ["", "#### 4", "[invalid]", "[invalid]", false, false],
  ["The answer is four.", "#### 4", "[invalid]", "[invalid]", false, false],
  ["The answer is 4", "#### 4", "[invalid]", "4", false, true],
  ["The answer is 4.", "#### 4", "[invalid]", "4.", false, true],
  ["4", "#### 4", "[invalid]", "4", false, true],
  ["x = 4", "#### 4", "[invalid]", "4", false, true],
  ["####4", "#### 4", "[invalid]", "4", false, true],
  ["#### four", "#### 4", "[invalid]", "[invalid]", false, false],
  ["Total: 1,000,000 dollars.", "#### 1000000", "[invalid]", "1,000,000", false, true],
  ["Total: 1000000", "#### 1000000", "[invalid]", "1000000", false, true],
  ["She has 10 apples and eats 3, leaving 7.", "#### 7", "[invalid]", "7.", false, true],
  ["10 - 3 = 7. The answer is 7 apples", "#### 7", "[invalid]", "7", false, true],
  ["The price is $0.50", "#### .5", "[invalid]", "$0.50", false, false],
  ["0.5", "#### 0.5", "[invalid]", "0.5", false, true],
  ["Answer: 2024.", "#### 2024", "[invalid]", "2024.", false, true],
  ["In 2024 she earned 300", "#### 300", "[invalid]", "300", false, true],
  ["It is 5% of 200, which is 10.", "#### 10", "[invalid]", "10.", false, true],
  ["#### 10.", "#### 10", "10.", "10.", true, true],
  ["#### -0.25", "#### -0.25", "-0.25", "-0.25", true, true],
  ["-0.25 is the change", "#### -0.25", "[invalid]", "-0.25", false, true],
  ["1/2 of 10 is 5", "#### 5", "[invalid]", "5", false, true],
  ["The ratio is 3:4", "#### 4", "[invalid]", "4", false, true],
  ["#### 1.2.3", "#### 1.2.3", "1.2.3", "1.2.3", true, true],
  ["He walked 3 km, then 4 km: 7 km.", "#### 7", "[invalid]", "7", false, true],
  ["#### 72\nHe made 72 dollars.", "#### 72", "72", "72", true, true],
  ["He made 72 dollars. $", "#### 72", "[invalid]", "72", false, true],
  ["It's 12,5", "#### 125", "[invalid]", "12,5", false, true],
];

describe("GSM8K extraction, as lm-evaluation-harness does it", () => {
  it.each(CASES)("%j against %j", (response, reference, strict, flexible, strictMatch, flexibleMatch) => {
    expect(strictAnswer(response)).toBe(strict);
    expect(flexibleAnswer(response)).toBe(flexible);
    expect(scoreGsm8k(response, reference)).toEqual({ strict: strictMatch, flexible: flexibleMatch });
  });

  it("covers the cases the rules turn on: $ and thousands, negatives, decimals, several numbers, none, no ####", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
    expect(CASES.filter(([, , strict]) => strict === INVALID).length).toBeGreaterThan(10);
    expect(CASES.filter(([, , , flexible]) => flexible === INVALID).length).toBeGreaterThanOrEqual(3);
  });

  it("normalizes a reference solution to its final number", () => {
    expect(normalizeAnswer("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18")).toBe("18");
    expect(normalizeAnswer("#### 1,234.")).toBe("1234");
  });
});
