import { spawn } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../src/core/paths.ts";
import { Store } from "../src/serve/store/store.ts";
import { PYTHON, scratchFolder, TEST_SEED, TEST_WORKSPACE } from "./fixtures.ts";

const folder = scratchFolder("quickstart");
const workspace = join(folder, "ws");

interface Run {
  status: number | null;
  events: Record<string, unknown>[];
  stderr: string;
  stdout: string;
}

/** `avocado quickstart --size test` as a user runs it (JSON events), optionally interrupted after `stopAt`. */
function quickstart(
  stopAt?: (event: Record<string, unknown>) => boolean,
  port = 0,
  env: Record<string, string> = {},
): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        join(PROJECT_ROOT, "bin", "avocado.js"),
        "--json",
        "quickstart",
        "--size",
        "test",
        "--port",
        String(port),
        "--exit",
      ],
      { cwd: folder, env: { ...process.env, AVOCADO_PYTHON: PYTHON, ...env } },
    );
    const events: Record<string, unknown>[] = [];
    let stdout = "";
    let all = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      all += chunk.toString();
      let end;
      while ((end = stdout.indexOf("\n")) >= 0) {
        const line = stdout.slice(0, end);
        stdout = stdout.slice(end + 1);
        if (!line.startsWith("{")) continue;
        const event = JSON.parse(line) as Record<string, unknown>;
        events.push(event);
        if (stopAt?.(event)) child.kill("SIGINT");
      }
    });
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("close", (status) => resolve({ status, events, stderr, stdout: all }));
  });
}

let firstKey = "";
const stageEvents = (run: Run) => run.events.filter((e) => e.quickstart === true && (e.summary || e.cached));

describe("npm run quickstart on the test world: the whole pipeline, resumable, cached", () => {
  beforeAll(() => {
    mkdirSync(workspace, { recursive: true });
    // The test world's teachers (built once per test run): the quickstart's first stage finds them cached.
    for (const part of ["teachers", "tinyworld"]) symlinkSync(join(TEST_WORKSPACE, part), join(workspace, part));
    writeFileSync(join(folder, "avocado.yaml"), `workspace: ws\ntinyworld: { size: test, seed: ${TEST_SEED} }\n`);
  });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it("interrupted in the distill stage, a rerun goes on from there and ends with an answer through the API", async () => {
    const interrupted = await quickstart((e) => e.quickstart === true && e.stage === "distill" && e.started === true);
    expect(interrupted.status).not.toBe(0);
    const done = stageEvents(interrupted).map((e) => e.stage);
    expect(done).toEqual(["teachers: build the tiny world", "probe: capabilities, refusal, deflection"]);

    const resumed = await quickstart();
    expect(resumed.status, resumed.stderr.slice(-3000)).toBe(0);
    const stages = stageEvents(resumed);
    expect(stages.map((e) => [e.stage, e.cached === true])).toEqual([
      ["teachers: build the tiny world", true],
      ["probe: capabilities, refusal, deflection", true],
      ["distill", false],
      ["train the student", false],
      ["evaluate against the teachers, release gate", false],
      ["export: HF layout, GGUF, card, licences", false],
      ["serve: the paid API, a demo org, key and credit", false],
      ["request through the official openai client", false],
    ]);
    const result = resumed.events.findLast((e) => e.event === "result" && e.quickstart === true)!;
    expect(result.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(String(result.answer).length).toBeGreaterThan(0);
    // The demo's credit, less what the request cost.
    expect(Number(result.credit)).toBeLessThan(1_000_000);
    expect(Number(result.credit)).toBeGreaterThan(990_000);
    const card = JSON.parse(readFileSync(join(workspace, "models", "quickstart-student", "avocado-card.json"), "utf8"));
    expect(card.gate).not.toBeNull();
    firstKey = String(result.key);
  }, 900_000);

  it("a second run reuses every stage and serves again with a new key (the old one revoked)", async () => {
    const first = readFileSync(join(workspace, "runs", "quickstart", "state.test.json"), "utf8");
    // An operator's own admin token is used, and never printed.
    const again = await quickstart(undefined, 0, { AVOCADO_ADMIN_TOKEN: "operator-secret-4711" });
    expect(again.status, again.stderr.slice(-3000)).toBe(0);
    expect(stageEvents(again).filter((e) => e.cached === true)).toHaveLength(6);
    expect(readFileSync(join(workspace, "runs", "quickstart", "state.test.json"), "utf8")).toBe(first);
    const result = again.events.findLast((e) => e.event === "result" && e.quickstart === true)!;
    expect(String(result.answer).length).toBeGreaterThan(0);
    expect(result.key).not.toBe(firstKey);
    expect(again.stdout + again.stderr).not.toContain("operator-secret-4711");
    expect(again.stdout).toContain("the value of $AVOCADO_ADMIN_TOKEN");
    const store = await Store.open(`sqlite:${join(workspace, "quickstart.db")}`);
    try {
      expect((await store.keyBySecret(firstKey))?.revoked_at).not.toBeNull();
      expect((await store.keyBySecret(String(result.key)))?.revoked_at).toBeNull();
    } finally {
      await store.close();
    }
  }, 300_000);

  it("a port already in use: a clear message that says how to choose another, and exit code 2", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    try {
      const port = (taken.address() as AddressInfo).port;
      const run = await quickstart(undefined, port);
      expect(run.status).toBe(2);
      expect(run.stderr).toContain(`cannot listen on 127.0.0.1:${port}: the address is in use`);
      expect(run.stderr).toMatch(/--port/);
    } finally {
      taken.close();
    }
  }, 300_000);
});
