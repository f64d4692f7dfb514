import { z } from "zod";

const message = z.object({
  role: z.enum(["system", "developer", "user", "assistant"]),
  // Content parts (text only) are accepted as the OpenAI API allows.
  content: z.union([z.string(), z.array(z.object({ type: z.literal("text"), text: z.string() }).loose())]),
  name: z.string().optional(),
});

const common = {
  model: z.string().min(1).max(256),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  n: z.number().int().min(1).max(8).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  user: z.string().optional(),
};

export const chatRequestSchema = z.object({
  ...common,
  messages: z.array(message).min(1).max(1024),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  response_format: z
    .union([
      z.object({ type: z.enum(["text", "json_object"]) }).loose(),
      z
        .object({
          type: z.literal("json_schema"),
          json_schema: z
            .object({
              name: z.string().min(1).max(64),
              description: z.string().optional(),
              schema: z.record(z.string(), z.unknown()).optional(),
              strict: z.boolean().nullish(),
            })
            .loose(),
        })
        .loose(),
    ])
    .nullish(),
});
export type ChatRequest = z.infer<typeof chatRequestSchema>;

export const completionRequestSchema = z.object({
  ...common,
  prompt: z.string().min(1),
  logprobs: z.number().int().min(0).max(20).nullish(),
  echo: z.boolean().nullish(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

/**
 * OpenAI parameters that change what an answer is, which this API does not
 * implement: refused (422) rather than silently ignored. A value that asks for
 * nothing (no tools, tool_choice "none", an empty logit_bias, best_of 1) passes.
 */
export function unsupportedParameter(body: Record<string, unknown>): { param: string; message: string } | undefined {
  const given = (value: unknown) =>
    value !== undefined &&
    value !== null &&
    !(Array.isArray(value) && value.length === 0) &&
    !(typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0);
  for (const param of ["tools", "functions"])
    if (given(body[param])) return { param, message: "tool and function calling are not supported" };
  for (const param of ["tool_choice", "function_call"])
    if (given(body[param]) && body[param] !== "none" && body[param] !== "auto")
      return { param, message: "tool and function calling are not supported" };
  if (given(body.logit_bias)) return { param: "logit_bias", message: "logit_bias is not supported" };
  for (const param of ["audio", "prediction", "web_search_options"])
    if (given(body[param])) return { param, message: `${param} is not supported` };
  if (given(body.modalities) && JSON.stringify(body.modalities) !== '["text"]')
    return { param: "modalities", message: "only text is supported" };
  if (given(body.suffix) && body.suffix !== "")
    return { param: "suffix", message: "suffix (insertion) is not supported" };
  if (given(body.best_of) && body.best_of !== 1) return { param: "best_of", message: "best_of is not supported" };
  return undefined;
}

export function messageText(content: z.infer<typeof message>["content"]): string {
  return typeof content === "string" ? content : content.map((part) => part.text).join("");
}
