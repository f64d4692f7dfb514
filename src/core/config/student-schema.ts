import { z } from "zod";
import { architectureSchema, optimizationSchema } from "./train-schema.ts";

/** The KD divergence on the positions where the student and a teacher share vocabulary (distill.md explains each). */
export const divergenceSchema = z.enum(["forward-kl", "reverse-kl", "jsd"]);

export const lossSchema = z
  .object({
    sft: z.number().min(0).default(1).describe("weight of cross-entropy on the selected answers"),
    kd: z.number().min(0).default(1).describe("weight of top-k logit KD from teachers sharing the student's tokenizer"),
    crossKd: z.number().min(0).default(1).describe("weight of KD from teachers with other tokenizers"),
    divergence: divergenceSchema.default("forward-kl"),
    beta: z
      .number()
      .min(0)
      .max(1)
      .default(0.5)
      .describe("jsd: the mixture weight of the teacher (TRL's GKD convention)"),
    temperature: z.number().positive().default(1).describe("softens both distributions; the KD terms are scaled by T²"),
    tail: z
      .enum(["renormalize", "bucket"])
      .default("bucket")
      .describe("mass outside the stored top-k: renormalise the top-k, or keep it as one extra outcome"),
    crossTokenizer: z
      .enum(["uld", "hybrid", "off"])
      .default("hybrid")
      .describe(
        "uld: sorted-probability Wasserstein everywhere; hybrid: exact KL where spans and tokens agree, ULD elsewhere",
      ),
  })
  .strict();

export const onPolicySchema = z
  .object({
    rounds: z.number().int().min(0).default(0).describe("GKD rounds after the off-policy phase (0: off)"),
    prompts: z.number().int().min(1).default(256).describe("prompts the student answers each round"),
    steps: z.number().int().min(1).default(200).describe("training steps each round"),
    temperature: z.number().min(0).max(2).default(1),
    maxTokens: z.number().int().min(1).default(96),
    mix: z.number().min(0).max(1).default(0.5).describe("share of on-policy sequences in a round's batches (GKD's λ)"),
  })
  .strict();

export const studentSchema = z
  .object({
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]*$/, "lower-case letters, digits, . _ -")
      .default("avocado-student"),
    from: z.string().min(1).optional().describe("the distill run to learn from (default: the latest)"),
    tokenizer: z.enum(["qwen"]).default("qwen").describe("the tokenizer family, trimmed to the data"),
    architecture: architectureSchema.optional().describe("a Qwen3-style decoder (default: 4 layers, d=128)"),
    initFrom: z.string().min(1).optional().describe("an HF Qwen3 checkpoint folder to start from"),
    optimization: optimizationSchema.optional(),
    loss: lossSchema.prefault({}),
    teachers: z
      .record(z.string(), z.number().min(0))
      .default({})
      .describe("static weight per teacher (absent: 1); 0 drops a teacher's records"),
    weighting: z
      .enum(["static", "evidence"])
      .default("evidence")
      .describe(
        "evidence: a record's weight is also its selection evidence (verified 1, else vote share or judge score)",
      ),
    onPolicy: onPolicySchema.prefault({}),
    processes: z.number().int().min(1).default(1).describe("data-parallel processes (torchrun, gloo on CPU)"),
    parallel: z.enum(["ddp", "fsdp"]).default("ddp").describe("fsdp shards parameters across processes"),
    evaluate: z.boolean().default(true).describe("run the eval suites and the release gate after training"),
    suites: z.array(z.string()).default(["tinyworld", "tinyworld-probes"]).describe("eval suites run on the student"),
  })
  .strict();

export type StudentConfig = z.infer<typeof studentSchema>;
export type LossConfig = z.infer<typeof lossSchema>;
