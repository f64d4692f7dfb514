import { PgBoss } from "pg-boss";
import type { DistillConfig } from "../core/config/distill-schema.ts";
import { InputError } from "../core/errors.ts";
import { sha256, stableStringify } from "../core/hash.ts";
import type { Progress } from "../core/progress.ts";
import { fanOut, routes } from "./generate.ts";
import type { DistillTeacherRun } from "./run.ts";
import type { DistillPrompt } from "./sources.ts";

/**
 * Distillation past one machine, on pg-boss (a job queue in PostgreSQL, where the response cache already is when
 * several machines share it): the coordinator puts one job per block of prompts per teacher; `avocado distill worker`
 * processes anywhere take them. A job's only effect is answers in the shared response cache, so a job done twice (its
 * worker died after some calls; pg-boss gives it to another once its heartbeat stops) costs no finished call, and the
 * coordinator's own run afterwards, answered from the cache, writes the bytes a single process writes.
 */
export interface DistillJob {
  configHash: string;
  teacher: string;
  from: number;
  to: number;
}

/** Prompts per job: small enough that a dead worker's job is cheap to redo, large enough to keep a worker busy. */
const BLOCK = 25;

export const queueName = (run: string) => `avocado-distill.${run}`;

/** What the coordinator and the workers check they share: the distillation config (prompts, teachers, sampling). */
export const configHashOf = (config: DistillConfig) => sha256(stableStringify(config));

export async function openQueue(url: string, options: { heartbeatSeconds?: number } = {}): Promise<PgBoss> {
  if (!/^postgres(ql)?:\/\//.test(url)) throw new InputError(`--queue '${url}': a postgres:// URL is needed`);
  const boss = new PgBoss({
    connectionString: url,
    schema: "avocado_queue",
    // A dead worker's job goes back to the queue once its heartbeat is missed: checked every few seconds.
    superviseIntervalSeconds: Math.max(2, Math.floor((options.heartbeatSeconds ?? 30) / 3)),
    monitorIntervalSeconds: Math.max(2, Math.floor((options.heartbeatSeconds ?? 30) / 3)),
  });
  boss.on("error", () => {
    // Reported by the calls that fail; pg-boss's background loops retry on their own.
  });
  await boss.start();
  return boss;
}

/**
 * The run's jobs by state, read from the jobs themselves: pg-boss's queue counts come from a stats cache refreshed
 * every few seconds, which right after an insert still says the queue is empty.
 */
async function jobStates(boss: PgBoss, run: string): Promise<Record<string, number>> {
  const states: Record<string, number> = {};
  for (const job of await boss.findJobs(queueName(run), { limit: 100_000 }))
    states[job.state] = (states[job.state] ?? 0) + 1;
  return states;
}

const unfinished = (states: Record<string, number>) =>
  (states.created ?? 0) + (states.retry ?? 0) + (states.active ?? 0);

/** Queues every block of routed prompts for every teacher; returns the jobs sent. */
export async function enqueueRun(
  boss: PgBoss,
  run: string,
  config: DistillConfig,
  prompts: readonly DistillPrompt[],
  heartbeatSeconds: number,
): Promise<number> {
  const name = queueName(run);
  await boss.createQueue(name, { heartbeatSeconds, retryLimit: 10, retryDelay: 1 });
  const configHash = configHashOf(config);
  const jobs: { data: DistillJob }[] = [];
  for (const teacher of config.teachers) {
    for (let from = 0; from < prompts.length; from += BLOCK) {
      const to = Math.min(prompts.length, from + BLOCK);
      if (prompts.slice(from, to).some((prompt) => routes(teacher, prompt)))
        jobs.push({ data: { configHash, teacher: teacher.name, from, to } });
    }
  }
  await boss.insert(name, jobs);
  return jobs.length;
}

/** Waits until none of the run's jobs is waiting or in progress; a job that failed for good is an error. */
export async function waitForRun(boss: PgBoss, run: string, jobs: number, progress: Progress): Promise<void> {
  const task = progress.task("queue", jobs, "jobs");
  let states: Record<string, number>;
  for (;;) {
    states = await jobStates(boss, run);
    task.update(Math.max(0, jobs - unfinished(states)));
    if (unfinished(states) === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  task.finish();
  if (states.failed)
    throw new InputError(`${states.failed} jobs of run '${run}' failed for good (see the workers' logs)`);
}

/**
 * Takes the run's jobs until stopped (or, with `untilEmpty`, until the run's queue has had jobs and none is left):
 * each job's prompts go to its teacher through the shared cache, as `avocado distill run` would ask them.
 */
export async function work(
  boss: PgBoss,
  options: {
    run: string;
    config: DistillConfig;
    prompts: readonly DistillPrompt[];
    teachers: readonly DistillTeacherRun[];
    progress: Progress;
    untilEmpty: boolean;
    signal: AbortSignal;
  },
): Promise<number> {
  const name = queueName(options.run);
  const configHash = configHashOf(options.config);
  const byName = new Map(options.teachers.map((t) => [t.config.name, t]));
  let done = 0;
  // The queue may not exist yet: the coordinator creates it. Wait for it.
  while (!(await boss.getQueue(name))) {
    if (options.signal.aborted) return done;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  await boss.work<DistillJob>(name, { batchSize: 1, pollingIntervalSeconds: 0.5 }, async ([job]) => {
    const data = job!.data;
    if (data.configHash !== configHash)
      throw new InputError("this worker's distill config differs from the coordinator's: same avocado.yaml needed");
    const teacher = byName.get(data.teacher);
    if (!teacher) throw new InputError(`this worker has no teacher '${data.teacher}'`);
    const { interrupted } = await fanOut(options.prompts.slice(data.from, data.to), [teacher], {
      concurrency: options.config.concurrency,
      progress: options.progress,
      signal: options.signal,
    });
    // Stopped part-way: the job goes back to the queue (its finished answers stay cached).
    if (interrupted) throw new Error("the worker is stopping");
    done++;
  });
  for (;;) {
    if (options.signal.aborted) break;
    if (options.untilEmpty) {
      const states = await jobStates(boss, options.run);
      if (Object.keys(states).length > 0 && unfinished(states) === 0) break;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  await boss.offWork(name);
  return done;
}
