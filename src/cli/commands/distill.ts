import type { Command } from "commander";
import { dirname, join, resolve } from "node:path";
import { distillSchema, type DistillConfig } from "../../core/config/distill-schema.ts";
import { InputError } from "../../core/errors.ts";
import { newId } from "../../core/ids.ts";
import { JsonLogger } from "../../core/logger.ts";
import type { Teacher } from "../../teachers/teacher.ts";
import { commandContext, type CommandContext, type GlobalOptions } from "../context.ts";

/** The config's `distill:` section, or (absent) the built tiny teachers on the tiny world's prompts. */
async function distillConfig(context: CommandContext): Promise<DistillConfig> {
  if (context.config.distill) return context.config.distill;
  const { teacherEntries } = await import("../../teachers/registry.ts");
  const tiny = (await teacherEntries(context.config, context.workspace)).filter((e) => e.source === "tinyworld");
  if (tiny.length === 0)
    throw new InputError(
      "no distill section in the config and no tiny world built: run 'avocado init' or 'avocado tinyworld build'",
    );
  return distillSchema.parse({
    sources: [{ builtIn: "tinyworld", limit: 300 }],
    teachers: tiny.map((entry) => ({ name: entry.config.name, samples: 2 })),
  });
}

/** Opens each distill teacher (refusing a licence that forbids a commercial student), its calls through the cache. */
async function openTeachers(context: CommandContext, config: DistillConfig, cacheUrl: string | undefined) {
  const { findTeacher, openTeacher } = await import("../../teachers/registry.ts");
  const { ResponseCache, cachedTeacher, modelIdentity } = await import("../../evals/cache.ts");
  const entries = await Promise.all(config.teachers.map((t) => findTeacher(context.config, context.workspace, t.name)));
  const refused = entries.filter((entry) => entry.refused);
  if (config.commercial && refused.length > 0)
    throw new InputError(
      `refused for a commercial student: ${refused.map((e) => `${e.config.name} (${e.refused})`).join("; ")}`,
    );
  const cache = await ResponseCache.open(cacheUrl ?? `sqlite:${join(context.workspace, "distill", "cache.db")}`);
  const opened: Teacher[] = [];
  const close = async () => {
    for (const teacher of opened) await teacher.close();
    await cache.close();
  };
  try {
    const logger = new JsonLogger(undefined, "warn");
    const teachers = [];
    for (const [index, entry] of entries.entries()) {
      const teacher = await openTeacher(entry.config, { logger });
      opened.push(teacher);
      const identity = await modelIdentity(entry.config);
      teachers.push({
        config: config.teachers[index]!,
        teacher: cachedTeacher(teacher, identity, cache),
        family: entry.config.family,
        licence: entry.licence,
        identity,
      });
    }
    let judge;
    if (config.selection.judge) {
      // A judge's words are not trained on: its licence passes nothing on, so it is not checked.
      const entry = await findTeacher(context.config, context.workspace, config.selection.judge.teacher);
      const teacher = await openTeacher(entry.config, { logger });
      opened.push(teacher);
      const { Judge } = await import("../../evals/judge.ts");
      judge = new Judge(cachedTeacher(teacher, await modelIdentity(entry.config), cache));
    }
    return { teachers, cache, close, judge };
  } catch (error) {
    await close();
    throw error;
  }
}

interface RunOptions {
  run?: string;
  cache?: string;
  queue?: string;
  heartbeat: string;
}

function checkQueueOptions(options: RunOptions): void {
  if (options.run !== undefined && !/^[a-zA-Z0-9][a-zA-Z0-9._-]*$/.test(options.run))
    throw new InputError(`--run must be letters, digits, '.', '_' or '-' (found '${options.run}')`);
  if (options.queue && (!options.run || !options.cache?.startsWith("postgres")))
    throw new InputError("--queue needs --run NAME (the workers' run) and a --cache postgres://… the workers share");
}

function heartbeatOf(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 10)
    throw new InputError(`--heartbeat must be 10 seconds or more (found '${text}')`);
  return value;
}

