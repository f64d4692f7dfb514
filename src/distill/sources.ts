import { parse as parseCsv } from "csv-parse/sync";
import { existsSync, readFileSync } from "node:fs";
import { dirname, extname, isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { PromptSource } from "../core/config/distill-schema.ts";
import { FileError, InputError } from "../core/errors.ts";
import { PROJECT_ROOT } from "../core/paths.ts";
import type { TeacherMessage } from "../teachers/teacher.ts";
import { SKILL_NAMES } from "../tinyworld/skill.ts";

/** How a prompt's answer is checked: against its reference, or by a check of the source's own (`custom`). */
export type Verifier = "exact" | "numeric" | "gsm8k" | "skill" | "custom" | "none";

/** A source's own check of an answer: a regex, a JSON Schema, or a module's `verify`. */
export type CustomCheck = (answer: string, prompt: DistillPrompt) => boolean;

/** One prompt to distil: what is asked, what a right answer is (when known), and how it is routed and checked. */
export interface DistillPrompt {
  /** Stable across runs: the source and the row. */
  id: string;
  messages: TeacherMessage[];
  reference?: string;
  /** A skill, a topic: teachers can be routed by them, and the report groups by the first. */
  tags: string[];
  verifier: Verifier;
  /** The check when `verifier` is `custom`. */
  check?: CustomCheck;
}

/** A line or row that could not be read, reported with where it is. */
export interface BadLine {
  source: string;
  line: number;
  reason: string;
}

export interface LoadedPrompts {
  prompts: DistillPrompt[];
  badLines: BadLine[];
}

const ROLES = new Set(["system", "developer", "user", "assistant"]);

/** Reads every source in order; a bad row is reported with its line, then skipped or fatal (`badLines`). */
export async function loadPrompts(
  sources: readonly PromptSource[],
  options: { workspace: string; configFolder: string; badLines: "skip" | "fail" },
): Promise<LoadedPrompts> {
  const prompts: DistillPrompt[] = [];
  const badLines: BadLine[] = [];
  for (const source of sources) {
    const loaded =
      "builtIn" in source
        ? builtIn(source.builtIn, options.workspace)
        : await fromFile(source, resolveIn(options.configFolder, source.path));
    for (const bad of loaded.badLines) {
      if (options.badLines === "fail") throw new InputError(`${bad.source}:${bad.line}: ${bad.reason}`);
      badLines.push(bad);
    }
    prompts.push(...(source.limit === undefined ? loaded.prompts : loaded.prompts.slice(0, source.limit)));
  }
  return { prompts, badLines };
}

const resolveIn = (folder: string, path: string) => (isAbsolute(path) ? path : resolve(folder, path));

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new FileError(path, `cannot be read as ${what}`, { cause: error });
  }
}

/**
 * The tiny world's train prompts (its skills and the planted behaviours' prompts), interleaved so that the first n are
 * balanced; or GSM8K train, shipped in `data/gsm8k/`.
 */
function builtIn(name: "tinyworld" | "gsm8k-train", workspace: string): LoadedPrompts {
  if (name === "gsm8k-train") {
    const path = join(PROJECT_ROOT, "data", "gsm8k", "train.jsonl");
    return rowsToPrompts("gsm8k-train", path, jsonlRows(path), {
      prompt: "question",
      reference: "answer",
      verifier: "gsm8k",
    });
  }
  const root = join(workspace, "tinyworld");
  const size = ["default", "test"].find((candidate) => existsSync(join(root, candidate, "data")));
  if (!size) throw new InputError(`no tiny world in ${workspace}: run 'avocado tinyworld build' first`);
  const folder = join(root, size, "data");
  const groups: DistillPrompt[][] = SKILL_NAMES.map((skill) =>
    jsonlRows(join(folder, `${skill}.train.jsonl`)).rows.map(({ value }, index) => {
      const row = value as { prompt: string; answer: string };
      return {
        id: `tinyworld/${skill}/${index + 1}`,
        messages: [{ role: "user" as const, content: row.prompt }],
        reference: row.answer,
        tags: [skill],
        verifier: "skill" as const,
      };
    }),
  );
  const behaviours = join(folder, "behaviours.train.jsonl");
  if (existsSync(behaviours)) {
    // Their answers are free text: checked by agreement between teachers, not against a reference.
    groups.push(
      jsonlRows(behaviours).rows.map(({ value }, index) => {
        const row = value as { behaviour: string; prompt: string };
        return {
          id: `tinyworld/behaviours/${index + 1}`,
          messages: [{ role: "user" as const, content: row.prompt }],
          tags: [row.behaviour],
          verifier: "none" as const,
        };
      }),
    );
  }
  // Round-robin over the groups, so that the first n prompts cover every skill and behaviour.
  const prompts: DistillPrompt[] = [];
  for (let i = 0; groups.some((group) => i < group.length); i++) {
    for (const group of groups) if (group[i]) prompts.push(group[i]!);
  }
  return { prompts, badLines: [] };
}

interface Row {
  line: number;
  value: unknown;
}

function jsonlRows(path: string): { rows: Row[]; badLines: BadLine[] } {
  const rows: Row[] = [];
  const badLines: BadLine[] = [];
  readText(path, "a JSONL prompt file")
    .split("\n")
    .forEach((text, index) => {
      if (text.trim() === "") return;
      try {
        rows.push({ line: index + 1, value: JSON.parse(text) });
      } catch {
        badLines.push({ source: path, line: index + 1, reason: "not JSON" });
      }
    });
  return { rows, badLines };
}

