import type { Duplex } from "node:stream";
import { STATUS_CODES } from "node:http";
import { ContextLengthError, errorMessage, InputError } from "../../core/errors.ts";
import { newId } from "../../core/ids.ts";
import { ModelError } from "../../core/model-error.ts";
import { LimiterUnavailableError } from "../limits/limiter.ts";
import { storeUnavailable } from "../store/database.ts";
import { InsufficientCreditError } from "../store/ledger.ts";
import { ApiError } from "./api-error.ts";

/**
 * A request the HTTP parser refused before any route saw it (too slow, headers
 * too large, not HTTP): answered in the OpenAI error shape, and the connection closed.
 */
export function clientError(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  const apiError =
    error.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? new ApiError(408, "the request was not received in time", { code: "request_timeout" })
      : error.code === "HPE_HEADER_OVERFLOW"
        ? new ApiError(431, "the request's headers are too large", { code: "headers_too_large" })
        : new ApiError(400, "the request is not valid HTTP", { code: "bad_http" });
  const body = JSON.stringify(apiError.body());
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${apiError.status} ${STATUS_CODES[apiError.status]}\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${newId("req")}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/** What a failed generation is to the client: by the error's type, never by its message. */
export function generationError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof ModelError) {
    if (error.kind === "bad-request")
      return new ApiError(422, error.message.replace(/^teacher '[^']*': /, ""), { code: "unprocessable" });
    if (error.kind === "timeout")
      return new ApiError(504, "the model did not answer in time", { code: "upstream_timeout" });
    // Every upstream busy: the client may retry (when the upstream said, after as long as it said).
    if (error.kind === "overloaded" || error.kind === "rate-limited") {
      return new ApiError(503, "the model is busy; retry shortly", {
        code: "model_overloaded",
        retryAfterSeconds: Math.max(1, Math.ceil((error.retryAfterMs ?? 1_000) / 1_000)),
      });
    }
    return new ApiError(502, "the model's server failed", { code: "upstream_error" });
  }
  if (error instanceof ContextLengthError) return contextLengthError(error);
  if (error instanceof InputError) return new ApiError(400, error.message, { code: "invalid_request" });
  return new ApiError(500, "the model failed", { code: "model_error" });
}

export function contextLengthError(error: ContextLengthError, param: "messages" | "prompt" = "messages"): ApiError {
  return new ApiError(400, error.message, { code: "context_length_exceeded", param });
}

/** What any error a route throws is to the client (the OpenAI error shape); what the client must not see is logged. */
export function apiErrorOf(
  error: unknown,
  bodyLimitBytes: number,
  log: (level: "warn" | "error", event: string, message: string) => void,
): ApiError {
  let apiError: ApiError;
  if (error instanceof ApiError) apiError = error;
  else if (error instanceof InsufficientCreditError)
    apiError = new ApiError(402, error.message, { code: "insufficient_credit" });
  else if (storeUnavailable(error)) {
    log("warn", "api.store_unavailable", errorMessage(error));
    apiError = new ApiError(503, "the key and credit store is unavailable; nothing was charged", {
      code: "ledger_unavailable",
      retryAfterSeconds: 1,
    });
  } else if (error instanceof LimiterUnavailableError)
    apiError = new ApiError(503, "the rate limits cannot be checked right now; nothing was charged", {
      code: "limits_unavailable",
      retryAfterSeconds: 1,
    });
  else if (error instanceof InputError) apiError = new ApiError(400, error.message, { code: "invalid_request" });
  else {
    const status = (error as { statusCode?: number }).statusCode;
    const code = (error as { code?: string }).code;
    if (code === "FST_ERR_CTP_BODY_TOO_LARGE")
      apiError = new ApiError(413, `the body is larger than ${bodyLimitBytes} bytes`, { code: "body_too_large" });
    else if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE")
      apiError = new ApiError(415, "send the body as application/json", { code: "unsupported_media_type" });
    else if (status !== undefined && status >= 400 && status < 500)
      apiError = new ApiError(
        status,
        status === 400 ? `the body is not valid JSON (${errorMessage(error)})` : errorMessage(error),
        { code: "invalid_request" },
      );
    else {
      log("error", "api.internal_error", errorMessage(error));
      apiError = new ApiError(500, "internal error", { code: "internal_error" });
    }
  }
  return apiError;
}
