import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { FileError, InputError } from "../core/errors.ts";
import type { TokenizerFamily } from "../core/family.ts";
import { unpackLogprobs, type PackedToken } from "../distill/logprobs.ts";

/** One chat record of a distill run's `dataset.jsonl`, as the student reads it. */
export interface DistillRecord {
  line: number;
  system?: string;
  user: string;
  reasoning?: string;
  answer: string;
  teacher: string;
  prompt: string;
  tags: string[];
  selection: { verified?: boolean; vote?: { votes: number; of: number }; judgeScore?: number };
}

export interface RunTeacher {
  name: string;
  family: string;
  licence: unknown;
  contributed: number;
}

/** A record's teacher log-probs: the teacher's family ids, with byte offsets into the answer. */
export interface TeacherLogprobs {
  teacher: string;
  family: string;
  tokens: PackedToken[];
}

export interface DistillRunData {
  folder: string;
  configHash: string;
  records: DistillRecord[];
  teachers: RunTeacher[];
  licences: unknown[];
  /** The stored top-k (0: none), and each record's teacher log-probs where it has them. */
  k: number;
  logprobs: Map<number, TeacherLogprobs>;
  /** A digest of the dataset and the log-prob files: a training checkpoint made from other ones is not resumed. */
  digest: string;
}

const messageSchema = z.object({
  role: z.enum(["system", "user", "assistant"]),
  content: z.string(),
  reasoning_content: z.string().optional(),
});
const recordSchema = z.object({
  messages: z.array(messageSchema).min(2),
  metadata: z.object({
    prompt: z.string(),
    tags: z.array(z.string()).default([]),
    teacher: z.string(),
    selection: z
      .object({
        verified: z.boolean().optional(),
        vote: z.object({ votes: z.number(), of: z.number() }).passthrough().optional(),
        judgeScore: z.number().optional(),
      })
      .passthrough()
      .default({}),
  }),
});
const indexSchema = z.object({
  record: z.number().int().nonnegative(),
  teacher: z.string(),
  family: z.string(),
  file: z.string(),
  offset: z.number().int().nonnegative(),
  bytes: z.number().int().positive(),
});
const manifestSchema = z
  .object({
    format: z.literal("avocado-distill/1"),
    configHash: z.string(),
    records: z.number().int().nonnegative(),
    teachers: z.array(
      z.object({ name: z.string(), family: z.string(), licence: z.unknown(), contributed: z.number() }),
    ),
    licences: z.array(z.unknown()),
    logprobs: z.object({ k: z.number().int().positive() }).passthrough().optional(),
  })
  .passthrough();

function readJson(path: string): unknown {
  if (!existsSync(path)) throw new FileError(path, "is missing (not a finished distill run)");
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new FileError(path, "is not valid JSON", { cause: error });
  }
}

/**
 * Reads a finished distill run and checks that its parts belong together: the dataset has the manifest's records and
 * teachers, and every log-prob record names a dataset line of the same teacher and family.
 */
