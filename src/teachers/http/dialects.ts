import type { Family } from "../../core/family.ts";
import type { HTTP_ENGINES } from "../../core/config/teacher-schema.ts";
import type { TeacherRequest } from "../teacher.ts";

export type HttpEngine = (typeof HTTP_ENGINES)[number];

/**
 * What differs between OpenAI-compatible servers, from their documentation.
 * Everything else is the shared OpenAI chat-completions protocol.
 */
export interface Dialect {
  /**
   * The most `top_logprobs` the server accepts per token (vLLM's default --max-logprobs is 20, TGI caps at 5);
   * undefined: it serves none.
   */
  maxTopLogprobs: number | undefined;
  /**
   * How a given continuation is scored: vLLM's `prompt_logprobs` on /v1/completions (ids from its /tokenize), or not at
   * all.
   */
  score: "prompt-logprobs" | "none";
  /** Extra request fields for thinking on/off and reasoning effort. */
  reasoningFields(
    request: Pick<TeacherRequest, "thinking" | "reasoningEffort">,
    family: Family,
  ): Record<string, unknown>;
  /** Extra request fields for top-k log-probs beyond the OpenAI ones. */
  logprobFields(topLogprobs: number): Record<string, unknown>;
}

/**
 * vLLM, SGLang and llama.cpp pass `chat_template_kwargs` to the template: Qwen3's `enable_thinking`, gpt-oss's
 * `reasoning_effort`.
 */
function templateKwargs(
  request: Pick<TeacherRequest, "thinking" | "reasoningEffort">,
  family: Family,
): Record<string, unknown> {
  const kwargs: Record<string, unknown> = {};
  if (request.thinking !== undefined && family !== "gptoss") kwargs.enable_thinking = request.thinking;
  if (request.reasoningEffort !== undefined && family === "gptoss") kwargs.reasoning_effort = request.reasoningEffort;
  const fields: Record<string, unknown> = Object.keys(kwargs).length > 0 ? { chat_template_kwargs: kwargs } : {};
  // gpt-oss servers read the OpenAI field itself (vLLM's harmony path ignores the template).
  if (request.reasoningEffort !== undefined && family === "gptoss") fields.reasoning_effort = request.reasoningEffort;
  return fields;
}

const none = (): Record<string, unknown> => ({});

export const DIALECTS: Record<HttpEngine, Dialect> = {
  vllm: { maxTopLogprobs: 20, score: "prompt-logprobs", reasoningFields: templateKwargs, logprobFields: none },
  // SGLang: `separate_reasoning` returns `reasoning_content` when a reasoning parser is configured.
  sglang: {
    maxTopLogprobs: 20,
    score: "none",
    reasoningFields: (request, family) => ({ ...templateKwargs(request, family), separate_reasoning: true }),
    logprobFields: none,
  },
  // llama.cpp server: `n_probs` is its native name for top-k probabilities (older builds ignore `top_logprobs`).
  llamacpp: {
    maxTopLogprobs: 20,
    score: "none",
    reasoningFields: templateKwargs,
    logprobFields: (k) => ({ n_probs: k }),
  },
  // Ollama /v1: `reasoning_effort` switches thinking models, "none" turns thinking off; its request has no log-prob
  // fields.
  ollama: {
    maxTopLogprobs: undefined,
    score: "none",
    reasoningFields: (request) =>
      request.reasoningEffort !== undefined
        ? { reasoning_effort: request.reasoningEffort }
        : request.thinking === false
          ? { reasoning_effort: "none" }
          : {},
    logprobFields: none,
  },
  // TGI's Messages API: top_logprobs at most 5, no reasoning parser.
  tgi: { maxTopLogprobs: 5, score: "none", reasoningFields: none, logprobFields: none },
  openai: {
    maxTopLogprobs: 20,
    score: "none",
    reasoningFields: (request) =>
      request.reasoningEffort !== undefined ? { reasoning_effort: request.reasoningEffort } : {},
    logprobFields: none,
  },
};
