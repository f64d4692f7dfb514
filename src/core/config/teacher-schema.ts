import { FAMILIES } from "../family.ts";
import { z } from "zod";

const micros = z.number().int().nonnegative();

/**
 * What a teacher costs, in integer micro-units of the operator's currency:
 * either token prices (per million tokens, reasoning billed as output, as every
 * hosted API does) or the hourly rate of the GPUs it runs on.
 */
export const priceSchema = z.union([
  z.object({ inputPerMillion: micros, outputPerMillion: micros }).strict(),
  z
    .object({
      gpuHour: micros.describe("micro-units per GPU-hour of the server"),
      gpus: z.number().int().min(1).default(1),
    })
    .strict(),
]);
export type Price = z.infer<typeof priceSchema>;

/** Per-teacher scheduling: every request to the teacher goes through these. */
export const limitsSchema = z
  .object({
    concurrency: z.number().int().min(1).default(4).describe("most requests in flight"),
    rpm: z.number().positive().optional().describe("requests per minute, retries included"),
    tpm: z.number().positive().optional().describe("tokens per minute: prompt (estimated up front) + completion"),
    retries: z.number().int().min(0).max(20).default(4),
    backoffMs: z.number().int().min(1).default(250).describe("first retry delay; doubles, with full jitter"),
    maxBackoffMs: z.number().int().min(1).default(30_000),
    timeoutMs: z.number().int().min(1).default(120_000).describe("per attempt"),
    adaptive: z.boolean().default(true).describe("halve concurrency on 429/overload, grow it back on success"),
    breakerFailures: z.number().int().min(1).default(5).describe("consecutive failures that open the circuit"),
    breakerCooldownMs: z.number().int().min(1).default(30_000),
  })
  .strict();
export type TeacherLimits = z.infer<typeof limitsSchema>;
export const DEFAULT_LIMITS: TeacherLimits = limitsSchema.parse({});

const common = {
  name: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9._-]*$/, "letters, digits, '.', '_' or '-'"),
  family: z.enum(FAMILIES),
  licence: z.string().optional().describe("e.g. apache-2.0, gemma, qwen-research; see docs/licences.md"),
  maxTokens: z.number().int().min(1).default(1024).describe("default and cap of generated tokens"),
  thinking: z.boolean().optional().describe("Qwen: enable_thinking"),
  reasoningEffort: z.enum(["low", "medium", "high"]).optional().describe("gpt-oss"),
  price: priceSchema.optional(),
  limits: limitsSchema.default(DEFAULT_LIMITS),
};

export const HTTP_ENGINES = ["vllm", "sglang", "llamacpp", "ollama", "tgi", "openai"] as const;

export const httpTeacherSchema = z
  .object({
    ...common,
    transport: z.literal("http"),
    engine: z.enum(HTTP_ENGINES).describe("which server: decides logprob, reasoning and scoring dialect"),
    baseUrl: z.url().describe("the OpenAI-compatible root, e.g. http://gpu-1:8000/v1"),
    model: z.string().min(1),
    apiKeyEnv: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/, "an environment variable name")
      .optional()
      .describe("the API key is read from this variable, never from the file"),
    headers: z.record(z.string(), z.string()).default({}),
    chatTemplate: z
      .string()
      .optional()
      .describe("generic family: tokenizer_config.json whose template renders prompts for /v1/completions"),
    maxResponseBytes: z
      .number()
      .int()
      .min(1024)
      .default(16 * 1024 * 1024),
  })
  .strict();

export const embeddedTeacherSchema = z
  .object({
    ...common,
    transport: z.literal("embedded"),
    path: z.string().min(1).describe("a GGUF file"),
    chatTemplate: z
      .string()
      .optional()
      .describe("generic family: tokenizer_config.json (default: the GGUF's own template)"),
    sequences: z.number().int().min(1).max(64).default(1).describe("parallel sequences on the loaded model"),
  })
  .strict();

export const teacherConfigSchema = z.discriminatedUnion("transport", [httpTeacherSchema, embeddedTeacherSchema]);
export type TeacherConfig = z.infer<typeof teacherConfigSchema>;
export type HttpTeacherConfig = z.infer<typeof httpTeacherSchema>;
export type EmbeddedTeacherConfig = z.infer<typeof embeddedTeacherSchema>;
