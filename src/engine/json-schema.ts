import type { LlamaGrammar } from "node-llama-cpp";
import { errorMessage, InputError } from "../core/errors.ts";
import { sharedLlama } from "./llama.ts";

/** What llama.cpp's JSON-schema grammar (through node-llama-cpp) enforces. */
const ENFORCED = new Set([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "minProperties",
  "maxProperties",
  "items",
  "prefixItems",
  "minItems",
  "maxItems",
  "enum",
  "const",
  "oneOf",
  "anyOf",
  "format",
  "minLength",
  "maxLength",
  "$defs",
  "$ref",
]);
/** The string formats the grammar enforces. */
const FORMATS = new Set(["date-time", "date", "time"]);
/** Keywords that only describe, never constrain: dropped. */
const ANNOTATIONS = new Set([
  "title",
  "description",
  "default",
  "examples",
  "$schema",
  "$id",
  "$comment",
  "deprecated",
  "readOnly",
  "writeOnly",
]);

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * A JSON schema (OpenAI's `response_format.json_schema.schema`) as the
 * grammar takes it, or an InputError naming the first keyword it could not
 * enforce: a structured output that silently ignored `pattern` or `minimum`
 * would not be one. `anyOf` becomes the grammar's alternation (`oneOf`, which
 * a grammar cannot make exclusive anyway); annotations are dropped.
 */
export function grammarSchema(schema: unknown, path = "schema"): Record<string, unknown> {
  if (!isObject(schema)) throw new InputError(`${path} must be a JSON schema object`);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (ANNOTATIONS.has(key)) continue;
    if (!ENFORCED.has(key))
      throw new InputError(`${path}.${key} cannot be enforced by the grammar (supported: ${[...ENFORCED].join(", ")})`);
    const at = `${path}.${key}`;
    switch (key) {
      case "properties":
      case "$defs":
        if (!isObject(value)) throw new InputError(`${at} must be an object of schemas`);
        out[key] = Object.fromEntries(
          Object.entries(value).map(([name, sub]) => [name, grammarSchema(sub, `${at}.${name}`)]),
        );
        break;
      case "items":
      case "additionalProperties":
        out[key] = typeof value === "boolean" ? value : grammarSchema(value, at);
        break;
      case "prefixItems":
      case "oneOf":
      case "anyOf":
        if (!Array.isArray(value) || value.length === 0)
          throw new InputError(`${at} must be a non-empty array of schemas`);
        out[key === "anyOf" ? "oneOf" : key] = value.map((sub, i) => grammarSchema(sub, `${at}[${i}]`));
        break;
      case "format":
        if (!FORMATS.has(value as string))
          throw new InputError(
            `${at} "${String(value)}" cannot be enforced by the grammar (supported: ${[...FORMATS].join(", ")})`,
          );
        out[key] = value;
        break;
      default:
        out[key] = value;
    }
  }
  return out;
}

/** Compiled grammars of JSON schemas, by schema (the most recent 256). */
export class SchemaGrammars {
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private readonly keys = new WeakMap<object, string>();

  async get(schema: Record<string, unknown>): Promise<LlamaGrammar> {
    // One request asks for its schema's grammar more than once (checked before its hold, then per choice): its key is
    // worked out once per schema object (a request's parsed body, never changed after).
    let key = this.keys.get(schema);
    if (key === undefined) {
      key = JSON.stringify(schema);
      this.keys.set(schema, key);
    }
    let grammar = this.grammars.get(key);
    if (!grammar) {
      const enforced = grammarSchema(schema);
      grammar = sharedLlama().then((llama) =>
        llama.createGrammarForJsonSchema(enforced as Parameters<typeof llama.createGrammarForJsonSchema>[0]),
      );
      if (this.grammars.size >= 256) this.grammars.clear();
      this.grammars.set(key, grammar);
    }
    try {
      return await grammar;
    } catch (error) {
      this.grammars.delete(key);
      throw new InputError(`the JSON schema cannot be made a grammar (${errorMessage(error)})`);
    }
  }
}
