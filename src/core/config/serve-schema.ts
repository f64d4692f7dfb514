import { TOKENIZER_FAMILIES } from "../family.ts";
import { z } from "zod";

const micros = z.number().int().nonnegative();
const rate = z.number().int().min(1);

export const planSchema = z
  .object({
    rpm: rate.optional().describe("requests per minute per key"),
    tpm: rate.optional().describe("tokens per minute per key: prompt counted up front, completion as it streams"),
    concurrency: rate.optional().describe("requests in flight per key"),
    orgRpm: rate.optional(),
    orgTpm: rate.optional(),
    orgConcurrency: rate.optional(),
    topLogprobs: z
      .number()
      .int()
      .min(0)
      .max(20)
      .default(0)
      .describe("the most top_logprobs a key of this plan may ask for (0 = logprobs off)"),
  })
  .strict();
export type Plan = z.infer<typeof planSchema>;

export const servedModelSchema = z
  .object({
    name: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9._:-]*$/),
    /** A local GGUF (embedded engine), or upstream OpenAI-compatible servers (a pool). */
    gguf: z.string().optional(),
    upstreams: z.array(z.url()).min(1).optional(),
    upstreamModel: z.string().optional().describe("the model name the upstreams serve (default: name)"),
    sequences: z.number().int().min(1).max(64).default(1),
    streamUsage: z
      .enum(["final", "continuous"])
      .default("final")
      .describe(
        "upstreams: 'continuous' asks for usage on every stream event (vLLM's stream_options.continuous_usage_stats), so a cut stream is charged the upstream's own count",
      ),
    tokenizer: z
      .enum(TOKENIZER_FAMILIES)
      .optional()
      .describe(
        "upstreams: the model's tokenizer family; without per-event usage, a stream cut before its usage is charged this tokenizer's count of the text it streamed",
      ),
    price: z.object({ inputPerMillion: micros, outputPerMillion: micros }).strict(),
    maxTokens: z.number().int().min(1).default(1024).describe("the most a request may generate"),
    timeoutMs: z
      .number()
      .int()
      .min(100)
      .default(300_000)
      .describe(
        "upstreams: the most an upstream may take to start its answer (for a whole answer, usually all of it) and between two events of a stream; past it the request ends with 504 and is charged what it streamed",
      ),
  })
  .strict()
  .refine((m) => (m.gguf === undefined) !== (m.upstreams === undefined), {
    message: "give exactly one of gguf or upstreams",
  });
export type ServedModelConfig = z.infer<typeof servedModelSchema>;

export const serveSchema = z
  .object({
    host: z.string().default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(8080),
    store: z
      .string()
      .default("sqlite:avocado.db")
      .describe("sqlite:<path> (relative to the workspace) or postgres://…"),
    storeTimeoutMs: z
      .number()
      .int()
      .min(100)
      .default(10_000)
      .describe(
        "PostgreSQL: the most one statement of the server may take, waits for locks included; past it the request gets 503 (the CLI waits as long as it takes). A query with no answer at all a second later (a network that drops packets) fails on the server's side, and its connection is closed",
      ),
    redis: z.string().optional().describe("redis://… to share limits across replicas (in-process when absent)"),
    redisPrefix: z.string().min(1).default("avocado:limits").describe("namespace of the limit keys in Redis"),
    adminTokenEnv: z
      .string()
      .default("AVOCADO_ADMIN_TOKEN")
      .describe("environment variable holding the admin API's bearer token"),
    bodyLimitBytes: z.number().int().min(1024).default(1_048_576),
    requestTimeoutMs: z
      .number()
      .int()
      .min(100)
      .default(30_000)
      .describe(
        "the most time a client may take to send a whole request, headers and body (a slower one gets 408 and its connection is closed); a streamed answer may take longer",
      ),
    shutdownGraceMs: z
      .number()
      .int()
      .min(0)
      .default(30_000)
      .describe(
        "on SIGTERM/SIGINT, how long requests in flight may take to finish before their connections are closed (each is then settled for what it had generated); idle connections close at once",
      ),
    streamBufferBytes: z
      .number()
      .int()
      .min(16_384)
      .default(2 << 20)
      .describe(
        "a streamed answer whose client does not read it: once this much of it waits to be sent (beyond what the network buffers hold), the stream is cut and charged what was generated; without a bound, each such client would hold its whole answer in the server's memory",
      ),
    plans: z
      .record(z.string(), planSchema)
      .default({ default: { rpm: 600, tpm: 200_000, concurrency: 8, topLogprobs: 0 } }),
    freeTierMicros: micros.default(0).describe("credit granted to a new org's first key"),
    metricsPublic: z
      .boolean()
      .default(false)
      .describe(
        "serve /metrics to anyone (default: only with the admin token, as Prometheus' authorization credentials)",
      ),
    models: z.array(servedModelSchema).default([]),
    extraction: z
      .object({
        windowDays: z.number().positive().default(7),
        threshold: z.number().min(0).max(100).default(60).describe("score at which 'avocado keys audit' flags a key"),
        throttleRpm: z
          .number()
          .int()
          .min(1)
          .optional()
          .describe("when set, a flagged key is held to this RPM automatically"),
      })
      .strict()
      .default({ windowDays: 7, threshold: 60 }),
  })
  .strict();
export type ServeConfig = z.infer<typeof serveSchema>;
