import { Ajv } from "ajv";
import { InputError } from "../../core/errors.ts";
import type { ServedModel } from "../models/served-model.ts";
import { ApiError } from "./api-error.ts";
import type { z } from "zod";
import { unsupportedParameter, type ChatRequest, type CompletionRequest } from "./request-schemas.ts";

/**
 * A request body checked against its schema: parameters not implemented are 422, invalid values 400 naming the field.
 */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  if (body === undefined || body === null || typeof body !== "object")
    throw new ApiError(400, "the body must be a JSON object", { code: "invalid_body" });
  const unsupported = unsupportedParameter(body as Record<string, unknown>);
  if (unsupported)
    throw new ApiError(422, unsupported.message, { code: "unsupported_parameter", param: unsupported.param });
  const result = schema.safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const param = issue.path.join(".") || null;
    throw new ApiError(400, `${param ?? "body"}: ${issue.message}`, { code: "invalid_value", param });
  }
  return result.data;
}

/**
 * Refuses (400) a request with more than one Authorization header. Node keeps
 * only the first of several; a proxy in front may keep another, so two
 * credentials are refused rather than one of them chosen.
 */
export function assertSingleCredential(rawHeaders: readonly string[]): void {
  let seen = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 13 && name.toLowerCase() === "authorization" && ++seen > 1) {
      throw new ApiError(400, "the request has more than one Authorization header; send one", {
        code: "ambiguous_credentials",
      });
    }
  }
}

/**
 * The completion budget asked for, under whichever name it came (the error names
 * that one): `max_completion_tokens` and the older `max_tokens` must agree.
 */
export function maxTokensOf(
  body: ChatRequest | CompletionRequest,
  chat: ChatRequest | undefined,
  model: ServedModel,
): number {
  const completion = chat?.max_completion_tokens ?? undefined;
  const legacy = body.max_tokens ?? undefined;
  if (completion !== undefined && legacy !== undefined && completion !== legacy) {
    throw new ApiError(
      400,
      `max_completion_tokens (${completion}) and max_tokens (${legacy}) disagree; send one of them`,
      { code: "conflicting_parameters", param: "max_tokens" },
    );
  }
  const param = completion !== undefined ? "max_completion_tokens" : "max_tokens";
  const asked = completion ?? legacy ?? model.config.maxTokens;
  if (asked > model.config.maxTokens) {
    throw new ApiError(400, `${param} is ${asked}; ${model.config.name} generates at most ${model.config.maxTokens}`, {
      code: "max_tokens_too_large",
      param,
    });
  }
  return asked;
}

/** UTF-8 bytes of the text a prompt is made of (its template's markup aside). */
export function promptBytes(request: {
  prompt?: string | undefined;
  messages?: readonly { content: string }[] | undefined;
}): number {
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
    throw new InputError(
      `the JSON schema is not valid: ${issue ? `${issue.instancePath || "/"} ${issue.message ?? "is invalid"}` : "it does not match the JSON Schema meta-schema"}`,
    );
  }
}
