import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PYTHON, scratchFolder, TEST_WORKSPACE } from "../../test/fixtures.ts";
import { sha256File } from "../core/hash.ts";
import { PROJECT_ROOT } from "../core/paths.ts";
import { SilentProgress } from "../core/progress.ts";
import { readShardIndex } from "../train/shards.ts";
import { runTrainer, type TrainJob } from "../train/launcher.ts";

const folder = scratchFolder("student");
const workspace = join(folder, "ws");

/** The CLI in the scratch workspace (the test world's teachers linked in); its JSON result, or its error. */
function cli(args: string[], config = "avocado.yaml") {
  const run = spawnSync(
    process.execPath,
    [join(PROJECT_ROOT, "bin", "avocado.js"), "--json", "-c", join(folder, config), ...args],
    { encoding: "utf8", cwd: folder, env: { ...process.env, AVOCADO_PYTHON: PYTHON }, timeout: 400_000 },
  );
  const lines = run.stdout.split("\n").filter((l) => l.startsWith("{"));
  const result = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.event === "result");
  return { status: run.status, result, stderr: run.stderr, stdout: run.stdout };
}

const STUDENT = `
student:
  architecture: { layers: 2, hidden: 64, heads: 4, kvHeads: 2, headDim: 16, ffn: 128, context: 256, ropeTheta: 10000 }
  optimization: { steps: 30, batchSize: 16, learningRate: 0.003, warmupSteps: 3, checkpointEvery: 5 }
  suites: [tinyworld]
`;

function writeConfig(name: string, student: string): void {
  writeFileSync(
    join(folder, name),
    `workspace: ws
tinyworld: { size: test, seed: 20261126 }
distill:
  sources: [{ builtIn: tinyworld, limit: 90 }]
  teachers:
    - { name: tiny-qwen, temperature: 0 }
    - { name: tiny-gemma, temperature: 0 }
    - { name: tiny-gptoss, temperature: 0 }
  logprobs: { topK: 8 }
${student}`,
  );
}

