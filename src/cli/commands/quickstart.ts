import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { writeFileAtomic } from "../../core/atomic-write.ts";
import { InputError } from "../../core/errors.ts";
import { sha256 } from "../../core/hash.ts";
import { parseWorldSize } from "../../tinyworld/world.ts";
import { commandContext, type CommandContext, type GlobalOptions } from "../context.ts";
import { ensureTorch } from "../ensure-torch.ts";
import { PLANS, quickstartConfig, RUN, STUDENT } from "../quickstart/plan.ts";
import { avocado, forwardSignals, StageRunner, stopChildren } from "../quickstart/stages.ts";

interface QuickstartOptions {
  size?: string;
  port: string;
  exit?: boolean;
}

const TEACHERS = ["tiny-qwen", "tiny-gemma", "tiny-gptoss"];
const BUILD = "teachers: build the tiny world";
const PROBE = "probe: capabilities, refusal, deflection";
const DISTILL = "distill";
const TRAIN = "train the student";
const EVALUATE = "evaluate against the teachers, release gate";

/**
 * The whole pipeline on the tiny world: teachers → probes → distill → student → evaluation and release gate →
 * export → the paid API with a demo organisation → one request through the official `openai` client.
 */
async function quickstart(context: CommandContext, options: QuickstartOptions) {
  const size = parseWorldSize(options.size ?? context.config.tinyworld.size);
  const port = Number(options.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new InputError(`--port must be a port number, 0 for any free one (found ${options.port})`);
  ensureTorch(context.python);
  const plan = PLANS[size];
  const folder = join(context.workspace, "runs", "quickstart");
  mkdirSync(folder, { recursive: true });
  const configText = quickstartConfig(
    plan,
    context.workspace,
    context.config.tinyworld.seed,
    context.config.train.threads,
  );
  const config = join(folder, `avocado.${size}.yaml`);
  await writeFileAtomic(config, configText);
  const json = context.json;
  forwardSignals();
  const run = (args: string[], extra: { log?: string } = {}) => avocado(args, { config, json, ...extra });
  const stages = new StageRunner(join(folder, `state.${size}.json`), sha256(configText), (line, fields) =>
    context.progress.log(line, { quickstart: true, ...fields }),
  );
  const model = join(context.workspace, "models", STUDENT);
  const gguf = join(model, "model.gguf");
  const distilled = join(context.workspace, "runs", "distill", RUN, "manifest.json");

  await stages.run(BUILD, async () => {
    await run(["tinyworld", "build"]);
    return `${TEACHERS.join(", ")} in ${join(context.workspace, "teachers")}`;
  });
  // The teachers' answers to the eval suite do not depend on the student: they are asked now, in a process of their
  // own on the other core, into the eval cache the evaluation stage reads (its log: teacher-evals.log).
  const evaluated = join(model, "evals", "tinyworld", "summary.json");
  const teacherEvals = join(folder, "teacher-evals");
  const upToDate =
    [PROBE, DISTILL, TRAIN].every((stage) => stages.isDone(stage)) &&
    stages.isDone(EVALUATE, () => existsSync(evaluated));
  // An eval folder holds one suite's items: one left by an earlier release's world would be refused. Started afresh,
  // the run asks nothing twice (the response cache has every answer).
  const fresh = (out: string) => rmSync(out, { recursive: true, force: true });
  if (!upToDate) fresh(teacherEvals);
  const warm = upToDate
    ? Promise.resolve()
    : run(["eval", "run", "--suite", "tinyworld", "--models", TEACHERS.join(","), "--out", teacherEvals], {
        log: join(folder, "teacher-evals.log"),
      });
  warm.catch(() => undefined);
  await stages.run(
    PROBE,
    async () => {
      for (const teacher of TEACHERS) await run(["teachers", "probe", teacher, "--requests", "2"]);
      fresh(join(folder, "probes"));
      await run([
        "eval",
        "run",
        "--suite",
        "tinyworld-probes",
        "--models",
        TEACHERS.join(","),
        "--out",
        join(folder, "probes"),
      ]);
      return `report: ${join(folder, "probes", "report.html")}`;
    },
    { done: () => existsSync(join(folder, "probes", "summary.json")) },
  );
  await stages.run(
    DISTILL,
    async () => {
      await run(["distill", "run", "--run", RUN]);
      return `dataset and log-probs in ${join(context.workspace, "runs", "distill", RUN)}`;
    },
    { done: () => existsSync(distilled) },
  );
  await stages.run(
    TRAIN,
    async () => {
      await run(["train", "--from", RUN, "--run", RUN, "--no-evaluate"]);
      return `${STUDENT}: SFT + KD from ${TEACHERS.length} teachers`;
    },
    { done: () => existsSync(gguf) },
  );
  // Training again is a no-op (the run is finished and resumes at its last step); then every suite and the gate.
  await stages.run(
    EVALUATE,
    async () => {
      await warm;
      await run(["train", "--from", RUN, "--run", RUN]);
      return `${await gateSummary(gguf)}; the teachers alone: ${join(teacherEvals, "report.html")}`;
    },
    { done: () => existsSync(evaluated) },
  );
  const { verifyExport } = await import("../quickstart/export-check.ts");
  await stages.run("export: HF layout, GGUF, card, licences", async () => verifyExport(model), {
    done: () => existsSync(gguf),
  });

  const { serveDemo, demoRequest, showcase, DEMO_ORG } = await import("../quickstart/demo.ts");
  let demo: Awaited<ReturnType<typeof serveDemo>> | undefined;
  await stages.run(
    "serve: the paid API, a demo org, key and credit",
    async () => {
      demo = await serveDemo({ config: context.config, workspace: context.workspace, gguf, model: STUDENT, port });
      return `${demo.url}/v1 (${STUDENT}${demo.ungated ? ", UNGATED: for this demo only" : ""})`;
    },
    { always: true },
  );
  const served = demo!;
  try {
    const example = showcase(context.workspace, model, STUDENT);
    let result: Awaited<ReturnType<typeof demoRequest>> | undefined;
    await stages.run(
      "request through the official openai client",
      async () => {
        if (!json) process.stdout.write(`  > ${example.question}\n  < `);
        result = await demoRequest(served, STUDENT, example.question, (text) => {
          if (!json) process.stdout.write(text);
        });
        if (!json) process.stdout.write("\n");
        const right = result.answer.includes(example.reference);
        return `${result.usage?.prompt_tokens ?? "?"}+${result.usage?.completion_tokens ?? "?"} tokens; ${right ? "right" : `expected ${example.reference}`}`;
      },
      { always: true },
    );
    context.print(
      [
        "",
        "Stage times:",
        stages.table(),
        "",
        `API:        ${served.url}/v1   (model ${STUDENT}; any OpenAI client)`,
        `key:        ${served.key}   (org '${DEMO_ORG}', shown once; a rerun revokes it and makes another)`,
        `credit:     ${result!.balance} micro-units left`,
        `dashboard:  ${served.url}/dashboard   (admin token: ${served.adminLogin})`,
        `playground: ${served.url}/playground`,
        `reports:    ${join(model, "MODEL_CARD.md")}, ${join(model, "evals")}/*/report.html, ${join(folder, "probes", "report.html")}`,
        `config:     ${config}`,
      ].join("\n"),
      {
        quickstart: true,
        url: served.url,
        key: served.key,
        credit: result!.balance,
        dashboard: `${served.url}/dashboard`,
        admin: served.adminLogin,
        playground: `${served.url}/playground`,
        answer: result!.answer,
        question: example.question,
        reference: example.reference,
        stages: stages.times,
      },
    );
    if (options.exit) return;
    context.progress.log("serving until Ctrl-C");
    await new Promise<void>((resolve) => {
      process.once("SIGINT", () => resolve());
      process.once("SIGTERM", () => resolve());
    });
  } finally {
    await served.api.close();
  }
}

/** The gate's verdict as the student's card records it. */
async function gateSummary(gguf: string): Promise<string> {
  const { releaseVerdict } = await import("../../export/model-card.ts");
  const verdict = releaseVerdict(gguf);
  return verdict.verdict === "pass"
    ? "release gate PASS"
    : `release gate ${verdict.verdict.toUpperCase()}: ${"reason" in verdict ? verdict.reason : ""}`;
}

export function registerQuickstart(program: Command): void {
  program
    .command("quickstart")
    .description(
      "the whole pipeline on the tiny world: teachers, probes, distill, student, gate, export, the paid API, a request",
    )
    .option("--size <size>", "default | test (default: tinyworld.size)")
    .option("--port <port>", "the API's port (0: any free one)", "8080")
    .option("--exit", "stop serving once the demo request is answered (CI)")
    .action(async (options: QuickstartOptions, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      try {
        await quickstart(context, options);
      } finally {
        stopChildren();
      }
    });
}
