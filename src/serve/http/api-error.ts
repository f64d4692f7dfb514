import { AvocadoError } from "../../core/errors.ts";

/** OpenAI error types by status, as the official API and its clients expect them. */
const TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  402: "insufficient_quota",
  403: "permission_error",
  404: "not_found_error",
  408: "invalid_request_error",
  413: "invalid_request_error",
  415: "invalid_request_error",
  422: "invalid_request_error",
  431: "invalid_request_error",
  429: "rate_limit_error",
  500: "server_error",
  502: "server_error",
  503: "server_error",
};

/** An error the API answers with: status, OpenAI error body, optional Retry-After. */
export class ApiError extends AvocadoError {
  constructor(
    readonly status: number,
    message: string,
    readonly options: { code?: string; param?: string | null; retryAfterSeconds?: number } = {},
  ) {
    super(options.code ?? "api_error", message);
  }
  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return {
      error: {
        message: this.message,
        type: TYPES[this.status] ?? "server_error",
        param: this.options.param ?? null,
        code: this.options.code ?? null,
      },
    };
  }
}
