import { copyFile, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { CHAT_FORMATS } from "../chat/chat-format.ts";
import { writeJsonAtomic } from "../core/atomic-write.ts";
import type { Architecture } from "../core/config/schema.ts";
import { FileError } from "../core/errors.ts";
import { tokenizerMetadata } from "../tokenizers/gguf-metadata.ts";
import { referenceTokenizer } from "../tokenizers/index.ts";
import { TOKENIZER_FAMILIES, type TokenizerFamily } from "../core/family.ts";
import { TrimmedVocabulary } from "../tokenizers/trim.ts";
import type { TensorEncoding } from "./gguf-writer.ts";
import { hfTokenizerConfig, hfTokenizerJson } from "./hf-tokenizer.ts";
import { writeQwen3Gguf } from "./qwen3-gguf.ts";
import { readSafetensors } from "./safetensors.ts";

/** `avocado-model.json`: what a weights folder needs beside config.json to be exported. */
export const modelDescriptorSchema = z.object({
  name: z.string().min(1),
  family: z.enum(TOKENIZER_FAMILIES),
  /** Trimmed id → the family's real id. */
  fullIds: z.array(z.number().int().nonnegative()),
});
export type ModelDescriptor = z.infer<typeof modelDescriptorSchema>;

const hfConfigSchema = z.object({
  model_type: z.literal("qwen3"),
  vocab_size: z.number().int(),
  hidden_size: z.number().int(),
  intermediate_size: z.number().int(),
  num_hidden_layers: z.number().int(),
  num_attention_heads: z.number().int(),
  num_key_value_heads: z.number().int(),
  head_dim: z.number().int(),
  max_position_embeddings: z.number().int(),
  rope_theta: z.number(),
  rms_norm_eps: z.number(),
  tie_word_embeddings: z.boolean(),
});

async function readJson<T>(path: string, schema: z.ZodType<T>): Promise<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new FileError(path, (error as NodeJS.ErrnoException).code === "ENOENT" ? "is missing" : "is not valid JSON", {
      cause: error,
    });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success)
    throw new FileError(
      path,
      `is not valid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  return parsed.data;
}

export function ggufFileName(encoding: TensorEncoding): string {
  return encoding === "f32" ? "model.gguf" : `model.${encoding}.gguf`;
}

export interface ExportResult {
  folder: string;
  files: string[];
}

/**
 * Exports a trained weights folder (config.json + model.safetensors +
 * avocado-model.json) to the Hugging Face layout (servable by vLLM) and to GGUF
 * in the requested encodings (servable by llama.cpp / node-llama-cpp / Ollama).
 */
export async function exportModel(options: {
  source: string;
  out: string;
  encodings: TensorEncoding[];
  descriptor?: ModelDescriptor;
}): Promise<ExportResult> {
  const { source, out } = options;
  const descriptor = options.descriptor ?? (await readJson(join(source, "avocado-model.json"), modelDescriptorSchema));
  const config = await readJson(join(source, "config.json"), hfConfigSchema);
  if (config.vocab_size !== descriptor.fullIds.length) {
    throw new FileError(
      join(source, "config.json"),
      `vocab_size ${config.vocab_size} does not match the tokenizer map's ${descriptor.fullIds.length} tokens`,
    );
  }
  const architecture: Architecture = {
    layers: config.num_hidden_layers,
    hidden: config.hidden_size,
    heads: config.num_attention_heads,
    kvHeads: config.num_key_value_heads,
    headDim: config.head_dim,
    ffn: config.intermediate_size,
    context: config.max_position_embeddings,
    ropeTheta: config.rope_theta,
    rmsNormEps: config.rms_norm_eps,
    tieEmbeddings: config.tie_word_embeddings,
  };
  const family: TokenizerFamily = descriptor.family;
  const vocabulary = new TrimmedVocabulary(referenceTokenizer(family), descriptor.fullIds);
  const format = CHAT_FORMATS[family];
  const weightsPath = join(source, "model.safetensors");
  const { tensors } = await readSafetensors(weightsPath);
  const files: string[] = [];

  await mkdir(out, { recursive: true });
  if (source !== out) {
    await copyFile(weightsPath, join(out, "model.safetensors"));
    await copyFile(join(source, "config.json"), join(out, "config.json"));
    files.push("model.safetensors", "config.json");
  }
  await writeJsonAtomic(join(out, "avocado-model.json"), descriptor);
  await writeJsonAtomic(join(out, "tokenizer.json"), hfTokenizerJson(vocabulary));
  await writeJsonAtomic(join(out, "tokenizer_config.json"), hfTokenizerConfig(vocabulary, format.chatTemplate));
  await writeJsonAtomic(join(out, "generation_config.json"), {
    bos_token_id: vocabulary.role("bos") ?? null,
    eos_token_id: vocabulary.role("eos") ?? null,
    pad_token_id: vocabulary.role("pad") ?? null,
    do_sample: false,
  });
  files.push("avocado-model.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json");
  const metadata = tokenizerMetadata(vocabulary, format.chatTemplate);
  for (const encoding of options.encodings) {
    const name = ggufFileName(encoding);
    await writeQwen3Gguf({
      path: join(out, name),
      name: descriptor.name,
      architecture,
      weights: tensors,
      encoding,
      tokenizer: metadata,
      source: weightsPath,
    });
    files.push(name);
  }
  return { folder: out, files };
}