export function registerDistill(program: Command): void {
  const distill = program.command("distill").description("turn a prompt set into a training set with several teachers");
  distill
    .command("run")
    .description("prompts → every teacher's answers → selection → curation → dataset (resumable: nothing asked twice)")
    .option("--run <name>", "the run's name: runs/distill/<name>/ (default: a new id; the same name resumes)")
    .option(
      "--cache <url>",
      "the response cache: sqlite:<path> or postgres://… (default: <workspace>/distill/cache.db)",
    )
    .option("--queue <url>", "PostgreSQL: put the calls on a job queue for 'avocado distill worker' processes")
    .option("--heartbeat <seconds>", "with --queue: a worker silent this long has its job given to another", "30")
    .action(async (options: RunOptions, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const config = await distillConfig(context);
      checkQueueOptions(options);
      const out = join(context.workspace, "runs", "distill", options.run ?? newId("distill"));
      const { runDistill, preparePrompts } = await import("../../distill/run.ts");
      const { teachers, cache, close, judge } = await openTeachers(context, config, options.cache);
      // SIGINT: no new call starts, those in flight finish, every answer stays in the cache.
      const stop = new AbortController();
      const onSigint = () => {
        context.progress.log("stopping: the calls in flight finish, then the run ends (run it again to go on)");
        stop.abort();
      };
      process.once("SIGINT", onSigint);
      try {
        if (options.queue) {
          // The workers fill the shared cache; the run below then asks it for every answer.
          const { enqueueRun, openQueue, waitForRun } = await import("../../distill/queue.ts");
          const heartbeatSeconds = heartbeatOf(options.heartbeat);
          const boss = await openQueue(options.queue, { heartbeatSeconds });
          try {
            const configFolder = context.configFile ? dirname(resolve(context.configFile)) : process.cwd();
            const { prompts } = await preparePrompts(config, { ...context, configFolder });
            const jobs = await enqueueRun(boss, options.run!, config, prompts, heartbeatSeconds);
            context.progress.log(`${jobs} jobs queued for run '${options.run}': start 'avocado distill worker'`);
            await waitForRun(boss, options.run!, jobs, context.progress);
          } finally {
            await boss.stop({ graceful: false });
          }
        }
        const manifest = await runDistill({
          config,
          teachers,
          workspace: context.workspace,
          configFolder: context.configFile ? dirname(resolve(context.configFile)) : process.cwd(),
          out,
          progress: context.progress,
          signal: stop.signal,
          judge,
        });
        const percent = (c: { correct: number; total: number } | undefined) =>
          c && c.total ? `${((100 * c.correct) / c.total).toFixed(1)}% (${c.correct}/${c.total})` : "–";
        const lines = [
          `${manifest.records} records, ${manifest.preferences} preference pairs in ${out}`,
          `  response cache: ${cache.hits} hits, ${cache.misses} calls to the teachers`,
          ...manifest.teachers.map(
            (t) =>
              `  ${t.name}: ${t.contributed} records kept; accuracy ${percent(t.accuracy.all)}; ${t.errors} errors; cost ${t.costMicros}` +
              (t.budgetReached ? "; BUDGET REACHED: stopped early" : ""),
          ),
          `  selected set accuracy ${percent(manifest.selectedAccuracy.all)}`,
          ...(manifest.logprobs
            ? [
                `  log-probs: ${manifest.logprobs.records} records, ${manifest.logprobs.tokens} tokens, top ${manifest.logprobs.k}: ` +
                  `${manifest.logprobs.bytesPerToken} bytes a token, largest error ${manifest.logprobs.largestError.toFixed(4)}`,
              ]
            : []),
          ...manifest.probes.findings.map(
            (f) => `  ${f.teacher} shows ${f.metric} (${f.suite} ${f.group}): its answers so classed are filtered`,
          ),
          `report: ${join(out, "report.html")}`,
        ];
        context.print(lines.join("\n"), { out, cacheHits: cache.hits, modelCalls: cache.misses, manifest });
      } finally {
        process.off("SIGINT", onSigint);
        await close();
      }
    });

  distill
    .command("worker")
    .description("take the calls of a queued run (distill run --queue) and answer them into the shared cache")
    .requiredOption("--queue <url>", "the PostgreSQL the coordinator queued the run in")
    .requiredOption("--run <name>", "the run to work for")
    .requiredOption("--cache <url>", "the shared response cache (postgres://…)")
    .option("--until-empty", "exit once the run's queue is drained (else: until SIGINT or SIGTERM)")
    .action(async (options: RunOptions & { untilEmpty?: boolean }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const config = await distillConfig(context);
      checkQueueOptions(options);
      const { preparePrompts } = await import("../../distill/run.ts");
      const { openQueue, work } = await import("../../distill/queue.ts");
      const configFolder = context.configFile ? dirname(resolve(context.configFile)) : process.cwd();
      const { prompts } = await preparePrompts(config, { ...context, configFolder });
      const { teachers, cache, close } = await openTeachers(context, config, options.cache);
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      const boss = await openQueue(options.queue!);
      try {
        const done = await work(boss, {
          run: options.run!,
          config,
          prompts,
          teachers,
          progress: context.progress,
          untilEmpty: options.untilEmpty === true,
          signal: stop.signal,
        });
        context.print(
          `${done} jobs done; ${cache.misses} calls to the teachers, ${cache.hits} answers already cached`,
          {
            jobs: done,
            modelCalls: cache.misses,
            cacheHits: cache.hits,
          },
        );
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        await boss.stop({ graceful: true });
        await close();
      }
    });
}
