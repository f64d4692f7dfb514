import type { Family } from "../../core/family.ts";
import { ModelError } from "../../core/model-error.ts";
import type { OpenAiClient } from "../../openai/client.ts";
import { completionSchema, promptLogprobToToken, tokenizeSchema } from "../../openai/protocol.ts";
import { prepareMessages } from "../../chat/prepare-messages.ts";
import type { ScoreRequest, ScoreResult } from "../teacher.ts";
import type { Dialect } from "./dialects.ts";
import type { HttpTeacherOptions } from "./http-teacher.ts";

/** What scoring needs of an HTTP teacher. */
export interface ScoringServer {
  name: string;
  family: Family;
  options: HttpTeacherOptions;
  dialect: Dialect;
  client: OpenAiClient;
}

/**
 * Scores a given continuation on a server with vLLM's `prompt_logprobs`: the prompt and the continuation tokenized by
 * the server's own `/tokenize`, then one completion of one token whose prompt log-probs cover the continuation.
 */
export async function scoreByPromptLogprobs(server: ScoringServer, request: ScoreRequest): Promise<ScoreResult> {
  const { name, family, options, dialect, client } = server;
  if (dialect.score === "none") {
    throw new ModelError(
      name,
      "unsupported",
      `scoring a given continuation needs prompt log-probs, which ${options.engine} does not serve (vLLM does)`,
    );
  }
  const messages = prepareMessages(family, request.messages);
  const reasoning = dialect.reasoningFields(request, family);
  const prefixBody =
    family === "generic"
      ? {
          model: options.model,
          prompt: options.template!.render(messages, { thinking: request.thinking }),
          add_special_tokens: false,
        }
      : {
          model: options.model,
          messages,
          add_generation_prompt: true,
          ...(reasoning.chat_template_kwargs ? { chat_template_kwargs: reasoning.chat_template_kwargs } : {}),
        };
  const prefix = await tokenize(client, prefixBody, request.signal);
  const continuation = await tokenize(
    client,
    { model: options.model, prompt: request.continuation, add_special_tokens: false },
    request.signal,
  );
  if (continuation.length === 0) throw new ModelError(name, "bad-request", "the continuation to score is empty");
  const topK = Math.min(request.topLogprobs ?? 0, dialect.maxTopLogprobs ?? 0);
  const body = await client.json(
    "POST",
    "/completions",
    {
      model: options.model,
      prompt: [...prefix, ...continuation],
      max_tokens: 1,
      temperature: 0,
      prompt_logprobs: topK,
    },
    request.signal,
    completionSchema,
    "the prompt log-probs",
  );
  const entries = body.choices[0]?.prompt_logprobs;
  if (!entries || entries.length !== prefix.length + continuation.length) {
    throw new ModelError(
      name,
      "bad-response",
      `expected ${prefix.length + continuation.length} prompt log-probs, got ${entries?.length ?? "none"}`,
    );
  }
  const tokens = continuation.map((token, j) => {
    const scored = promptLogprobToToken(entries[prefix.length + j], token, topK);
    if (!scored)
      throw new ModelError(
        name,
        "bad-response",
        `prompt log-probs lack token ${token} at position ${prefix.length + j}`,
      );
    return scored;
  });
  return {
    teacher: name,
    tokens,
    logprob: tokens.reduce((sum, t) => sum + t.logprob, 0),
    promptTokens: prefix.length,
  };
}

/** Token ids from the server's own tokenizer (vLLM's `/tokenize`, at the server root). */
async function tokenize(
  client: OpenAiClient,
  body: Record<string, unknown>,
  signal: AbortSignal | undefined,
): Promise<number[]> {
  return (await client.json("POST", "//tokenize", body, signal, tokenizeSchema, "the tokenization")).tokens;
}
