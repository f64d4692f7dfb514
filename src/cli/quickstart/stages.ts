import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeJsonAtomic } from "../../core/atomic-write.ts";
import { AvocadoError } from "../../core/errors.ts";
import { PROJECT_ROOT } from "../../core/paths.ts";

/** One stage as the state file keeps it: done with this config, in so many seconds. */
interface StageRecord {
  config: string;
  seconds: number;
  at: string;
  summary: string;
}

export interface StageTime {
  stage: string;
  seconds: number;
  /** Done by an earlier run with the same config (its time then is in `seconds`). */
  cached: boolean;
  summary: string;
}

/**
 * The quickstart's stages, each run once per config: the state file records the ones that finished, so a rerun skips
 * them and an interrupted run goes on from the stage it was in (which itself resumes: every stage's command does).
 * Once a stage runs, every stage after it runs too.
 */
export class StageRunner {
  private readonly state: Record<string, StageRecord>;
  readonly times: StageTime[] = [];
  /** A stage ran in this run: the ones after it run too (their inputs may have changed). */
  private ran = false;

  constructor(
    private readonly file: string,
    private readonly configHash: string,
    private readonly announce: (line: string, fields: Record<string, unknown>) => void,
  ) {
    let state: Record<string, StageRecord> = {};
    try {
      if (existsSync(file)) state = JSON.parse(readFileSync(file, "utf8")) as Record<string, StageRecord>;
    } catch {
      // An unreadable state file (cut short by a crash before rename cannot happen; edited by hand can) means
      // every stage runs again, each resuming from its own caches.
    }
    this.state = state;
  }

  /** Whether `stage` finished before with this config (and `done()` still holds), and no stage before it ran now. */
  isDone(stage: string, done?: () => boolean): boolean {
    return !this.ran && this.state[stage]?.config === this.configHash && (done?.() ?? true);
  }

  /**
   * Runs `stage` unless it finished before with this config and `done()` still holds (its outputs exist).
   * `always` stages (serving, the demo request) run every time.
   */
  async run(
    stage: string,
    work: () => Promise<string>,
    options: { done?: () => boolean; always?: boolean } = {},
  ): Promise<void> {
    const index = this.times.length + 1;
    const previous = this.state[stage];
    if (!options.always && previous && this.isDone(stage, options.done)) {
      this.times.push({ stage, seconds: previous.seconds, cached: true, summary: previous.summary });
      this.announce(`[${index}] ${stage}: done before (${previous.seconds.toFixed(0)} s then): ${previous.summary}`, {
        stage,
        cached: true,
      });
      return;
    }
    if (!options.always) this.ran = true;
    this.announce(`[${index}] ${stage}`, { stage, started: true });
    const started = performance.now();
    const summary = await work();
    const seconds = (performance.now() - started) / 1000;
    this.times.push({ stage, seconds, cached: false, summary });
    this.announce(`[${index}] ${stage}: ${summary} (${seconds.toFixed(0)} s)`, { stage, seconds, summary });
    if (options.always) return;
    this.state[stage] = { config: this.configHash, seconds, at: new Date().toISOString(), summary };
    await writeJsonAtomic(this.file, this.state);
  }

  /** The per-stage times, as the quickstart prints them at the end. */
  table(): string {
    const width = Math.max(...this.times.map((t) => t.stage.length));
    const total = this.times.reduce((sum, t) => sum + (t.cached ? 0 : t.seconds), 0);
    const lines = this.times.map(
      (t) =>
        `  ${t.stage.padEnd(width)}  ${t.cached ? `cached (${t.seconds.toFixed(0)} s when run)` : `${t.seconds.toFixed(1)} s`}`,
    );
    return [...lines, `  ${"this run".padEnd(width)}  ${total.toFixed(1)} s`].join("\n");
  }
}

export class StageFailed extends AvocadoError {}

/** The stage command running now, and whether the quickstart was asked to stop (SIGINT or SIGTERM). */
const current: { children: Set<ChildProcess>; stopped?: NodeJS.Signals } = { children: new Set() };

/**
 * Passes SIGINT and SIGTERM on to the running stage (a signal sent to this process alone, by a supervisor or a test,
 * would not reach it): the stage stops as it would by itself, its work kept, and the quickstart ends after it.
 */
export function forwardSignals(): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, () => {
      current.stopped = signal;
      for (const child of current.children) child.kill(signal);
    });
}

/** Stops the commands still running (one run beside the stages, when a stage failed): they resume next time. */
export function stopChildren(): void {
  for (const child of current.children) child.kill("SIGTERM");
}

/**
 * An `avocado` command as a stage: the same command a user would type, with the quickstart's config. Its bars (or
 * its JSON events, with --json) go straight to this terminal.
 */
export function avocado(args: string[], options: { config: string; json: boolean; log?: string }): Promise<void> {
  const argv = [join(PROJECT_ROOT, "bin", "avocado.js"), ...(options.json ? ["--json"] : []), "-c", options.config];
  const failed = (how: string) =>
    new StageFailed(
      "stage_failed",
      `'avocado ${args.join(" ")}' ${how}; run the quickstart again to continue from this stage`,
    );
  if (current.stopped) return Promise.reject(failed(`not started (${current.stopped})`));
  return new Promise((resolve, reject) => {
    // A command run beside another writes to its log file, not over the other's bars.
    const out = options.log ? openSync(options.log, "a") : undefined;
    const child = spawn(process.execPath, [...argv, ...args], {
      stdio: out === undefined ? "inherit" : ["ignore", out, out],
    });
    if (out !== undefined) closeSync(out);
    current.children.add(child);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      current.children.delete(child);
      if (code === 0 && !current.stopped) resolve();
      else
        reject(
          failed(
            signal ? `stopped by ${signal}` : current.stopped ? `stopped (${current.stopped})` : `exited with ${code}`,
          ),
        );
    });
  });
}
