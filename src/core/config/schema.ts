import { z } from "zod";
import { distillSchema } from "./distill-schema.ts";
import { serveSchema } from "./serve-schema.ts";
import { teacherConfigSchema } from "./teacher-schema.ts";

/** The student / teacher architecture: a Qwen3-style decoder. */
export const architectureSchema = z
  .object({
    layers: z.number().int().min(1).max(128),
    hidden: z.number().int().min(8),
    heads: z.number().int().min(1),
    kvHeads: z.number().int().min(1),
    headDim: z.number().int().min(4),
    ffn: z.number().int().min(8),
    context: z.number().int().min(16),
    ropeTheta: z.number().positive().default(1_000_000),
    rmsNormEps: z.number().positive().default(1e-6),
    tieEmbeddings: z.boolean().default(true),
  })
  .strict()
  .refine((a) => a.heads % a.kvHeads === 0, { message: "heads must be a multiple of kvHeads (GQA)" });

export const optimizationSchema = z
  .object({
    steps: z.number().int().min(1),
    batchSize: z.number().int().min(1).describe("sequences per optimizer step (global)"),
    gradientAccumulation: z.number().int().min(1).default(1),
    learningRate: z.number().positive(),
    minLearningRate: z.number().nonnegative().default(0),
    warmupSteps: z.number().int().nonnegative().default(20),
    weightDecay: z.number().nonnegative().default(0.01),
    gradientClip: z.number().positive().default(1.0),
    checkpointEvery: z.number().int().min(1).default(100),
  })
  .strict();

export const tinyworldSchema = z
  .object({
    size: z.enum(["default", "test"]).default("default"),
    seed: z.number().int().nonnegative().default(20261126),
  })
  .strict();

export const trainSchema = z
  .object({
    architecture: architectureSchema.optional(),
    optimization: optimizationSchema.optional(),
    threads: z.number().int().min(1).default(1).describe("torch threads per process (one was fastest on 2 cores)"),
    seed: z.number().int().nonnegative().default(0).describe("seed of weight initialisation and data order"),
  })
  .strict();

export const configSchema = z
  .object({
    workspace: z.string().min(1).default(".avocado").describe("folder for every artifact"),
    python: z
      .string()
      .min(1)
      .default("/usr/bin/python3")
      .describe("the Python that can import torch (AVOCADO_PYTHON overrides)"),
    tinyworld: tinyworldSchema.default({ size: "default", seed: 20261126 }),
    train: trainSchema.default({ threads: 1, seed: 0 }),
    teachers: z
      .array(teacherConfigSchema)
      .default([])
      .describe(
        "teachers beyond the built tiny ones: inference servers (transport: http) or GGUF files (transport: embedded)",
      )
      .refine((list) => new Set(list.map((t) => t.name)).size === list.length, {
        message: "teacher names must be unique",
      }),
    distill: distillSchema
      .optional()
      .describe("avocado distill run: prompts, teachers, selection, curation (absent: the tiny world's teachers)"),
    serve: serveSchema.default(serveSchema.parse({})).describe("the official, metered API: avocado serve"),
  })
  .strict();

export type AvocadoConfig = z.infer<typeof configSchema>;
export type Architecture = z.infer<typeof architectureSchema>;
export type Optimization = z.infer<typeof optimizationSchema>;
