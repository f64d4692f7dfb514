import { mkdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "../core/atomic-write.ts";
import { z } from "zod";
import { FileError, InputError } from "../core/errors.ts";

export const SHARD_FORMAT = "avocado-shards/1";

/** One training sequence: token ids and a loss mask (true where the token is a target). */
export interface TrainingSequence {
  tokens: readonly number[];
  mask: readonly boolean[];
}

export interface ShardIndex {
  format: typeof SHARD_FORMAT;
  vocabularySize: number;
  sequences: number;
  tokens: number;
  targetTokens: number;
  maxLength: number;
  /** The tokenizer the ids belong to: family and trimmed → real id map (becomes avocado-model.json). */
  tokenizer?: { family: string; fullIds: number[] };
}

const shardIndexSchema = z.object({
  format: z.literal(SHARD_FORMAT),
  vocabularySize: z.number().int().positive(),
  sequences: z.number().int().nonnegative(),
  tokens: z.number().int().nonnegative(),
  targetTokens: z.number().int().nonnegative(),
  maxLength: z.number().int().nonnegative(),
  tokenizer: z.object({ family: z.string(), fullIds: z.array(z.number().int().nonnegative()) }).optional(),
});

/** Reads and validates a shards folder's `index.json`. */
export async function readShardIndex(folder: string): Promise<ShardIndex> {
  const path = join(folder, "index.json");
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
    throw new FileError(path, missing ? "is missing (not a shards folder)" : "is not valid JSON", { cause: error });
  }
  const parsed = shardIndexSchema.safeParse(raw);
  if (!parsed.success)
    throw new FileError(
      path,
      `is not a shard index: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  return parsed.data;
}

/**
 * Writes token-id shards for the trainer: `tokens.bin` (uint32 LE), `mask.bin`
 * (uint8), `offsets.bin` (uint64 LE, N+1) and `index.json`. The folder is built
 * beside the target and renamed into place, so it is complete or absent.
 */
export async function writeShards(
  folder: string,
  vocabularySize: number,
  sequences: readonly TrainingSequence[],
  tokenizer?: ShardIndex["tokenizer"],
  /** More files for the folder (the KD sidecar, kd-shards.ts), written before it is renamed into place. */
  sidecar: Record<string, Uint8Array> = {},
): Promise<ShardIndex> {
  const total = sequences.reduce((sum, s) => sum + s.tokens.length, 0);
  const tokens = new Uint32Array(total);
  const mask = new Uint8Array(total);
  const offsets = new BigUint64Array(sequences.length + 1);
  let position = 0;
  let targetTokens = 0;
  let maxLength = 0;
  sequences.forEach((sequence, index) => {
    if (sequence.tokens.length !== sequence.mask.length)
      throw new InputError(
        `sequence ${index}: ${sequence.tokens.length} tokens but ${sequence.mask.length} mask entries`,
      );
    if (sequence.tokens.length < 2) throw new InputError(`sequence ${index}: needs at least 2 tokens`);
    offsets[index] = BigInt(position);
    sequence.tokens.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocabularySize)
        throw new InputError(`sequence ${index}: token ${id} is outside the vocabulary of ${vocabularySize}`);
      tokens[position + i] = id;
      if (sequence.mask[i]) {
        mask[position + i] = 1;
        targetTokens++;
      }
    });
    position += sequence.tokens.length;
    maxLength = Math.max(maxLength, sequence.tokens.length);
  });
  offsets[sequences.length] = BigInt(position);
  const index: ShardIndex = {
    format: SHARD_FORMAT,
    vocabularySize,
    sequences: sequences.length,
    tokens: total,
    targetTokens,
    maxLength,
    tokenizer,
  };
  const staging = `${folder}.${process.pid}.staging`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await writeFileAtomic(join(staging, "tokens.bin"), new Uint8Array(tokens.buffer));
  await writeFileAtomic(join(staging, "mask.bin"), mask);
  await writeFileAtomic(join(staging, "offsets.bin"), new Uint8Array(offsets.buffer));
  for (const [name, bytes] of Object.entries(sidecar)) await writeFileAtomic(join(staging, name), bytes);
  await writeJsonAtomic(join(staging, "index.json"), index);
  await rm(folder, { recursive: true, force: true });
  await rename(staging, folder);
  return index;
}
