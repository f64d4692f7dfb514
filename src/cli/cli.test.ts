import SQLite from "better-sqlite3";
import { spawnSync } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { scratchFolder, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { PROJECT_ROOT } from "../core/paths.ts";

const BIN = join(PROJECT_ROOT, "bin", "avocado.js");
const scratch = scratchFolder("cli");

function avocado(args: string[], cwd = PROJECT_ROOT, env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    encoding: "utf8",
    env: { ...process.env, ...env },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("avocado CLI", () => {
  afterAll(() => rm(scratch, { recursive: true, force: true }));

  it("lists every stage in --help", () => {
    const { code, stdout } = avocado(["--help"]);
    expect(code).toBe(0);
    for (const stage of [
      "init",
      "tinyworld",
      "teachers",
      "distill",
      "train",
      "export",
      "eval",
      "serve",
      "keys",
      "billing",
      "quickstart",
    ]) {
      expect(stdout).toMatch(new RegExp(`^  ${stage}\\b`, "m"));
    }
  });

  it("gates a candidate on the tiny world: exit 0 passes, 1 fails (an underpowered suite too), 2 is bad input", () => {
    const env = { AVOCADO_WORKSPACE: TEST_WORKSPACE };
    const out = join(scratch, "gate");
    const same = avocado(
      [
        "eval",
        "gate",
        "--candidate",
        "tiny-qwen",
        "--baseline",
        "tiny-qwen",
        "--suite",
        "tinyworld",
        "--out",
        `${out}-same`,
      ],
      PROJECT_ROOT,
      env,
    );
    expect([same.code, same.stdout]).toEqual([0, expect.stringMatching(/: PASS\n {2}correct, higher is better: PASS/)]);
    // 112 items cannot tell a 5-point drop: not a pass, whatever the difference.
    const small = avocado(
      [
        "eval",
        "gate",
        "--candidate",
        "tiny-gemma",
        "--baseline",
        "tiny-qwen",
        "--suite",
        "tinyworld",
        "--out",
        `${out}-small`,
      ],
      PROJECT_ROOT,
      env,
    );
    expect([small.code, small.stderr]).toEqual([
      1,
      expect.stringMatching(/the gate failed: correct underpowered: 112 items/),
    ]);
    const bad = avocado(
      ["eval", "gate", "--candidate", "a", "--baseline", "b", "--suite", "tinyworld", "--margin", "7"],
      PROJECT_ROOT,
      env,
    );
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/--margin must be a fraction/)]);
  });

  it("checks a dataset against a suite for shared 13-grams", async () => {
    await mkdir(scratch, { recursive: true });
    const leaked = "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins.";
    await writeFile(
      join(scratch, "dataset.jsonl"),
      `${JSON.stringify({ prompt: leaked })}\n${JSON.stringify({ prompt: "hi" })}\n`,
    );
    const { code, stdout } = avocado([
      "eval",
      "contamination",
      "--dataset",
      join(scratch, "dataset.jsonl"),
      "--suite",
      "gsm8k",
    ]);
    expect([code, stdout]).toEqual([
      0,
      expect.stringMatching(/^1 of 2 records share a 13-gram with gsm8k \(1 of 1319 items touched\); lines 1/),
    ]);
  });

  it("refuses an eval of an unknown model or suite with a clear error and exit 2", () => {
    const unknownSuite = avocado(["eval", "run", "--models", "tiny-qwen", "--suite", "nonesuch"]);
    expect([unknownSuite.code, unknownSuite.stderr]).toEqual([2, expect.stringMatching(/no suite 'nonesuch'/)]);
    const unknownModel = avocado(["eval", "run", "--models", "nobody", "--suite", "gsm8k"]);
    expect([unknownModel.code, unknownModel.stderr]).toEqual([2, expect.stringMatching(/no teacher named 'nobody'/)]);
  });

  it("init writes a commented default config and its JSON Schema; a typo then gets a clear error", async () => {
    await mkdir(scratch, { recursive: true });
    expect(avocado(["init"], scratch).code).toBe(0);
    expect(avocado(["init"], scratch).stderr).toMatch(/already exists/);
    expect(avocado(["teachers", "list"], scratch).code).toBe(0);
    await writeFile(join(scratch, "avocado.yaml"), "tinyworld:\n  size: test\n  sede: 3\n");
    const { code, stderr } = avocado(["teachers", "list"], scratch);
    expect(code).toBe(2);
    expect(stderr).toMatch(/avocado\.yaml is not a valid Avocado config/);
    expect(stderr).toMatch(/tinyworld: unknown key 'sede'/);
  });

  it("chats with tiny-gptoss, showing the analysis and final channels separately", () => {
    const { code, stdout } = avocado(["teachers", "chat", "tiny-gptoss", "What is 17*23?"], PROJECT_ROOT, {
      AVOCADO_WORKSPACE: TEST_WORKSPACE,
    });
    expect(code).toBe(0);
    expect(stdout).toMatch(/\[analysis channel\]\n.+\n\[final channel\]\n.+/);
    expect(stdout).toMatch(/prompt \+ \d+ completion tokens/);
  });

  it("emits JSON with --json and rejects bad arguments with exit 2", () => {
    const json = avocado(
      ["--json", "teachers", "chat", "tiny-qwen", "Reverse the word 'lomi'.", "--logprobs", "2"],
      PROJECT_ROOT,
      { AVOCADO_WORKSPACE: TEST_WORKSPACE },
    );
    expect(json.code).toBe(0);
    const result = JSON.parse(json.stdout.trim().split("\n").at(-1) as string) as {
      reasoning: string;
      logprobs: unknown[];
    };
    expect(result.reasoning.length).toBeGreaterThan(0);
    expect(result.logprobs.length).toBeGreaterThan(0);
    expect(
      avocado(["teachers", "chat", "nobody", "hi"], PROJECT_ROOT, { AVOCADO_WORKSPACE: TEST_WORKSPACE }).code,
    ).toBe(2);
    expect(
      avocado(["teachers", "chat", "tiny-qwen", "hi", "--max-tokens", "-3"], PROJECT_ROOT, {
        AVOCADO_WORKSPACE: TEST_WORKSPACE,
      }).stderr,
    ).toMatch(/--max-tokens must be a positive integer/);
  });

  it("trains on shards, exports to HF + GGUF, and chats with the result", () => {
    const out = join(scratch, "student");
    const shards = join(TEST_WORKSPACE, "teachers", "tiny-gemma", "train", "shards");
    const trained = avocado(["train", "--shards", shards, "--out", out, "--steps", "3", "--name", "student"]);
    expect(trained.code, trained.stderr).toBe(0);
    expect(trained.stdout).toMatch(/trained student: final loss/);
    const exported = avocado(["export", out, "--gguf", "f16,q8_0"]);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toMatch(/tokenizer\.json.*model\.f16\.gguf.*model\.q8_0\.gguf/);
    const chat = avocado(["teachers", "chat", join(out, "model.q8_0.gguf"), "Convert 7 km to m.", "--max-tokens", "8"]);
    expect(chat.code, chat.stderr).toBe(0);
    expect(chat.stdout).toMatch(/completion tokens/);
    expect(avocado(["export", out, "--gguf", "q4"]).stderr).toMatch(/unknown encoding 'q4'/);
    const noShards = avocado(["train", "--shards", scratch, "--out", join(scratch, "x")]);
    expect(noShards.code).toBe(2);
    expect(noShards.stderr).toMatch(/index\.json: is missing \(not a shards folder\)/);
    const zeroSteps = avocado(["train", "--shards", shards, "--out", join(scratch, "x"), "--steps", "0"]);
    expect(zeroSteps.code).toBe(2);
    expect(zeroSteps.stderr).toMatch(/--steps \/ train\.optimization: steps/);
  });

  it("refuses an unknown plan, and says a SQLite store is busy (another process holds its write lock) instead of a raw database error", async () => {
    const folder = join(scratch, "busy");
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, "avocado.yaml"), "workspace: .\nserve:\n  store: sqlite:avocado.db\n");
    expect(avocado(["keys", "create", "--org", "acme", "--name", "first"], folder).code).toBe(0);
    // A plan the config does not define (`constructor` included) is refused before anything is written.
    for (const plan of ["gold", "constructor"]) {
      const refused = avocado(["keys", "create", "--org", "acme", "--plan", plan], folder);
      expect(refused.code, plan).toBe(2);
      expect(refused.stderr).toMatch(new RegExp(`no plan '${plan}' \\(plans: default\\)`));
    }
    const holder = new SQLite(join(folder, "avocado.db"));
    holder.exec("begin immediate");
    try {
      const { code, stderr } = avocado(["keys", "create", "--org", "acme", "--name", "second"], folder);
      expect(code).toBe(1);
      expect(stderr).toMatch(/the SQLite store is busy: another process is writing it/);
    } finally {
      holder.exec("rollback");
      holder.close();
    }
  }, 30_000);
});
