import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { FileError, InputError } from "../errors.ts";
import { configSchema, type AvocadoConfig } from "./schema.ts";

export const CONFIG_FILE = "avocado.yaml";

function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return `${typeof value} ${JSON.stringify(value)}`;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let node: unknown = root;
  for (const key of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** Turns zod issues into one message naming the file, the key path, what was expected and found. */
export function formatIssues(file: string, raw: unknown, issues: readonly z.core.$ZodIssue[]): string {
  const lines = issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join(".") : "(top level)";
    if (issue.code === "unrecognized_keys") {
      const keys = (issue as { keys: string[] }).keys;
      return `  ${path}: unknown key${keys.length > 1 ? "s" : ""} ${keys.map((k) => `'${k}'`).join(", ")} (typo?)`;
    }
    const found = describeValue(valueAt(raw, issue.path));
    return `  ${path}: ${issue.message} (found ${found})`;
  });
  return `${file} is not a valid Avocado config:\n${lines.join("\n")}`;
}

export function parseConfig(text: string, file: string): AvocadoConfig {
  const document = parseDocument(text, { prettyErrors: true });
  if (document.errors.length > 0) {
    const first = document.errors[0];
    throw new InputError(`${file} is not valid YAML: ${first?.message ?? "parse error"}`);
  }
  const raw: unknown = document.toJS() ?? {};
  const result = configSchema.safeParse(raw);
  if (!result.success) throw new InputError(formatIssues(file, raw, result.error.issues));
  return result.data;
}

/** Loads `avocado.yaml` (or the given file); a missing default file means the embedded defaults. */
export async function loadConfig(
  file?: string,
  cwd = process.cwd(),
): Promise<{ config: AvocadoConfig; file: string | null }> {
  const path = resolve(cwd, file ?? CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" && file === undefined) {
      return { config: configSchema.parse({}), file: null };
    }
    throw new FileError(path, "cannot be read", { cause: error });
  }
  return { config: parseConfig(text, path), file: path };
}
