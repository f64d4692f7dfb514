import { z } from "zod";
import { distillSchema } from "./distill-schema.ts";
import { serveSchema } from "./serve-schema.ts";
import { studentSchema } from "./student-schema.ts";
import { teacherConfigSchema } from "./teacher-schema.ts";
import { architectureSchema, optimizationSchema } from "./train-schema.ts";

export { architectureSchema, optimizationSchema };

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
    student: studentSchema
      .prefault({})
      .describe("avocado train: the student, the distill run it learns from, the loss mix, the gate"),
    serve: serveSchema.default(serveSchema.parse({})).describe("the official, metered API: avocado serve"),
  })
  .strict();

export type AvocadoConfig = z.infer<typeof configSchema>;
export type Architecture = z.infer<typeof architectureSchema>;
export type Optimization = z.infer<typeof optimizationSchema>;
