import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { scratchFolder, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { POSTGRES_URL } from "../../test/stores.ts";
import { PROJECT_ROOT } from "../core/paths.ts";
import { openQueue, queueName } from "./queue.ts";

describe("distillation workers on a PostgreSQL job queue (pg-boss)", () => {
  const folder = scratchFolder("distill-queue");
  const schema = `distill_queue_${process.pid}`;
  const run = `queued-${process.pid}`;
  const cacheUrl = `${POSTGRES_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  const children: ChildProcess[] = [];
  const sql = async (text: string) => {
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      return await client.query(text);
    } finally {
      await client.end();
    }
  };
  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL");
    await sql(`drop schema if exists ${schema} cascade`);
    const boss = await openQueue(POSTGRES_URL);
    await boss.deleteQueue(queueName(run)).catch(() => undefined);
    await boss.stop({ graceful: false });
    rmSync(folder, { recursive: true, force: true });
  });

  it("3 workers, one killed mid-run: every answer cached once, the dataset a single process writes", async () => {
    mkdirSync(join(folder, "workspace"), { recursive: true });
    for (const part of ["teachers", "tinyworld"])
      symlinkSync(join(TEST_WORKSPACE, part), join(folder, "workspace", part));
    const config = join(folder, "avocado.yaml");
    const settings = {
      sources: [{ builtIn: "tinyworld", limit: 60 }],
      teachers: ["tiny-qwen", "tiny-gemma", "tiny-gptoss"].map((name) => ({ name, temperature: 0 })),
      curation: { decontaminate: { suites: ["tinyworld"] }, probes: [] },
    };
    writeFileSync(config, `workspace: ${join(folder, "workspace")}\ndistill: ${JSON.stringify(settings)}\n`);
    await sql(`create schema ${schema}`);
    const avocado = (args: string[]) =>
      spawn(process.execPath, ["bin/avocado.js", "--json", "-c", config, "distill", ...args], {
        cwd: PROJECT_ROOT,
        stdio: ["ignore", "pipe", "pipe"],
      });
    const finished = (child: ChildProcess) =>
      new Promise<{ code: number | null; stdout: string }>((resolve) => {
        let stdout = "";
        child.stdout!.on("data", (part: Buffer) => (stdout += part.toString()));
        child.once("exit", (code) => resolve({ code, stdout }));
      });

    // One process, its own SQLite cache: the bytes to match.
    const single = spawnSync(
      process.execPath,
      [
        "bin/avocado.js",
        "-c",
        config,
        "distill",
        "run",
        "--run",
        "single",
        "--cache",
        `sqlite:${join(folder, "single.db")}`,
      ],
      { cwd: PROJECT_ROOT, encoding: "utf8" },
    );
    expect(single.status, single.stderr).toBe(0);

    const queue = ["--queue", POSTGRES_URL, "--cache", cacheUrl, "--run", run];
    const coordinator = avocado(["run", ...queue, "--heartbeat", "10"]);
    children.push(coordinator);
    const coordinated = finished(coordinator);
    const workers = [0, 1, 2].map(() => avocado(["worker", ...queue, "--until-empty"]));
    children.push(...workers);
    const worked = workers.map(finished);
    // Kill one worker once answers are flowing; its job goes back to the queue when its heartbeat stops.
    const rows = async () =>
      Number(
        (await sql(`select count(*) as n from ${schema}.responses`).catch(() => ({ rows: [{ n: 0 }] }))).rows[0].n,
      );
    for (const stop = Date.now() + 90_000; (await rows()) < 30;) {
      if (Date.now() > stop) throw new Error("no answers reached the shared cache");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    workers[0]!.kill("SIGKILL");
    const result = await coordinated;
    expect(result.code).toBe(0);
    const survivors = await Promise.all(worked.slice(1));
    for (const survivor of survivors) expect(survivor.code).toBe(0);

    // Every answer is in the cache once (its key is the primary key). The coordinator asked again only the calls that
    // failed, and scored the kept answers' log-probs itself: the workers only answer.
    const { modelCalls, manifest } = JSON.parse(result.stdout.trim().split("\n").at(-1)!) as {
      modelCalls: number;
      manifest: { teachers: { errors: number; calls: number }[]; logprobs: { records: number } };
    };
    const failed = manifest.teachers.reduce((sum, t) => sum + t.errors, 0);
    expect(modelCalls).toBe(failed + manifest.logprobs.records);
    const answered = manifest.teachers.reduce((sum, t) => sum + t.calls, 0);
    expect(await rows()).toBe(answered + manifest.logprobs.records);
    const runs = join(folder, "workspace", "runs", "distill");
    for (const file of ["dataset.jsonl", "preferences.jsonl", "logprobs/index.jsonl"]) {
      expect(readFileSync(join(runs, run, file), "utf8"), file).toBe(readFileSync(join(runs, "single", file), "utf8"));
    }
    const prompts = readFileSync(join(runs, run, "dataset.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => (JSON.parse(line) as { metadata: { prompt: string } }).metadata.prompt);
    expect(new Set(prompts).size).toBe(prompts.length);
  }, 240_000);
});
