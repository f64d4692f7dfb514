import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { scratchFolder, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { contamination, NgramIndex, words } from "./contamination.ts";
import { openSuite } from "./suite.ts";

describe("n-gram contamination", () => {
  const folder = scratchFolder("contamination");
  mkdirSync(folder, { recursive: true });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it("finds a suite item's 13 words in a record, across case and punctuation, and not fewer", () => {
    const item = "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins.";
    const index = new NgramIndex([item]);
    expect(words("Janet's ducks, LAY 16!")).toEqual(["janet", "s", "ducks", "lay", "16"]);
    expect(
      index.matches("As a reminder: JANET'S DUCKS LAY 16 EGGS PER DAY; SHE EATS THREE FOR BREAKFAST every..."),
    ).toEqual(new Set([0]));
    // Twelve words in a row are not thirteen.
    expect(index.matches("janet s ducks lay 16 eggs per day she eats three for").size).toBe(0);
    // A short item counts whole.
    expect(new NgramIndex(["What is 2+2?"]).matches("Q: what is 2 + 2? A: 4").size).toBe(1);
  });

  it("reports a dataset's contaminated records and the GSM8K items they touch", () => {
    const gsm8k = openSuite("gsm8k", TEST_WORKSPACE).items.map((item) => item.messages.at(-1)!.content);
    const leaked = gsm8k[41]!.replace(/^Question: /, "").replace(/\nAnswer:$/, "");
    const path = join(folder, "dataset.jsonl");
    writeFileSync(
      path,
      [
        {
          messages: [
            { role: "user", content: "Reverse the word 'kalomi'." },
            { role: "assistant", content: "imolak" },
          ],
        },
        {
          messages: [
            { role: "user", content: leaked },
            { role: "assistant", content: "#### 5" },
          ],
        },
        { prompt: "What is the capital of Zorvia?", completion: "Zorburg" },
      ]
        .map((record) => JSON.stringify(record))
        .join("\n"),
    );
    expect(contamination(path, gsm8k)).toEqual({
      n: 13,
      records: 3,
      contaminated: 1,
      lines: [2],
      itemsTouched: 1,
      items: 1_319,
    });
    writeFileSync(join(folder, "bad.jsonl"), '{"ok": 1}\n{not json\n');
    expect(() => contamination(join(folder, "bad.jsonl"), gsm8k)).toThrow(/bad\.jsonl:2: not JSON/);
  });
});
