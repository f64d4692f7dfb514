import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { scratchFolder, teacherGguf, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { teacherConfigSchema } from "../core/config/teacher-schema.ts";
import { SilentProgress } from "../core/progress.ts";
import { openTeacher } from "../teachers/registry.ts";
import { runEval } from "./run.ts";
import { loadSuiteFile, openSuite, type Suite } from "./suite.ts";

describe("eval suites", () => {
  const folder = scratchFolder("suites");
  mkdirSync(folder, { recursive: true });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  const write = (name: string, text: string) => {
    writeFileSync(join(folder, name), text);
    return join(folder, name);
  };
  write("items.jsonl", '{"q": "What is 2+2?", "a": "#### 4", "topic": "sums"}\n{"q": "3+3?", "a": "#### 6"}\n');

  it("reads the built-in suites: the tiny world's held-out skills and GSM8K test, from the repository", () => {
    const tiny = openSuite("tinyworld", TEST_WORKSPACE);
    expect(new Set(tiny.items.map((item) => item.group))).toEqual(
      new Set(["arithmetic", "reverse", "lookup", "units", "logic"]),
    );
    const gsm8k = openSuite("gsm8k", TEST_WORKSPACE);
    expect(gsm8k.items).toHaveLength(1_319);
    expect(gsm8k.metrics).toEqual(["strict", "flexible"]);
    expect(gsm8k.items[0]!.messages[0]!.content).toMatch(/^Question: Janet.*\nAnswer:$/s);
    expect(gsm8k.score(gsm8k.items[0]!, "She makes 9 * 2 = $18.\n#### 18")).toEqual({ strict: true, flexible: true });
  });

  it("reads a suite file: a template over the item's fields, a group, a scorer", () => {
    const path = write(
      "sums.yaml",
      [
        "name: sums",
        "items: items.jsonl",
        'prompt: "Solve: {q}"',
        "reference: a",
        "scorer: gsm8k",
        "maxTokens: 16",
      ].join("\n"),
    );
    const suite = loadSuiteFile(path);
    expect(suite.items.map((item) => [item.id, item.messages[0]!.content, item.group])).toEqual([
      ["sums/1", "Solve: What is 2+2?", "sums"],
      ["sums/2", "Solve: 3+3?", "sums"],
    ]);
    expect(suite.score(suite.items[1]!, "#### 6")).toEqual({ strict: true, flexible: true });
  });

  it("carries chat-template switches (thinking, reasoning effort) to every request, checked", async () => {
    const lines = ["name: plain", "items: items.jsonl", "prompt: q", "reference: a", "scorer: gsm8k"];
    const suite = loadSuiteFile(write("plain.yaml", [...lines, "thinking: false", "reasoningEffort: low"].join("\n")));
    expect(suite.template).toEqual({ thinking: false, reasoningEffort: "low" });
    expect(loadSuiteFile(write("none.yaml", lines.join("\n"))).template).toBeUndefined();
    expect(() => loadSuiteFile(write("bad-effort.yaml", [...lines, "reasoningEffort: extreme"].join("\n")))).toThrow(
      /bad-effort\.yaml:6: reasoningEffort:/,
    );
    // Qwen with thinking off: its template closes an empty <think> block, and no reasoning comes back.
    const qwen = await openTeacher(
      teacherConfigSchema.parse({ name: "q", family: "qwen", transport: "embedded", path: teacherGguf("tiny-qwen") }),
    );
    try {
      const models = [{ name: "q", teacher: qwen }];
      const run = (s: Suite, out: string) => runEval({ suite: s, models, out, progress: new SilentProgress() });
      const off = await run(suite, join(folder, "thinking-off"));
      expect(off.records.every((record) => record.reasoning === undefined)).toBe(true);
      const on = await run(loadSuiteFile(join(folder, "none.yaml")), join(folder, "thinking-on"));
      expect(on.records.some((record) => record.reasoning !== undefined)).toBe(true);
    } finally {
      await qwen.close();
    }
  });

  it("puts few-shot examples before each question as earlier turns, and says when too few are given", () => {
    write("shots.jsonl", '{"q": "1+1?", "a": "#### 2"}\n{"q": "2+3?", "a": "#### 5"}\n');
    const lines = ["name: shot", "items: items.jsonl", 'prompt: "Q: {q}"', "reference: a", "scorer: gsm8k"];
    const suite = loadSuiteFile(
      write("shot.yaml", [...lines, "shots:", "  items: shots.jsonl", "  count: 2"].join("\n")),
    );
    expect(suite.items[1]!.messages).toEqual([
      { role: "user", content: "Q: 1+1?" },
      { role: "assistant", content: "#### 2" },
      { role: "user", content: "Q: 2+3?" },
      { role: "assistant", content: "#### 5" },
      { role: "user", content: "Q: 3+3?" },
    ]);
    const many = write("many.yaml", [...lines, "shots:", "  items: shots.jsonl", "  count: 5"].join("\n"));
    expect(() => loadSuiteFile(many)).toThrow(/shots\.jsonl: 5 examples are asked for, the file has 2/);
  });

  it("names the file and line of what is wrong: a missing field, a bad regex, a bad item, no items, no such suite", () => {
    const missing = write("missing.yaml", ["name: m", "items: items.jsonl", "prompt: q", "scorer: exact"].join("\n"));
    expect(() => loadSuiteFile(missing)).toThrow(/missing\.yaml: reference: /);
    const badRegex = write(
      "regex.yaml",
      ["name: r", "items: items.jsonl", "prompt: q", "reference: a", "scorer: regex", 'pattern: "(unclosed"'].join(
        "\n",
      ),
    );
    expect(() => loadSuiteFile(badRegex)).toThrow(/regex\.yaml:6: pattern: not a regular expression/);
    const typo = write(
      "typo.yaml",
      ["name: t", "items: items.jsonl", "prompt: q", "reference: a", "scorer: exact", "maxTokens: lots"].join("\n"),
    );
    expect(() => loadSuiteFile(typo)).toThrow(/typo\.yaml:6: maxTokens: /);
    write("broken.jsonl", '{"q": "fine", "a": "1"}\n{"q": "no answer"}\nnot json\n');
    const broken = write(
      "broken.yaml",
      ["name: b", "items: broken.jsonl", "prompt: q", "reference: a", "scorer: exact"].join("\n"),
    );
    expect(() => loadSuiteFile(broken)).toThrow(/broken\.jsonl:2: no field 'a'/);
    write("empty.jsonl", "\n");
    const empty = write(
      "empty.yaml",
      ["name: e", "items: empty.jsonl", "prompt: q", "reference: a", "scorer: exact"].join("\n"),
    );
    expect(() => loadSuiteFile(empty)).toThrow(/empty\.jsonl: the suite has no items/);
    expect(() => openSuite("nonesuch", TEST_WORKSPACE)).toThrow(
      /no suite 'nonesuch' \(built in: tinyworld, tinyworld-probes, gsm8k/,
    );
  });
});
