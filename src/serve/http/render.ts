import type { GenerationResult } from "../models/served-model.ts";

/** OpenAI's response bodies: usage, log-probs (chat and legacy shapes), whole completions. */
export function usageOf(results: GenerationResult[]) {
  const prompt = results.reduce((sum, r) => sum + r.promptTokens, 0);
  const completion = results.reduce((sum, r) => sum + r.completionTokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

type Logprobs = NonNullable<GenerationResult["logprobs"]>;
const bytes = (text: string) => [...Buffer.from(text, "utf8")];

export function chatLogprobs(logprobs: Logprobs) {
  return {
    content: logprobs.map((t) => ({
      token: t.token,
      logprob: t.logprob,
      bytes: bytes(t.token),
      top_logprobs: t.top.map((o) => ({ token: o.token, logprob: o.logprob, bytes: bytes(o.token) })),
    })),
  };
}

export function legacyLogprobs(logprobs: Logprobs) {
  return {
    tokens: logprobs.map((t) => t.token),
    token_logprobs: logprobs.map((t) => t.logprob),
    top_logprobs: logprobs.map((t) => Object.fromEntries(t.top.map((o) => [o.token, o.logprob]))),
    text_offset: [],
  };
}

export function completionBody(route: "chat" | "completions", id: string, model: string, results: GenerationResult[]) {
  const created = Math.floor(Date.now() / 1000);
  if (route === "chat") {
    return {
      id,
      object: "chat.completion",
      created,
      model,
      choices: results.map((r, index) => ({
        index,
        // An undefined field is left out of the JSON (no spread of a conditional object on every answer).
        message: { role: "assistant", content: r.content, reasoning_content: r.reasoning || undefined },
        logprobs: r.logprobs ? chatLogprobs(r.logprobs) : null,
        finish_reason: r.finishReason,
      })),
      usage: usageOf(results),
    };
  }
  return {
    id,
    object: "text_completion",
    created,
    model,
    choices: results.map((r, index) => ({
      index,
      text: r.content,
      logprobs: r.logprobs ? legacyLogprobs(r.logprobs) : null,
      finish_reason: r.finishReason,
    })),
    usage: usageOf(results),
  };
}
