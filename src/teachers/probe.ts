import { performance } from "node:perf_hooks";
import { errorMessage } from "../core/errors.ts";
import { ModelError } from "../core/model-error.ts";
import type { Teacher, TeacherRequest } from "./teacher.ts";

export interface ProbeResult {
  teacher: string;
  family: string;
  health: { ok: boolean; detail: string; latencyMs: number };
  requests: number;
  concurrency: number;
  /** Time to the first streamed token, median over the requests (ms). */
  firstTokenMs: number;
  /** Whole request latency, median (ms). */
  latencyMs: number;
  /** Completion tokens per second over the whole probe (all requests together). */
  tokensPerSecond: number;
  logprobs: { supported: boolean; detail: string };
  score: { supported: boolean; detail: string };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? 0 : sorted[Math.floor((sorted.length - 1) / 2)]!;
};

/** What a teacher can do and how fast: health, time to first token, latency, tokens/s, log-prob and scoring support. */
export async function probeTeacher(
  teacher: Teacher,
  options: { prompt: string; requests: number; concurrency: number; maxTokens: number },
): Promise<ProbeResult> {
  const health = await teacher.health(AbortSignal.timeout(10_000));
  const request: TeacherRequest = {
    messages: [{ role: "user", content: options.prompt }],
    maxTokens: options.maxTokens,
    temperature: 0,
  };
  const firstTokens: number[] = [];
  const latencies: number[] = [];
  let tokens = 0;
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < options.requests) {
      next++;
      const begin = performance.now();
      let first: number | undefined;
      for await (const event of teacher.stream(request)) {
        if (event.type !== "done") first ??= performance.now() - begin;
        else tokens += event.response.usage.completionTokens;
      }
      latencies.push(performance.now() - begin);
      firstTokens.push(first ?? performance.now() - begin);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency, options.requests) }, worker));
  const seconds = (performance.now() - started) / 1000;
  const support = async (run: () => Promise<string>) => {
    try {
      return { supported: true, detail: await run() };
    } catch (error) {
      return {
        supported: false,
        detail: error instanceof ModelError ? `${error.kind}: ${error.message}` : errorMessage(error),
      };
    }
  };
  const logprobs = await support(async () => {
    const response = await teacher.generate({
      ...request,
      maxTokens: 4,
      topLogprobs: Math.min(5, teacher.capabilities.maxTopLogprobs),
    });
    const count = response.logprobs?.[0]?.top.length ?? 0;
    if (count === 0) throw new Error("the engine returned no top log-probs");
    return `top ${count} per token (up to ${teacher.capabilities.maxTopLogprobs})`;
  });
  const score = await support(async () => {
    const result = await teacher.score({
      messages: request.messages,
      continuation: "The answer is 42.",
      topLogprobs: 1,
    });
    return `${result.tokens.length} continuation tokens scored, log-prob ${result.logprob.toFixed(3)}`;
  });
  return {
    teacher: teacher.name,
    family: teacher.family,
    health: { ok: health.ok, detail: health.detail, latencyMs: health.latencyMs },
    requests: options.requests,
    concurrency: options.concurrency,
    firstTokenMs: median(firstTokens),
    latencyMs: median(latencies),
    tokensPerSecond: tokens / seconds,
    logprobs,
    score,
  };
}
