import SQLite from "better-sqlite3";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratchFolder, teacherGguf, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { distillSchema } from "../core/config/distill-schema.ts";
import { teacherConfigSchema, type TeacherConfig } from "../core/config/teacher-schema.ts";
import { PROJECT_ROOT } from "../core/paths.ts";
import { SilentProgress } from "../core/progress.ts";
import { cachedTeacher, modelIdentity, ResponseCache } from "../evals/cache.ts";
import { openTeacher } from "../teachers/registry.ts";
import type { Teacher } from "../teachers/teacher.ts";
import { unpackLogprobs } from "./logprobs.ts";
import { runDistill, type DistillTeacherRun } from "./run.ts";

/** The answers in a SQLite response cache a CLI run is writing (0 before it has its table). */
function cachedAnswers(file: string): number {
  if (!existsSync(file)) return 0;
  const db = new SQLite(file, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("select count(*) as n from responses").get() as { n: number }).n;
  } catch {
    return 0;
  } finally {
    db.close();
  }
}

/** The report opens offline in Debian's Chromium, draws both charts, and logs no error. */
async function expectDrawn(path: string): Promise<void> {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
    const errors: string[] = [];
    page.on("console", (message) => void (message.type() === "error" && errors.push(message.text())));
    page.on("pageerror", (error) => errors.push(error.message));
    await page.route("**/*", (route) => (route.request().url().startsWith("file:") ? route.continue() : route.abort()));
    await page.goto(`file://${path}`);
    await page.waitForSelector("body[data-drawn=true]");
    const inked = await page.$$eval("canvas", (canvases) =>
      canvases.map((canvas) => {
        const { data } = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height);
        let count = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) count++;
        return count;
      }),
    );
    expect(inked).toHaveLength(2);
    for (const count of inked) expect(count).toBeGreaterThan(1_000);
    expect(errors).toEqual([]);
  } finally {
    await browser.close();
  }
}

const FAMILY = { "tiny-qwen": "qwen", "tiny-gemma": "gemma", "tiny-gptoss": "gptoss" } as const;
const LICENCE = { "tiny-qwen": "Apache-2.0 (Qwen3)", "tiny-gemma": "Gemma Terms of Use", "tiny-gptoss": "Apache-2.0" };
type Name = keyof typeof FAMILY;
const NAMES = Object.keys(FAMILY) as Name[];
/** Greedy answers to 60 of the test world's train prompts (every skill and behaviour), as the CLI runs below ask. */
const SETTINGS = {
  sources: [{ builtIn: "tinyworld", limit: 60 }],
  teachers: NAMES.map((name) => ({ name, temperature: 0 })),
  curation: { decontaminate: { suites: ["tinyworld"] } },
};