export function readDistillRun(folder: string): DistillRunData {
  const manifestPath = join(folder, "manifest.json");
  const parsed = manifestSchema.safeParse(readJson(manifestPath));
  if (!parsed.success)
    throw new FileError(
      manifestPath,
      `is not a distill manifest: ${parsed.error.issues[0]!.path.join(".")}: ${parsed.error.issues[0]!.message}`,
    );
  const manifest = parsed.data;
  const datasetPath = join(folder, "dataset.jsonl");
  if (!existsSync(datasetPath)) throw new FileError(datasetPath, "is missing (not a finished distill run)");
  const datasetText = readFileSync(datasetPath, "utf8");
  const lines = datasetText.split("\n").filter((line) => line.trim() !== "");
  const teacherNames = new Set(manifest.teachers.map((t) => t.name));
  const records = lines.map((line, index): DistillRecord => {
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch (error) {
      throw new FileError(datasetPath, `line ${index + 1} is not JSON`, { cause: error });
    }
    const record = recordSchema.safeParse(raw);
    if (!record.success)
      throw new FileError(
        datasetPath,
        `line ${index + 1} is not a chat record: ${record.error.issues[0]!.path.join(".")}: ${record.error.issues[0]!.message}`,
      );
    const { messages, metadata } = record.data;
    const assistant = messages.at(-1)!;
    const user = messages.at(-2)!;
    if (assistant.role !== "assistant" || user.role !== "user")
      throw new FileError(datasetPath, `line ${index + 1}: a record ends with a user turn and the assistant's answer`);
    if (!teacherNames.has(metadata.teacher))
      throw new InputError(
        `${datasetPath} line ${index + 1}: teacher '${metadata.teacher}' is not one of the run's (${[...teacherNames].join(", ")}): the dataset does not match the run's manifest`,
      );
    const system = messages.find((m) => m.role === "system")?.content;
    return {
      line: index,
      ...(system !== undefined ? { system } : {}),
      user: user.content,
      ...(assistant.reasoning_content ? { reasoning: assistant.reasoning_content } : {}),
      answer: assistant.content,
      teacher: metadata.teacher,
      prompt: metadata.prompt,
      tags: metadata.tags,
      selection: metadata.selection,
    };
  });
  if (records.length !== manifest.records)
    throw new InputError(
      `${datasetPath} holds ${records.length} records, its manifest says ${manifest.records}: the dataset does not match the run (edited, or from another run)`,
    );
  // What the student learns from, hashed as it is read: a checkpoint made from other data is not resumed.
  const hash = createHash("sha256").update(datasetText);
  const logprobs = manifest.logprobs ? readLogprobs(folder, records, manifest.teachers, hash) : new Map();
  return {
    folder,
    configHash: manifest.configHash,
    records,
    teachers: manifest.teachers,
    licences: manifest.licences,
    k: manifest.logprobs?.k ?? 0,
    logprobs,
    digest: hash.digest("hex"),
  };
}

function readLogprobs(
  folder: string,
  records: readonly DistillRecord[],
  teachers: readonly RunTeacher[],
  hash: ReturnType<typeof createHash>,
) {
  const indexPath = join(folder, "logprobs", "index.jsonl");
  const out: DistillRunData["logprobs"] = new Map();
  if (!existsSync(indexPath)) return out;
  const family = new Map(teachers.map((t) => [t.name, t.family]));
  const files = new Map<string, Buffer>();
  const index = readFileSync(indexPath, "utf8");
  hash.update(index);
  const rows = index.split("\n").filter((line) => line.trim() !== "");
  rows.forEach((line, n) => {
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch (error) {
      throw new FileError(indexPath, `line ${n + 1} is not JSON`, { cause: error });
    }
    const row = indexSchema.safeParse(raw);
    if (!row.success) throw new FileError(indexPath, `line ${n + 1} is not a log-prob index row`);
    const { record, teacher, file, offset, bytes } = row.data;
    const data = records[record];
    if (!data || data.teacher !== teacher)
      throw new InputError(
        `${indexPath} line ${n + 1}: record ${record} is ${data ? `${data.teacher}'s` : "not in the dataset"}, not ${teacher}'s: the log-probs do not match the dataset`,
      );
    if (family.get(teacher) !== row.data.family)
      throw new InputError(
        `${indexPath} line ${n + 1}: ${teacher} is declared ${family.get(teacher)} in the manifest, its log-probs say ${row.data.family}`,
      );
    let content = files.get(file);
    if (!content) {
      const path = join(folder, "logprobs", file);
      if (!existsSync(path)) throw new FileError(path, "is missing (named by logprobs/index.jsonl)");
      files.set(file, (content = readFileSync(path)));
      hash.update(file).update(content);
    }
    if (offset + bytes > content.length)
      throw new FileError(join(folder, "logprobs", file), `is shorter than index line ${n + 1} needs (truncated?)`);
    const tokens = unpackLogprobs(content.subarray(offset, offset + bytes));
    out.set(record, { teacher, family: row.data.family as TokenizerFamily, tokens });
  });
  return out;
}
