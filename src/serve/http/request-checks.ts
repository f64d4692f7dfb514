import { Ajv } from "ajv";
import { InputError } from "../../core/errors.ts";
import type { ServedModel } from "../models/served-model.ts";
import { ApiError } from "./api-error.ts";
import type { ChatRequest, CompletionRequest } from "./request-schemas.ts";

/**
 * Whether the request carries at most one Authorization header. Node keeps only
 * the first of several; a proxy in front may keep another, so two credentials
 * are refused (400) rather than one of them chosen.
 */
export function singleCredential(rawHeaders: readonly string[]): boolean {
  let seen = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 13 && name.toLowerCase() === "authorization" && ++seen > 1) {
      throw new ApiError(400, "the request has more than one Authorization header; send one", { code: "ambiguous_credentials" });
    }
  }
  return true;
}

/**
 * The completion budget asked for, under whichever name it came (the error names
 * that one): `max_completion_tokens` and the older `max_tokens` must agree.
 */
export function maxTokensOf(body: ChatRequest | CompletionRequest, chat: ChatRequest | undefined, model: ServedModel): number {
  const completion = chat?.max_completion_tokens ?? undefined;
  const legacy = body.max_tokens ?? undefined;
  if (completion !== undefined && legacy !== undefined && completion !== legacy) {
    throw new ApiError(400, `max_completion_tokens (${completion}) and max_tokens (${legacy}) disagree; send one of them`, { code: "conflicting_parameters", param: "max_tokens" });
  }
  const param = completion !== undefined ? "max_completion_tokens" : "max_tokens";
  const asked = completion ?? legacy ?? model.config.maxTokens;
  if (asked > model.config.maxTokens) {
    throw new ApiError(400, `${param} is ${asked}; ${model.config.name} generates at most ${model.config.maxTokens}`, { code: "max_tokens_too_large", param });
  }
  return asked;
}

/** UTF-8 bytes of the text a prompt is made of (its template's markup aside). */
export function promptBytes(request: { prompt?: string | undefined; messages?: readonly { content: string }[] | undefined }): number {
  if (request.prompt !== undefined) return Buffer.byteLength(request.prompt);
  let bytes = 0;
  for (const message of request.messages ?? []) bytes += Buffer.byteLength(message.content);
  return bytes;
}

// Meta-schema validation only (no compiling): keywords it does not know are let through, as OpenAI's subset needs.
const ajv = new Ajv({ strict: false, validateFormats: false });

/** A response_format's JSON schema must itself be a valid JSON Schema (`{"type": "banana"}` is not). */
export function checkJsonSchema(schema: Record<string, unknown>): void {
  const { $schema: _declared, ...rest } = schema;
  if (!ajv.validateSchema(rest)) {
    const issue = ajv.errors?.[0];
    throw new InputError(`the JSON schema is not valid: ${issue ? `${issue.instancePath || "/"} ${issue.message ?? "is invalid"}` : "it does not match the JSON Schema meta-schema"}`);
  }
}
