import { z } from "zod";

const fieldName = z.string().min(1);

/** Where prompts come from: a file (JSONL, CSV or Parquet) with its fields mapped, or a set built in. */
export const promptSourceSchema = z.union([
  z
    .object({
      builtIn: z
        .enum(["tinyworld", "gsm8k-train"])
        .describe("tinyworld: the built world's train prompts (skills and behaviours); gsm8k-train: GSM8K train"),
      limit: z.number().int().min(1).optional().describe("only the first n prompts"),
    })
    .strict(),
  z
    .object({
      path: z.string().min(1).describe("a .jsonl, .csv or .parquet file, relative to the config file's folder"),
      prompt: fieldName.optional().describe("the field holding a plain prompt"),
      messages: fieldName.optional().describe("the field holding chat messages ({role, content} objects)"),
      reference: fieldName.optional().describe("the field holding a reference answer"),
      tags: fieldName.optional().describe("the field holding a tag or a list of tags (a skill, a topic)"),
      verifier: z
        .enum(["exact", "numeric", "gsm8k", "skill", "regex", "json-schema", "module", "none"])
        .optional()
        .describe("how an answer is checked (default: exact where there is a reference, else none)"),
      pattern: z.string().optional().describe("verifier regex: a right answer matches it"),
      schema: z.string().optional().describe("verifier json-schema: a JSON Schema file the answer's JSON must meet"),
      module: z
        .string()
        .optional()
        .describe("verifier module: a JS module exporting verify(answer, reference, messages) → boolean"),
      limit: z.number().int().min(1).optional(),
    })
    .strict()
    .refine((source) => (source.prompt === undefined) !== (source.messages === undefined), {
      message: "name exactly one of prompt or messages",
    })
    .refine((source) => source.verifier !== "regex" || source.pattern !== undefined, {
      message: "the regex verifier needs a pattern",
    })
    .refine((source) => source.verifier !== "json-schema" || source.schema !== undefined, {
      message: "the json-schema verifier needs a schema file",
    })
    .refine((source) => source.verifier !== "module" || source.module !== undefined, {
      message: "the module verifier needs a module file",
    }),
]);

export const distillTeacherSchema = z
  .object({
    name: z.string().min(1).describe("a configured or built tiny teacher"),
    samples: z.number().int().min(1).max(64).default(1).describe("answers per prompt (each its own seed)"),
    temperature: z.number().min(0).max(2).default(0.7),
    topP: z.number().gt(0).max(1).optional(),
    maxTokens: z.number().int().min(1).optional(),
    thinking: z.boolean().optional().describe("Qwen: reasoning on or off"),
    reasoningEffort: z.enum(["low", "medium", "high"]).optional().describe("gpt-oss"),
    tags: z.array(z.string()).optional().describe("route: only prompts with one of these tags go to this teacher"),
    budgetMicros: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("the most this teacher may cost (its price); reached, it stops cleanly and the run says so"),
  })
  .strict();

export const distillSchema = z
  .object({
    sources: z
      .array(promptSourceSchema)
      .min(1)
      .default([{ builtIn: "tinyworld" }]),
    teachers: z.array(distillTeacherSchema).min(1).describe("the teachers every prompt goes to"),
    badLines: z.enum(["skip", "fail"]).default("skip").describe("a broken line in a prompt file: reported, then this"),
    selection: z
      .object({
        verify: z.boolean().default(true).describe("drop answers a prompt's reference says are wrong"),
        tolerance: z.number().min(0).default(1e-6).describe("numeric verifier: relative tolerance"),
        vote: z
          .boolean()
          .default(true)
          .describe("keep only answers agreeing with the majority of all teachers' extracted answers"),
        minVotes: z.number().int().min(1).default(2).describe("a prompt with no reference needs this many agreeing"),
        keep: z.number().int().min(1).default(1).describe("answers kept per prompt"),
        judge: z
          .object({
            teacher: z.string().min(1).describe("the judge: a configured or built teacher"),
            rubric: z.string().min(1),
            mode: z
              .enum(["filter", "best"])
              .default("best")
              .describe("filter: keep answers the judge passes; best: rank answers by wins against each other"),
            candidates: z.number().int().min(2).max(16).default(6).describe("best: the answers compared, first ones"),
          })
          .strict()
          .optional()
          .describe("an LLM judge after the checks: each pair asked in both orders"),
      })
      .strict()
      .default({ verify: true, tolerance: 1e-6, vote: true, minVotes: 2, keep: 1 }),
    curation: z
      .object({
        dedupe: z
          .object({
            threshold: z.number().gt(0).max(1).default(0.8).describe("Jaccard similarity of word 5-grams"),
            permutations: z.number().int().min(16).max(512).default(128),
            bands: z.number().int().min(1).default(16).describe("LSH bands (permutations / bands rows each)"),
          })
          .strict()
          .default({ threshold: 0.8, permutations: 128, bands: 16 }),
        decontaminate: z
          .object({
            suites: z.array(z.string()).default(["tinyworld", "gsm8k"]),
            n: z.number().int().min(3).default(13).describe("n-gram length in words"),
          })
          .strict()
          .default({ suites: ["tinyworld", "gsm8k"], n: 13 }),
        probes: z
          .array(z.string())
          .default(["tinyworld-probes"])
          .describe("probe suites run on every teacher: a behaviour one shows is filtered from its answers"),
        minChars: z.number().int().min(0).default(1),
        maxChars: z.number().int().min(1).default(32_768),
        latinShare: z
          .number()
          .min(0)
          .max(1)
          .default(0)
          .describe("language filter: the least share of letters in Latin script (0: off)"),
        reasoning: z
          .enum(["keep", "strip", "separate"])
          .default("separate")
          .describe("keep: in the assistant text; strip: dropped; separate: in a reasoning field"),
      })
      .strict()
      .default({
        dedupe: { threshold: 0.8, permutations: 128, bands: 16 },
        decontaminate: { suites: ["tinyworld", "gsm8k"], n: 13 },
        probes: ["tinyworld-probes"],
        minChars: 1,
        maxChars: 32_768,
        latinShare: 0,
        reasoning: "separate",
      }),
    logprobs: z
      .object({
        topK: z
          .number()
          .int()
          .min(0)
          .max(64)
          .default(20)
          .describe("teacher log-probs of every kept answer, top k a position (0: none); teachers that can score"),
      })
      .strict()
      .default({ topK: 20 }),
    commercial: z
      .boolean()
      .default(true)
      .describe("the student is sold: teachers whose licence forbids it are refused"),
    concurrency: z.number().int().min(1).default(4).describe("calls in flight per teacher"),
  })
  .strict();

export type DistillConfig = z.infer<typeof distillSchema>;
export type PromptSource = z.infer<typeof promptSourceSchema>;
export type DistillTeacher = z.infer<typeof distillTeacherSchema>;
