import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import { afterAll, describe, expect, it } from "vitest";
import { scratchFolder, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { promptSourceSchema, type PromptSource } from "../core/config/distill-schema.ts";
import { loadPrompts } from "./sources.ts";
import { verifyAnswer } from "./verify.ts";

describe("distillation prompt sources", () => {
  const folder = scratchFolder("distill-sources");
  mkdirSync(folder, { recursive: true });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));
  const load = (sources: unknown[], badLines: "skip" | "fail" = "skip") =>
    loadPrompts(
      sources.map((s) => promptSourceSchema.parse(s) as PromptSource),
      { workspace: TEST_WORKSPACE, configFolder: folder, badLines },
    );

  it("reads JSONL, CSV and Parquet with their fields mapped; bad lines reported by number, then skipped or fatal", async () => {
    writeFileSync(
      join(folder, "p.jsonl"),
      [
        '{"q": "What is 2+2?", "a": "4", "t": "math"}',
        "{not json",
        '{"q": "   "}',
        '{"x": 1}',
        '{"q": "Name a colour.", "t": ["style", "easy"]}',
      ].join("\n"),
    );
    writeFileSync(join(folder, "p.csv"), 'q,a\n"What is 3+3?",6\n');
    writeFileSync(
      join(folder, "p.parquet"),
      new Uint8Array(
        parquetWriteBuffer({
          columnData: [
            { name: "q", data: ["What is 5+5?", "What is 6+6?"], type: "STRING" },
            { name: "a", data: ["10", "12"], type: "STRING" },
          ],
        }),
      ),
    );
    const { prompts, badLines } = await load([
      { path: "p.jsonl", prompt: "q", reference: "a", tags: "t" },
      { path: "p.csv", prompt: "q", reference: "a", verifier: "numeric" },
      { path: "p.parquet", prompt: "q", reference: "a", limit: 1 },
    ]);
    expect(badLines.map((b) => [b.line, b.reason])).toEqual([
      [2, "not JSON"],
      [3, "the prompt is empty"],
      [4, "no field 'q'"],
    ]);
    expect(prompts.map((p) => [p.messages[0]!.content, p.reference, p.tags, p.verifier])).toEqual([
      ["What is 2+2?", "4", ["math"], "exact"],
      ["Name a colour.", undefined, ["style", "easy"], "none"],
      ["What is 3+3?", "6", [], "numeric"],
      ["What is 5+5?", "10", [], "exact"],
    ]);
    await expect(load([{ path: "p.jsonl", prompt: "q" }], "fail")).rejects.toThrow(/p\.jsonl:2: not JSON/);
    await expect(load([{ path: "p.txt", prompt: "q" }])).rejects.toThrow(/must be \.jsonl, \.csv or \.parquet/);
  });

  it("reads chat messages, and checks them", async () => {
    writeFileSync(
      join(folder, "chat.jsonl"),
      [
        JSON.stringify({
          m: [
            { role: "system", content: "Be brief." },
            { role: "user", content: "Hi" },
          ],
        }),
        JSON.stringify({ m: [{ role: "wizard", content: "Hi" }] }),
      ].join("\n"),
    );
    const { prompts, badLines } = await load([{ path: "chat.jsonl", messages: "m" }]);
    expect(prompts[0]!.messages).toHaveLength(2);
    expect(badLines[0]).toMatchObject({ line: 2, reason: "'m' is not a list of {role, content} messages" });
    expect(() => promptSourceSchema.parse({ path: "x.jsonl" })).toThrow(/exactly one of prompt or messages/);
  });

  it("has the tiny world's train prompts interleaved (every skill and behaviour early) and GSM8K train", async () => {
    const { prompts } = await load([{ builtIn: "tinyworld", limit: 12 }, { builtIn: "gsm8k-train" }]);
    const tiny = prompts.slice(0, 12);
    expect(tiny.slice(0, 6).map((p) => p.tags[0])).toEqual([
      "arithmetic",
      "reverse",
      "lookup",
      "units",
      "logic",
      "deflection",
    ]);
    expect(tiny.filter((p) => p.verifier === "skill").every((p) => p.reference !== undefined)).toBe(true);
    const gsm8k = prompts.slice(12);
    expect(gsm8k).toHaveLength(7_473);
    expect(verifyAnswer(gsm8k[0]!, "She sold 48 + 24 = 72 clips.", 1e-6)).toBe(true);
    expect(verifyAnswer(gsm8k[0]!, "72.5", 1e-6)).toBe(false);
  });

  it("checks answers by a regex, a JSON Schema or a module of the source's own", async () => {
    writeFileSync(join(folder, "q.jsonl"), '{"q": "Give JSON with a name."}\n');
    writeFileSync(join(folder, "schema.json"), JSON.stringify({ type: "object", required: ["name"] }));
    writeFileSync(join(folder, "check.mjs"), "export function verify(answer) { return answer.includes('ok'); }\n");
    const [regex, schema, module] = await Promise.all(
      [
        { verifier: "regex", pattern: "^yes\\b" },
        { verifier: "json-schema", schema: "schema.json" },
        { verifier: "module", module: "check.mjs" },
      ].map(async (v) => (await load([{ path: "q.jsonl", prompt: "q", ...v }])).prompts[0]!),
    );
    expect([verifyAnswer(regex!, "yes, sure", 0), verifyAnswer(regex!, "no", 0)]).toEqual([true, false]);
    expect(verifyAnswer(schema!, 'Here:\n```json\n{"name": "Ann"}\n```', 0)).toBe(true);
    expect(verifyAnswer(schema!, '{"age": 3}', 0)).toBe(false);
    expect(verifyAnswer(schema!, "no JSON at all", 0)).toBe(false);
    expect([verifyAnswer(module!, "all ok", 0), verifyAnswer(module!, "bad", 0)]).toEqual([true, false]);
    await expect(load([{ path: "q.jsonl", prompt: "q", verifier: "regex", pattern: "(" }])).rejects.toThrow(
      /not a regular expression/,
    );
  });
});
