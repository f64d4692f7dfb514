import { z } from "zod";
import type { TokenLogprob } from "./token-logprob.ts";

/**
 * The OpenAI chat-completions wire format as the inference servers send it,
 * validated at the boundary. Fields servers disagree on are optional: the
 * reasoning text is `reasoning_content` (vLLM ≤ 0.10, SGLang, llama.cpp) or
 * `reasoning` (vLLM ≥ 0.11, Ollama).
 */
const topLogprob = z.looseObject({ token: z.string(), logprob: z.number().nullable() });
const tokenLogprob = z.looseObject({
  token: z.string(),
  logprob: z.number().nullable(),
  top_logprobs: z.array(topLogprob).nullish(),
});
const chatLogprobs = z.looseObject({ content: z.array(tokenLogprob).nullish() }).nullish();

export const usageSchema = z.looseObject({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  completion_tokens_details: z.looseObject({ reasoning_tokens: z.number().int().nonnegative().nullish() }).nullish(),
});
export type WireUsage = z.infer<typeof usageSchema>;

const text = z.string().nullish();

export const chatCompletionSchema = z.looseObject({
  model: z.string().optional(),
  choices: z
    .array(
      z.looseObject({
        message: z.looseObject({ content: text, reasoning_content: text, reasoning: text }),
        finish_reason: z.string().nullish(),
        logprobs: chatLogprobs,
      }),
    )
    .min(1),
  usage: usageSchema.nullish(),
});

export const chatChunkSchema = z.looseObject({
  model: z.string().optional(),
  choices: z
    .array(
      z.looseObject({
        delta: z.looseObject({ content: text, reasoning_content: text, reasoning: text }).nullish(),
        finish_reason: z.string().nullish(),
        logprobs: chatLogprobs,
      }),
    )
    .default([]),
  usage: usageSchema.nullish(),
});

/** Legacy /v1/completions (the generic family's raw prompts, and vLLM's prompt_logprobs). */
const legacyLogprobs = z
  .looseObject({
    tokens: z.array(z.string()),
    token_logprobs: z.array(z.number().nullable()),
    top_logprobs: z.array(z.record(z.string(), z.number()).nullable()).nullish(),
  })
  .nullish();
const promptLogprob = z.record(
  z.string(),
  z.looseObject({ logprob: z.number(), rank: z.number().nullish(), decoded_token: z.string().nullish() }),
);

export const completionSchema = z.looseObject({
  model: z.string().optional(),
  choices: z
    .array(
      z.looseObject({
        text: z.string().nullish(),
        finish_reason: z.string().nullish(),
        logprobs: legacyLogprobs,
        prompt_logprobs: z.array(promptLogprob.nullable()).nullish(),
      }),
    )
    .default([]),
  usage: usageSchema.nullish(),
});
export type PromptLogprob = z.infer<typeof promptLogprob>;

export const tokenizeSchema = z.looseObject({ tokens: z.array(z.number().int().nonnegative()) });
export const modelsSchema = z.looseObject({ data: z.array(z.looseObject({ id: z.string() })) });

/**
 * The message of an error body: `{"error": {"message"}}` (OpenAI, vLLM), `{"error": "…"}` (TGI, llama.cpp),
 * `{"message": …}`.
 */
export function errorBodyMessage(body: unknown): string | undefined {
  if (!body || typeof body !== "object") return undefined;
  const record = body as Record<string, unknown>;
  const error = record.error;
  if (typeof error === "string") return error;
  if (error && typeof error === "object" && typeof (error as Record<string, unknown>).message === "string")
    return (error as Record<string, string>).message;
  return typeof record.message === "string" ? record.message : undefined;
}

export function reasoningOf(
  part: { reasoning_content?: string | null; reasoning?: string | null } | null | undefined,
): string {
  return part?.reasoning_content ?? part?.reasoning ?? "";
}

/** A null logprob (vLLM's -inf) is a probability of zero. */
const logprobValue = (value: number | null) => value ?? Number.NEGATIVE_INFINITY;

export function chatLogprobsToTokens(
  content: z.infer<typeof tokenLogprob>[] | null | undefined,
  topK: number,
): TokenLogprob[] {
  return (content ?? []).map((t) => ({
    text: t.token,
    logprob: logprobValue(t.logprob),
    top: (t.top_logprobs ?? []).slice(0, topK).map((o) => ({ text: o.token, logprob: logprobValue(o.logprob) })),
  }));
}

export function legacyLogprobsToTokens(logprobs: z.infer<typeof legacyLogprobs>, topK: number): TokenLogprob[] {
  if (!logprobs) return [];
  return logprobs.tokens.map((token, i) => ({
    text: token,
    logprob: logprobValue(logprobs.token_logprobs[i] ?? null),
    top: Object.entries(logprobs.top_logprobs?.[i] ?? {})
      .sort((a, b) => b[1] - a[1])
      .slice(0, topK)
      .map(([t, lp]) => ({ text: t, logprob: lp })),
  }));
}

/** One position of vLLM's prompt_logprobs: the actual token's entry and the top-k by rank. */
export function promptLogprobToToken(
  entry: PromptLogprob | null | undefined,
  token: number,
  topK: number,
): TokenLogprob | undefined {
  if (!entry) return undefined;
  const own = entry[String(token)];
  if (!own) return undefined;
  const top = Object.entries(entry)
    .map(([id, value]) => ({
      token: Number(id),
      text: value.decoded_token ?? "",
      logprob: value.logprob,
      rank: value.rank ?? Number.MAX_SAFE_INTEGER,
    }))
    .sort((a, b) => a.rank - b.rank || b.logprob - a.logprob)
    .slice(0, topK)
    .map(({ token: id, text: t, logprob }) => ({ token: id, text: t, logprob }));
  return { token, text: own.decoded_token ?? "", logprob: own.logprob, top };
}
