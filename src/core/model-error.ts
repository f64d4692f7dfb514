import { AvocadoError } from "./errors.ts";

/**
 * What went wrong talking to a teacher. The scheduler retries by kind (and only
 * the scheduler retries): `retryable` kinds are transient.
 */
export const MODEL_ERROR_KINDS = {
  unreachable: { retryable: true, description: "the server could not be reached (refused, DNS, reset)" },
  tls: { retryable: false, description: "the TLS handshake failed (certificate, protocol)" },
  timeout: { retryable: true, description: "no complete answer within the request timeout" },
  "rate-limited": { retryable: true, description: "the server answered 429" },
  overloaded: { retryable: true, description: "the server answered 503 / 529 or said it is overloaded" },
  server: { retryable: true, description: "the server answered 5xx" },
  auth: { retryable: false, description: "the server refused the credentials (401/403)" },
  "bad-request": { retryable: false, description: "the server refused the request (4xx)" },
  "bad-response": { retryable: false, description: "the body is not the documented JSON" },
  "truncated-stream": { retryable: true, description: "the event stream ended before its final event" },
  "family-mismatch": {
    retryable: false,
    description: "the model's output or template belongs to another family than declared",
  },
  unsupported: {
    retryable: false,
    description: "the teacher's engine cannot do this (e.g. scoring over llama.cpp server)",
  },
  "circuit-open": { retryable: false, description: "the circuit breaker is open after repeated failures" },
  aborted: { retryable: false, description: "the caller cancelled the request" },
  engine: { retryable: false, description: "the in-process engine failed" },
} as const;

export type ModelErrorKind = keyof typeof MODEL_ERROR_KINDS;

export class ModelError extends AvocadoError {
  readonly kind: ModelErrorKind;
  readonly teacher: string;
  readonly status: number | undefined;
  /** From a Retry-After header, in milliseconds. */
  readonly retryAfterMs: number | undefined;
  constructor(
    teacher: string,
    kind: ModelErrorKind,
    message: string,
    options: { cause?: unknown; status?: number; retryAfterMs?: number } = {},
  ) {
    super(`teacher_${kind.replace("-", "_")}`, `teacher '${teacher}': ${message}`, { cause: options.cause });
    this.kind = kind;
    this.teacher = teacher;
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
  }
  get retryable(): boolean {
    return MODEL_ERROR_KINDS[this.kind].retryable;
  }
}

/** Retry-After is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** The kind of failure an HTTP status means, for every OpenAI-compatible client in the project. */
export function kindForStatus(status: number): ModelErrorKind {
  if (status === 429) return "rate-limited";
  if (status === 503 || status === 529) return "overloaded";
  if (status === 401 || status === 403) return "auth";
  if (status === 408) return "timeout";
  return status >= 500 ? "server" : "bad-request";
}