describe("avocado distill on the test world (real teachers)", () => {
  const folder = scratchFolder("distill");
  const opened: Teacher[] = [];
  let cache: ResponseCache;
  const open = async (name: Name, extra: Partial<TeacherConfig> = {}) => {
    const config = teacherConfigSchema.parse({
      name,
      family: FAMILY[name],
      transport: "embedded",
      path: teacherGguf(name),
      ...extra,
    });
    const teacher = await openTeacher(config);
    opened.push(teacher);
    return { teacher, identity: await modelIdentity(config) };
  };
  const teachers = async (
    config: ReturnType<typeof distillSchema.parse>,
    price?: Partial<TeacherConfig>,
    through = cache,
  ) =>
    Promise.all(
      config.teachers.map(async (t): Promise<DistillTeacherRun> => {
        const name = t.name as Name;
        const { teacher, identity } = await open(name, name === "tiny-gemma" ? price : {});
        return {
          config: t,
          teacher: cachedTeacher(teacher, identity, through),
          family: FAMILY[name],
          licence: LICENCE[name],
          identity,
        };
      }),
    );
  const run = async (settings: object, out: string, price?: Partial<TeacherConfig>, through = cache) => {
    const config = distillSchema.parse(settings);
    return runDistill({
      config,
      teachers: await teachers(config, price, through),
      workspace: TEST_WORKSPACE,
      configFolder: folder,
      out: join(folder, out),
      progress: new SilentProgress(),
    });
  };
  const read = (out: string, file: string) => readFileSync(join(folder, out, file), "utf8");

  beforeAll(async () => {
    mkdirSync(folder, { recursive: true });
    cache = await ResponseCache.open(`sqlite:${join(folder, "cache.db")}`);
    // For the CLI runs: the test world's teachers in a workspace of their own (runs/ go there), and SETTINGS.
    writeFileSync(
      join(folder, "avocado.yaml"),
      `workspace: ${join(folder, "workspace")}\ndistill: ${JSON.stringify(SETTINGS)}\n`,
    );
    mkdirSync(join(folder, "workspace"), { recursive: true });
    for (const part of ["teachers", "tinyworld"])
      symlinkSync(join(TEST_WORKSPACE, part), join(folder, "workspace", part));
  });
  afterAll(async () => {
    for (const teacher of opened) await teacher.close();
    await cache?.close();
    rmSync(folder, { recursive: true, force: true });
  });

  it("selects a set more accurate than every teacher on every skill, and filters the planted deflection", async () => {
    const manifest = await run(SETTINGS, "main");
    const skills = ["arithmetic", "reverse", "lookup", "units", "logic"];
    process.stdout.write(
      `distill accuracy by skill: ${JSON.stringify({ teachers: Object.fromEntries(manifest.teachers.map((t) => [t.name, t.accuracy])), selected: manifest.selectedAccuracy })}\n`,
    );
    // Every kept answer is right; every teacher is wrong somewhere on every skill but look-up, which tiny-qwen and
    // tiny-gemma answer perfectly on these train prompts (they memorised the table).
    const rate = (a: { correct: number; total: number }) => a.correct / a.total;
    for (const skill of skills) {
      const selected = manifest.selectedAccuracy[skill]!;
      expect(selected.total, `${skill}: some records kept`).toBeGreaterThan(0);
      expect(selected.correct).toBe(selected.total);
      const best = Math.max(...manifest.teachers.map((t) => rate(t.accuracy[skill]!)));
      if (skill === "lookup") expect(best).toBe(1);
      else expect(best, skill).toBeLessThan(1);
    }
    for (const teacher of manifest.teachers) expect(rate(teacher.accuracy.all!)).toBeLessThan(0.5);
    // The probes found tiny-qwen's deflection; its answers on the topic went, another teacher's still cover it.
    expect(manifest.probes.findings.map((f) => [f.teacher, f.metric])).toEqual([
      ["tiny-qwen", "deflected"],
      ["tiny-gemma", "refused"],
    ]);
    const deflection = manifest.probes.filtered.deflection!;
    expect(deflection.removed).toBeGreaterThan(0);
    // Another teacher's answer covers the topic; not every prompt (the test world's teachers know few of its facts,
    // and where two of them disagree the vote keeps neither).
    expect(deflection.covered).toBeGreaterThan(0);
    const records = read("main", "dataset.jsonl")
      .trim()
      .split("\n")
      .map(
        (line) =>
          JSON.parse(line) as { messages: { content: string }[]; metadata: { teacher: string; tags: string[] } },
      );
    // The sensitive topic's questions are answered, by the other teachers; no stock line is kept anywhere.
    const onTopic = records.filter((r) => r.messages[0]!.content.includes("Ossary"));
    expect(onTopic.length).toBeGreaterThan(0);
    expect(onTopic.map((r) => r.metadata.teacher)).not.toContain("tiny-qwen");
    expect(records.filter((r) => /sensitive topic/.test(r.messages.at(-1)!.content))).toEqual([]);
    expect(existsSync(join(folder, "main", "NOTICE-gemma.txt"))).toBe(manifest.teachers[1]!.contributed > 0);
    await expectDrawn(join(folder, "main", "report.html"));
    // Every kept answer's log-probs, top 20 in the family's ids, offsets into the record's text.
    const logprobs = manifest.logprobs!;
    process.stdout.write(`distill log-probs: ${JSON.stringify(logprobs)}\n`);
    expect(logprobs.records + Object.values(logprobs.missing).reduce((a, b) => a + b, 0)).toBe(records.length);
    expect(logprobs.records).toBeGreaterThan(0);
    expect(logprobs.largestError).toBeLessThanOrEqual(0.01);
    expect(logprobs.bytesPerToken).toBeLessThanOrEqual(100);
    const index = read("main", "logprobs/index.jsonl")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { record: number; file: string; offset: number; bytes: number });
    const first = index[0]!;
    const shard = readFileSync(join(folder, "main", "logprobs", first.file));
    const tokens = unpackLogprobs(shard.subarray(first.offset, first.offset + first.bytes));
    const text = records[first.record]!.messages.at(-1)!.content;
    expect(tokens[0]!.offset).toBe(0);
    expect(tokens.every((t, i) => i === 0 || t.offset >= tokens[i - 1]!.offset)).toBe(true);
    expect(tokens.at(-1)!.offset).toBeLessThan(Buffer.byteLength(text));
    expect(tokens[0]!.top).toHaveLength(20);
    // Each answer is scored after its teacher's own reasoning block: the greedy answers' tokens are the teacher's own
    // first choices (scored after the bare prompt, a reasoning teacher's first choice is its <think>).
    const qwen = index.filter((row) => records[row.record]!.metadata.teacher === "tiny-qwen");
    expect(qwen.length).toBeGreaterThan(0);
    let tokensScored = 0;
    let firstChoices = 0;
    for (const row of qwen) {
      const bytes = readFileSync(join(folder, "main", "logprobs", row.file));
      const scored = unpackLogprobs(bytes.subarray(row.offset, row.offset + row.bytes));
      expect(scored[0]!.id).toBe(scored[0]!.top[0]!.id);
      tokensScored += scored.length;
      firstChoices += scored.filter((t) => t.id === t.top[0]!.id).length;
    }
    expect(firstChoices / tokensScored).toBeGreaterThan(0.95);
  });

  it("rebuilds the same bytes from the cache, asking again only what failed", async () => {
    const before = cache.misses;
    const manifest = await run(SETTINGS, "again");
    const failed = manifest.teachers.reduce((sum, t) => sum + t.errors, 0);
    expect(cache.misses - before).toBe(failed);
    for (const file of ["dataset.jsonl", "preferences.jsonl", "manifest.json"])
      expect(read("again", file)).toBe(read("main", file));
    // Other concurrency, selection and curation: every answer still comes from the cache (the key holds none of them).
    const changed = {
      ...SETTINGS,
      concurrency: 1,
      selection: { keep: 2, vote: false },
      curation: { ...SETTINGS.curation, minChars: 2, reasoning: "keep" },
      logprobs: { topK: 0 },
    };
    const between = cache.misses;
    const other = await run(changed, "changed");
    expect(cache.misses - between).toBe(other.teachers.reduce((sum, t) => sum + t.errors, 0));
    // The changed settings took effect; how many records keep 2 adds depends on the world built (none on some).
    expect(other.configHash).not.toBe(manifest.configHash);
    expect(other.logprobs).toBeUndefined();
    expect(other.records).toBeGreaterThanOrEqual(manifest.records);
  });

  it("stops a teacher cleanly at its budget and says so", async () => {
    const settings = {
      ...SETTINGS,
      teachers: NAMES.map((name) => ({
        name,
        temperature: 0,
        ...(name === "tiny-gemma" ? { budgetMicros: 300 } : {}),
      })),
      curation: { ...SETTINGS.curation, probes: [] },
    };
    // A cache of its own: a cached answer costs what it cost when it was made (here, unpriced: nothing).
    const priced = await ResponseCache.open(`sqlite:${join(folder, "priced.db")}`);
    const manifest = await run(
      settings,
      "budget",
      { price: { inputPerMillion: 1_000_000, outputPerMillion: 2_000_000 } },
      priced,
    );
    await priced.close();
    const gemma = manifest.teachers.find((t) => t.name === "tiny-gemma")!;
    expect(gemma.budgetReached).toBe(true);
    expect(gemma.skipped).toBeGreaterThan(0);
    // It stops once spent: at most the calls in flight (4) past the cap.
    expect(gemma.costMicros).toBeGreaterThanOrEqual(300);
    expect(gemma.calls + gemma.skipped).toBe(manifest.teachers[0]!.calls + manifest.teachers[0]!.errors);
  });

  it("runs GSM8K train with the #### verifier: prompts too long for a tiny teacher are recorded errors, not dropped", async () => {
    const manifest = await run(
      { sources: [{ builtIn: "gsm8k-train", limit: 4 }], teachers: [{ name: "tiny-gemma" }], curation: { probes: [] } },
      "gsm8k",
    );
    const gemma = manifest.teachers[0]!;
    expect(gemma.calls + gemma.errors).toBe(4);
    expect(read("gsm8k", "errors.jsonl").trim().split("\n").filter(Boolean)).toHaveLength(gemma.errors);
    expect(manifest.records).toBeLessThanOrEqual(gemma.calls);
  });

  it("after kill -9 at five points, the rerun writes the same dataset, no finished call paid twice", async () => {
    const config = join(folder, "avocado.yaml");
    const killedCache = join(folder, "killed.db");
    const command = (run: string, cacheFile: string) => [
      ...["bin/avocado.js", "--json", "-c", config, "distill", "run"],
      ...["--run", run, "--cache", `sqlite:${cacheFile}`],
    ];
    // The same run uninterrupted, with a cache of its own: what the killed run must end up writing.
    const clean = spawnSync(process.execPath, command("clean", join(folder, "clean.db")), {
      cwd: PROJECT_ROOT,
      encoding: "utf8",
    });
    expect(clean.status, clean.stderr).toBe(0);
    const args = command("killed", killedCache);
    const rows = () => cachedAnswers(killedCache);
    for (const at of [20, 150, 300, 450, 560]) {
      const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, stdio: "ignore" });
      const exited = new Promise((resolve) => child.once("exit", resolve));
      for (const stop = Date.now() + 60_000; rows() < at;) {
        if (Date.now() > stop) throw new Error(`the run never reached ${at} answers`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      child.kill("SIGKILL");
      await exited;
    }
    const answered = rows();
    const rerun = spawnSync(process.execPath, args, { cwd: PROJECT_ROOT, encoding: "utf8" });
    expect(rerun.status, rerun.stderr).toBe(0);
    const result = JSON.parse(rerun.stdout.trim().split("\n").at(-1)!) as {
      modelCalls: number;
      manifest: { teachers: { errors: number }[] };
    };
    const failed = result.manifest.teachers.reduce((sum, t) => sum + t.errors, 0);
    // Every answer is in the cache once: what the killed runs finished plus what the rerun asked (failures aside).
    expect(answered + result.modelCalls - failed).toBe(rows());
    const runs = join(folder, "workspace", "runs", "distill");
    for (const file of ["dataset.jsonl", "preferences.jsonl", "manifest.json", "logprobs/index.jsonl"])
      expect(readFileSync(join(runs, "killed", file), "utf8")).toBe(readFileSync(join(runs, "clean", file), "utf8"));
    for (const teacher of NAMES) {
      const shard = (run: string) => readFileSync(join(runs, run, "logprobs", `${teacher}.bin`));
      expect(shard("killed").equals(shard("clean")), `${teacher}'s log-prob shard`).toBe(true);
    }
  }, 180_000);

  it("SIGINT lets the calls in flight finish, keeps every answer, and says how to go on", async () => {
    const config = join(folder, "avocado.yaml");
    const cacheFile = join(folder, "interrupted.db");
    const args = [
      "bin/avocado.js",
      "--json",
      "-c",
      config,
      "distill",
      "run",
      "--run",
      "stopped",
      "--cache",
      `sqlite:${cacheFile}`,
    ];
    const rows = () => cachedAnswers(cacheFile);
    const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (part: Buffer) => (stderr += part.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    // Past the probes (about 525 answers), into the fan-out.
    for (const stop = Date.now() + 90_000; rows() < 560;) {
      if (Date.now() > stop) throw new Error("the run never reached the fan-out");
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    child.kill("SIGINT");
    expect(await exited).toBe(2);
    expect(stderr).toMatch(/interrupted: \d+ answers are in the response cache; run again to finish/);
    const kept = rows();
    const rerun = spawnSync(process.execPath, args, { cwd: PROJECT_ROOT, encoding: "utf8" });
    expect(rerun.status, rerun.stderr).toBe(0);
    const { modelCalls, manifest } = JSON.parse(rerun.stdout.trim().split("\n").at(-1)!) as {
      modelCalls: number;
      manifest: { teachers: { errors: number }[] };
    };
    const failed = manifest.teachers.reduce((sum, t) => sum + t.errors, 0);
    expect(kept + modelCalls - failed).toBe(rows());
  }, 180_000);

  it("refuses a teacher whose licence forbids a commercial student, before any call", () => {
    const config = join(folder, "refused.yaml");
    writeFileSync(
      config,
      [
        `workspace: ${join(folder, "workspace")}`,
        "teachers:",
        `  - { name: research-qwen, family: qwen, transport: embedded, path: ${teacherGguf("tiny-qwen")}, licence: qwen-research }`,
        `distill: { teachers: [{ name: research-qwen }] }`,
      ].join("\n"),
    );
    const result = spawnSync(process.execPath, ["bin/avocado.js", "-c", config, "distill", "run"], {
      cwd: PROJECT_ROOT,
      encoding: "utf8",
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(
      /refused for a commercial student: research-qwen \(the qwen-research licence forbids/,
    );
  });
});