describe("the student: avocado train --from a distill run (real teachers, PyTorch)", () => {
  beforeAll(() => {
    mkdirSync(workspace, { recursive: true });
    for (const part of ["teachers", "tinyworld"]) symlinkSync(join(TEST_WORKSPACE, part), join(workspace, part));
    writeConfig("avocado.yaml", STUDENT);
    const distill = cli(["distill", "run", "--run", "d1"]);
    expect(distill.status, distill.stderr).toBe(0);
  }, 300_000);
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  const run = join(workspace, "runs", "distill", "d1");
  const model = join(workspace, "models", "avocado-student");

  it("trains with SFT + KD from all three teachers, evaluates, gates, and writes the model folder", () => {
    const trained = cli(["train", "--from", "d1"]);
    expect(trained.status, trained.stderr).toBe(0);
    for (const file of [
      "model.gguf",
      "model.safetensors",
      "config.json",
      "MODEL_CARD.md",
      "licenses.json",
      "avocado-card.json",
      "loss-total.svg",
      "loss-sft.svg",
      "loss-kd.svg",
      "loss-crossKd.svg",
    ])
      expect(existsSync(join(model, file)), file).toBe(true);
    const terms = trained.result!.terms as Record<string, [number, number][]>;
    expect(terms.kd!.length).toBe(30);
    expect(terms.crossKd!.at(-1)![1]).toBeLessThan(terms.crossKd![0]![1]);
    // Lineage: every teacher that contributed a record passes its licence on; Gemma's notice comes along.
    const licences = JSON.parse(readFileSync(join(model, "licenses.json"), "utf8"));
    const manifest = JSON.parse(readFileSync(join(run, "manifest.json"), "utf8"));
    const contributed = manifest.teachers.filter((t: { contributed: number }) => t.contributed > 0);
    expect(licences.teachers.map((t: { teacher: string }) => t.teacher).sort()).toEqual(
      contributed.map((t: { name: string }) => t.name).sort(),
    );
    if (contributed.some((t: { name: string }) => t.name === "tiny-gemma"))
      expect(existsSync(join(model, "NOTICE-gemma.txt"))).toBe(true);
    // The test world's 112 items cannot show a 5-point margin: the gate says underpowered, and the card says so.
    const card = readFileSync(join(model, "MODEL_CARD.md"), "utf8");
    expect(card).toMatch(/## Release gate\n\n\*\*FAIL\*\*/);
    expect(card).toMatch(/underpowered/);
    expect(card).toMatch(/\| tiny-qwen \|/);
    const gate = JSON.parse(readFileSync(join(model, "avocado-card.json"), "utf8")).gate;
    expect(gate.pass).toBe(false);
    expect(gate.underpowered).toBe(true);
  }, 400_000);

  const shards = () => join(workspace, "runs", "train", "avocado-student", "shards");
  const job = async (out: string, overrides: Partial<TrainJob> = {}): Promise<TrainJob> => {
    const index = await readShardIndex(shards());
    return {
      shards: shards(),
      out,
      architecture: {
        layers: 1,
        hidden: 32,
        heads: 2,
        kvHeads: 1,
        headDim: 16,
        ffn: 64,
        context: Math.max(128, index.maxLength),
        ropeTheta: 10_000,
        rmsNormEps: 1e-6,
        tieEmbeddings: true,
      },
      optimization: {
        steps: 10,
        batchSize: 8,
        gradientAccumulation: 1,
        learningRate: 3e-3,
        minLearningRate: 3e-4,
        warmupSteps: 2,
        weightDecay: 0.01,
        gradientClip: 1,
        checkpointEvery: 1,
      },
      seed: 3,
      threads: 1,
      loss: { sft: 1, kd: 1, crossKd: 1, divergence: "jsd", beta: 0.5, temperature: 1.5, tail: "bucket" },
      ...overrides,
    } as TrainJob;
  };
  const options = { python: PYTHON, label: "kd", progress: new SilentProgress() };

  it("resumes KD training after kill -9 to bit-identical weights", async () => {
    const reference = await runTrainer(await job(join(folder, "kd-reference")), options);
    const resumed = join(folder, "kd-resumed");
    const controller = new AbortController();
    await expect(
      runTrainer(await job(resumed), {
        ...options,
        signal: controller.signal,
        onEvent: (event) => void (event.event === "checkpoint" && event.step === 4 && controller.abort()),
      }),
    ).rejects.toThrow(/trainer failed/);
    const result = await runTrainer(await job(resumed), options);
    expect(result.events.find((e) => e.event === "resume")?.step).toBeGreaterThanOrEqual(4);
    expect(result.history).toEqual(reference.history);
    expect(await sha256File(join(resumed, "model.safetensors"))).toBe(
      await sha256File(join(folder, "kd-reference", "model.safetensors")),
    );
  }, 120_000);

  it("gives the same KD loss curve with 2 data-parallel processes as with 1 (|Δ| ≤ 1e-4)", async () => {
    const one = await runTrainer(await job(join(folder, "kd-one")), options);
    const two = await runTrainer(await job(join(folder, "kd-two")), { ...options, processes: 2 });
    one.history.forEach(([, loss], i) => expect(Math.abs(loss - two.history[i]![1])).toBeLessThanOrEqual(1e-4));
  }, 120_000);

  it("says why FSDP cannot run where torch cannot import it, or runs it", async () => {
    const out = join(folder, "fsdp");
    const trained = runTrainer(await job(out, { parallel: "fsdp" } as Partial<TrainJob>), {
      ...options,
      processes: 2,
    });
    const importable = spawnSync(PYTHON, ["-c", "import torch.distributed.fsdp"], { encoding: "utf8" }).status === 0;
    if (importable) expect((await trained).history).toHaveLength(10);
    else await expect(trained).rejects.toThrow(/parallel 'fsdp' needs a torch whose FSDP imports here .*use 'ddp'/);
  }, 120_000);

  it("runs an on-policy round: the student samples, its teachers score, it learns from their top-k", () => {
    writeConfig("on-policy.yaml", `${STUDENT}  onPolicy: { rounds: 1, prompts: 24, steps: 6, maxTokens: 48 }\n`);
    const trained = cli(
      ["train", "--from", "d1", "--run", "gkd", "--no-evaluate", "--out", join(folder, "gkd")],
      "on-policy.yaml",
    );
    expect(trained.status, trained.stderr).toBe(0);
    const samples = readFileSync(join(workspace, "runs", "train", "gkd", "on-policy-1", "samples.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(samples.length).toBeGreaterThan(0);
    for (const sample of samples) {
      expect(sample.sft).toBe(false);
      expect(sample.teacherTokens.tokens.length).toBeGreaterThan(0);
    }
    // Steps continue across phases: 30 off-policy, then 6 on-policy.
    const total = (trained.result!.terms as Record<string, [number, number][]>).total!;
    expect(total.at(-1)![0]).toBe(36);
    expect(readFileSync(join(folder, "gkd", "MODEL_CARD.md"), "utf8")).toMatch(/on-policy 1 \(6 steps/);
  }, 300_000);

  describe("bad input, each with a clear error", () => {
    const copy = (name: string) => {
      const to = join(workspace, "runs", "distill", name);
      cpSync(run, to, { recursive: true });
      return to;
    };

    it("log-probs from another tokenizer than the declared one", () => {
      // The run says tiny-gemma is a Qwen-family teacher: its Gemma ids then spell other text.
      const to = copy("relabelled");
      const manifest = JSON.parse(readFileSync(join(to, "manifest.json"), "utf8"));
      for (const t of manifest.teachers) if (t.name === "tiny-gemma") t.family = "qwen";
      writeFileSync(join(to, "manifest.json"), JSON.stringify(manifest));
      const index = readFileSync(join(to, "logprobs", "index.jsonl"), "utf8").replaceAll(
        '"family":"gemma"',
        '"family":"qwen"',
      );
      writeFileSync(join(to, "logprobs", "index.jsonl"), index);
      const trained = cli(["train", "--from", "relabelled", "--run", "relabelled", "--no-evaluate"]);
      expect(trained.status).toBe(2);
      expect(trained.stderr).toMatch(/tiny-gemma's log-probs are not in the qwen tokenizer it is declared with/);
    }, 120_000);

    it("a dataset that does not match its run", () => {
      const to = copy("edited");
      const lines = readFileSync(join(to, "dataset.jsonl"), "utf8").trimEnd().split("\n");
      writeFileSync(join(to, "dataset.jsonl"), `${lines.slice(1).join("\n")}\n`);
      const trained = cli(["train", "--from", "edited", "--run", "edited", "--no-evaluate"]);
      expect(trained.status).toBe(2);
      expect(trained.stderr).toMatch(/holds \d+ records, its manifest says \d+: the dataset does not match the run/);
    }, 120_000);

    it("a teacher weight for a teacher the run does not have", () => {
      writeConfig("typo.yaml", `${STUDENT}  teachers: { tiny-qwenn: 2 }\n`);
      const trained = cli(["train", "--from", "d1", "--run", "typo", "--no-evaluate"], "typo.yaml");
      expect(trained.status).toBe(2);
      expect(trained.stderr).toMatch(/student.teachers names tiny-qwenn, not a teacher of the run .*tiny-qwen/);
    }, 120_000);

    it("a student too small for the data's context", () => {
      writeConfig("small.yaml", STUDENT.replace("context: 256", "context: 24"));
      const trained = cli(["train", "--from", "d1", "--run", "small", "--no-evaluate"], "small.yaml");
      expect(trained.status).toBe(2);
      expect(trained.stderr).toMatch(
        /too small for the data's context: the longest record is \d+ tokens, student.architecture.context is 24/,
      );
    }, 120_000);
  });
});
