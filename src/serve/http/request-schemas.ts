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
  user: z.string().optional(),
};

export const chatRequestSchema = z.object({
  ...common,
  messages: z.array(message).min(1).max(1024),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  response_format: z.object({ type: z.enum(["text", "json_object"]) }).loose().nullish(),
});
export type ChatRequest = z.infer<typeof chatRequestSchema>;

export const completionRequestSchema = z.object({
  ...common,
  prompt: z.string().min(1),
  logprobs: z.number().int().min(0).max(20).nullish(),
  echo: z.boolean().nullish(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

export function messageText(content: z.infer<typeof message>["content"]): string {
  return typeof content === "string" ? content : content.map((part) => part.text).join("");
}