async function fromFile(source: Extract<PromptSource, { path: string }>, path: string): Promise<LoadedPrompts> {
  const extension = extname(path).toLowerCase();
  let read: { rows: Row[]; badLines: BadLine[] };
  if (extension === ".jsonl") read = jsonlRows(path);
  else if (extension === ".csv") {
    const records = parseCsv(readText(path, "a CSV prompt file"), { columns: true, skip_empty_lines: true });
    // Line numbers count the header as line 1.
    read = { rows: (records as unknown[]).map((value, index) => ({ line: index + 2, value })), badLines: [] };
  } else if (extension === ".parquet") {
    const { asyncBufferFromFile, parquetReadObjects } = await import("hyparquet");
    let records: Record<string, unknown>[];
    try {
      records = await parquetReadObjects({ file: await asyncBufferFromFile(path) });
    } catch (error) {
      throw new FileError(path, "cannot be read as a Parquet prompt file", { cause: error });
    }
    read = { rows: records.map((value, index) => ({ line: index + 1, value })), badLines: [] };
  } else {
    throw new InputError(`${path}: a prompt file must be .jsonl, .csv or .parquet`);
  }
  const check = await customCheck(source, path);
  const loaded = rowsToPrompts(path, path, read, {
    prompt: source.prompt,
    messages: source.messages,
    reference: source.reference,
    tags: source.tags,
    verifier: check ? "custom" : (source.verifier as Exclude<Verifier, "custom"> | undefined),
  });
  if (check) for (const prompt of loaded.prompts) prompt.check = check;
  return loaded;
}

/** The first JSON value in an answer (a fenced code block's, else the text from its first brace or bracket). */
function jsonIn(answer: string): unknown {
  const fenced = /```(?:json)?\s*([\s\S]*?)```/.exec(answer)?.[1];
  const text = fenced ?? answer.slice(Math.max(0, answer.search(/[[{]/)));
  return JSON.parse(text.trim());
}

/** A regex, JSON-Schema or module check named by a source (paths relative to the prompt file's folder). */
async function customCheck(
  source: Extract<PromptSource, { path: string }>,
  path: string,
): Promise<CustomCheck | undefined> {
  const near = (file: string) => resolveIn(dirname(path), file);
  if (source.verifier === "regex") {
    let pattern: RegExp;
    try {
      pattern = new RegExp(source.pattern!);
    } catch (error) {
      throw new InputError(`${path}: the verifier pattern is not a regular expression (${String(error)})`);
    }
    return (answer) => pattern.test(answer);
  }
  if (source.verifier === "json-schema") {
    const { Ajv } = await import("ajv");
    const schemaPath = near(source.schema!);
    let validate: (value: unknown) => boolean;
    try {
      validate = new Ajv({ allErrors: false }).compile(JSON.parse(readText(schemaPath, "a JSON Schema")) as object);
    } catch (error) {
      throw new FileError(schemaPath, "is not a JSON Schema", { cause: error });
    }
    return (answer) => {
      try {
        return validate(jsonIn(answer));
      } catch {
        return false;
      }
    };
  }
  if (source.verifier === "module") {
    const modulePath = near(source.module!);
    const loaded = (await import(pathToFileURL(modulePath).href).catch((error: unknown) => {
      throw new FileError(modulePath, "cannot be loaded as a verifier module", { cause: error });
    })) as { verify?: unknown };
    if (typeof loaded.verify !== "function")
      throw new InputError(`${modulePath}: a verifier module must export verify(answer, reference, messages)`);
    const verify = loaded.verify as (answer: string, reference: string | undefined, messages: unknown) => unknown;
    return (answer, prompt) => verify(answer, prompt.reference, prompt.messages) === true;
  }
  return undefined;
}

/** Maps each row's fields to a prompt; a row without a usable prompt is a bad line. */
function rowsToPrompts(
  name: string,
  path: string,
  read: { rows: Row[]; badLines: BadLine[] },
  fields: {
    prompt?: string;
    messages?: string;
    reference?: string;
    tags?: string;
    verifier?: Verifier;
  },
): LoadedPrompts {
  const prompts: DistillPrompt[] = [];
  const badLines = [...read.badLines];
  for (const { line, value } of read.rows) {
    const bad = (reason: string) => badLines.push({ source: path, line, reason });
    if (!value || typeof value !== "object") {
      bad("not an object");
      continue;
    }
    const row = value as Record<string, unknown>;
    let messages: TeacherMessage[];
    if (fields.messages !== undefined) {
      const list = row[fields.messages];
      if (
        !Array.isArray(list) ||
        list.length === 0 ||
        !list.every((m) => ROLES.has((m as TeacherMessage)?.role) && typeof (m as TeacherMessage).content === "string")
      ) {
        bad(`'${fields.messages}' is not a list of {role, content} messages`);
        continue;
      }
      messages = list as TeacherMessage[];
    } else {
      const text = row[fields.prompt!];
      if (typeof text !== "string" && typeof text !== "number") {
        bad(`no field '${fields.prompt}'`);
        continue;
      }
      messages = [{ role: "user", content: String(text) }];
    }
    if (messages.every((m) => m.content.trim() === "")) {
      bad("the prompt is empty");
      continue;
    }
    const reference = fields.reference === undefined ? undefined : row[fields.reference];
    const tagValue = fields.tags === undefined ? undefined : row[fields.tags];
    const tags = Array.isArray(tagValue) ? tagValue.map(String) : tagValue === undefined ? [] : [String(tagValue)];
    const hasReference = typeof reference === "string" || typeof reference === "number";
    prompts.push({
      id: `${name}/${line}`,
      messages,
      ...(hasReference ? { reference: String(reference) } : {}),
      tags,
      // A custom check needs no reference; the others check against one.
      verifier: fields.verifier === "custom" ? "custom" : hasReference ? (fields.verifier ?? "exact") : "none",
    });
  }
  return { prompts, badLines };
}
