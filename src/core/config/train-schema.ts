import { z } from "zod";

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
