import type { DistillTeacher } from "../core/config/distill-schema.ts";
import { errorMessage } from "../core/errors.ts";
import type { Progress } from "../core/progress.ts";
import type { CachedTeacher } from "../evals/cache.ts";
import type { TeacherRequest } from "../teachers/teacher.ts";
import type { DistillPrompt } from "./sources.ts";

/** One teacher's answer (or failure) to one prompt, one sample. */
export interface Answer {
  prompt: number;
  teacher: string;
  sample: number;
  content?: string;
  reasoning?: string;
  completionTokens?: number;
  costMicros: number;
  /** The call failed after the teacher's own retries: recorded, counted, never dropped silently. */
  error?: string;
  /** Not asked: the teacher's budget was spent first. */
  skipped?: "budget";
}

export interface TeacherRun {
  config: DistillTeacher;
  /** The teacher, its answers going through the response cache. */
  teacher: CachedTeacher;
}

export interface TeacherTally {
  calls: number;
  errors: number;
  costMicros: number;
  completionTokens: number;
  /** Set when the budget cap stopped this teacher. */
  budgetReached: boolean;
  skipped: number;
}

/** Calls whose cached answers are loaded at once (bounded: a large run's answers are not all held in memory). */
const PREFETCH_BLOCK = 2_000;

/** Whether a teacher takes a prompt: it names no tags, or the prompt has one of them. */
export const routes = (config: DistillTeacher, prompt: DistillPrompt) =>
  !config.tags || config.tags.some((tag) => prompt.tags.includes(tag));

/** The request for one sample: sample s has seed s + 1, so each has its own key in the response cache. */
export function requestFor(config: DistillTeacher, prompt: DistillPrompt, sample: number): TeacherRequest {
  return {
    messages: prompt.messages,
    temperature: config.temperature,
    seed: sample + 1,
    ...(config.topP !== undefined ? { topP: config.topP } : {}),
    ...(config.maxTokens !== undefined ? { maxTokens: config.maxTokens } : {}),
    ...(config.thinking !== undefined ? { thinking: config.thinking } : {}),
    ...(config.reasoningEffort !== undefined ? { reasoningEffort: config.reasoningEffort } : {}),
  };
}

/**
 * Every routed prompt to every teacher, `samples` times each, teachers in parallel and `concurrency` calls in flight
 * per teacher, in prompt order. A teacher whose spending reaches its budget starts no more calls (those in flight
 * finish). With `signal` aborted, no call starts and those in flight finish: every finished answer is in the cache.
 */
export async function fanOut(
  prompts: readonly DistillPrompt[],
  teachers: readonly TeacherRun[],
  options: { concurrency: number; progress: Progress; signal?: AbortSignal },
): Promise<{ answers: Answer[]; tallies: Record<string, TeacherTally>; interrupted: boolean }> {
  const tallies: Record<string, TeacherTally> = {};
  const byTeacher = await Promise.all(
    teachers.map(async ({ config, teacher }) => {
      // Each request made once: the cache keys it by the object (prefetch, then the call).
      const units = prompts.flatMap((prompt, index) =>
        routes(config, prompt)
          ? Array.from({ length: config.samples }, (_, sample) => ({
              index,
              sample,
              request: requestFor(config, prompt, sample),
            }))
          : [],
      );
      const tally: TeacherTally = {
        calls: 0,
        errors: 0,
        costMicros: 0,
        completionTokens: 0,
        budgetReached: false,
        skipped: 0,
      };
      tallies[config.name] = tally;
      const answers: Answer[] = new Array(units.length);
      const task = options.progress.task(config.name, units.length, "calls");
      const started = Date.now();
      let next = 0;
      let finished = 0;
      let end = 0;
      const worker = async () => {
        while (next < end && !options.signal?.aborted) {
          const position = next++;
          const { index, sample, request } = units[position]!;
          const base = { prompt: index, teacher: config.name, sample };
          if (config.budgetMicros !== undefined && tally.costMicros >= config.budgetMicros) {
            tally.budgetReached = true;
            tally.skipped++;
            answers[position] = { ...base, costMicros: 0, skipped: "budget" };
          } else {
            try {
              const response = await teacher.generate(request);
              tally.calls++;
              tally.costMicros += response.costMicros;
              tally.completionTokens += response.usage.completionTokens;
              answers[position] = {
                ...base,
                content: response.content,
                ...(response.reasoning ? { reasoning: response.reasoning } : {}),
                completionTokens: response.usage.completionTokens,
                costMicros: response.costMicros,
              };
            } catch (error) {
              tally.errors++;
              answers[position] = { ...base, costMicros: 0, error: errorMessage(error) };
            }
          }
          task.update(++finished, {
            errors: tally.errors,
            cost: tally.costMicros,
            "tok/s": Math.round(tally.completionTokens / Math.max(0.001, (Date.now() - started) / 1000)),
          });
        }
      };
      // Block by block, the answers already cached loaded in bulk first: a rebuild does not pay a query per answer.
      for (let start = 0; start < units.length && !options.signal?.aborted; start = end) {
        end = Math.min(units.length, start + PREFETCH_BLOCK);
        await teacher.prefetch(units.slice(start, end).map((unit) => unit.request));
        await Promise.all(Array.from({ length: options.concurrency }, worker));
      }
      task.finish({ calls: tally.calls, errors: tally.errors, costMicros: tally.costMicros });
      return answers.filter(Boolean);
    }),
  );
  return { answers: byTeacher.flat(), tallies, interrupted: options.signal?.aborted ?? false };
}
