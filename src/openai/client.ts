import { Pool } from "undici";
import type { z } from "zod";
import { AsyncQueue } from "../core/async-queue.ts";
import { Cancel } from "../core/cancel.ts";
import { errorMessage } from "../core/errors.ts";
import { kindForStatus, ModelError, parseRetryAfter, type ModelErrorKind } from "../core/model-error.ts";
import { NETWORK_ERRNO } from "../core/network-errors.ts";
import { StreamHandler, TextResponseHandler, type ClientHandler } from "./client-handlers.ts";
import { errorBodyMessage } from "./protocol.ts";
import type { SseError } from "./sse.ts";

/** undici's own codes for a connection that could not be made or was lost before an answer. */
const UNDICI_UNREACHABLE = new Set(["UND_ERR_SOCKET", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_CLOSED"]);

export interface OpenAiClientOptions {
  /** Who calls, for error messages: a teacher's name, "upstream <model>". */
  label: string;
  /** The server's OpenAI base URL (`http://host:8000/v1`); credentials in it are sent as Basic auth. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer`. */
  apiKey?: string;
  headers?: Record<string, string>;
  /** The most a whole answer, or a whole stream, may be (default 16 MiB). */
  maxResponseBytes?: number;
  /** The most the server may take to send its answer's headers, and between two chunks of its body (default 300 s). */
  timeoutMs?: number;
}

/** Every cause in an error chain (undici wraps the socket's error, sometimes twice). */
function causes(error: unknown): { code?: string; message: string }[] {
  const chain: { code?: string; message: string }[] = [];
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    const e = current as { code?: unknown; message?: unknown; cause?: unknown };
    chain.push({
      code: typeof e.code === "string" ? e.code : undefined,
      message: typeof e.message === "string" ? e.message : String(current),
    });
    current = e.cause;
  }
  return chain;
}

/** A caller's AbortSignal (a teacher's attempt, a health check's timeout) as a Cancel; the gateway passes its own. */
const cancelOf = (cancel: Cancel | AbortSignal | undefined): Cancel | undefined =>
  cancel === undefined || cancel instanceof Cancel ? cancel : Cancel.from(cancel);

/**
 * The one client for OpenAI-compatible servers: the HTTP teachers' and the
 * paid API's upstream pools. A keep-alive undici Pool driven through its
 * dispatch API (a fraction of fetch's per-request cost: bodies are gathered,
 * and streams fed to the event parser, chunk by chunk). Bounded bodies, and
 * every failure a typed ModelError whose message never carries the API key,
 * a secret header or URL credentials.
 */
export class OpenAiClient {
  private readonly pool: Pool;
  private readonly base: string;
  private readonly secrets: string[];
  private readonly headers: Record<string, string>;
  readonly origin: string;
  /** The base URL without credentials, for messages. */
  readonly displayUrl: string;
  readonly maxResponseBytes: number;
  readonly timeoutMs: number;

  constructor(private readonly options: OpenAiClientOptions) {
    const url = new URL(options.baseUrl.replace(/\/+$/, ""));
    this.origin = url.origin;
    this.base = url.pathname.replace(/\/+$/, "");
    this.maxResponseBytes = options.maxResponseBytes ?? 16 * 1024 * 1024;
    this.timeoutMs = options.timeoutMs ?? 300_000;
    this.headers = Object.fromEntries(
      Object.entries(options.headers ?? {}).map(([name, value]) => [name.toLowerCase(), value]),
    );
    if (options.apiKey) this.headers.authorization = `Bearer ${options.apiKey}`;
    if (url.username || url.password)
      this.headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString("base64")}`;
    const secrets = [
      options.apiKey,
      url.password,
      url.username,
      ...Object.entries(options.headers ?? {})
        .filter(([name]) => /auth|key|token|secret|cookie/i.test(name))
        .map(([, value]) => value),
    ];
    this.secrets = secrets
      .filter((s): s is string => typeof s === "string" && s.length >= 4)
      .sort((a, b) => b.length - a.length);
    this.displayUrl = `${this.origin}${this.base}`;
    this.pool = new Pool(this.origin, {
      connections: 128,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
  }

  /** Removes every secret (key, secret headers, URL credentials) from a text. */
  redact(text: string): string {
    let out = text;
    for (const secret of this.secrets) out = out.split(secret).join("[redacted]");
    return out;
  }

  error(
    kind: ModelErrorKind,
    message: string,
    options: { cause?: unknown; status?: number; retryAfterMs?: number } = {},
  ): ModelError {
    return new ModelError(this.options.label, kind, this.redact(message), options);
  }

  /**
   * `path` under the base URL (`/chat/completions`), or under the server root when it starts with `//` (`//tokenize`).
   */
  private pathOf(path: string): string {
    return path.startsWith("//") ? path.slice(1) : `${this.base}${path}`;
  }

  /** `POST http://host/v1/chat/completions`, for messages. */
  where(path: string): string {
    return `${this.origin}${this.pathOf(path)}`;
  }

  tooLarge(path: string): ModelError {
    return this.error(
      "bad-response",
      `${this.where(path)}: the response is larger than ${this.maxResponseBytes} bytes (maxResponseBytes)`,
    );
  }

  /** An error answer: its kind by status, with the server's own message and Retry-After. A redirect is not followed. */
  statusError(
    path: string,
    status: number,
    text: string,
    retryAfter: string | null,
    location: string | null,
  ): ModelError {
    if (status < 400)
      return this.error(
        "bad-request",
        `${this.where(path)} answered ${status}, a redirect${location ? ` to ${location}` : ""}: give the final URL as the base URL`,
        { status },
      );
    let detail = text.slice(0, 2048).trim();
    try {
      detail = errorBodyMessage(JSON.parse(detail)) ?? detail;
    } catch {
      // not JSON: keep the text
    }
    return this.error(
      kindForStatus(status),
      `${this.where(path)} answered ${status}${detail ? `: ${detail.slice(0, 300)}` : ""}`,
      { status, retryAfterMs: parseRetryAfter(retryAfter) },
    );
  }

  /**
   * What a failed request becomes: cancelled or timed out, too large, cut off after its answer started, TLS, or not
   * reached.
   */
  failure(error: unknown, path: string, cancel: Cancel | undefined, started: boolean): ModelError {
    if (error instanceof ModelError) return error;
    if (cancel?.aborted) {
      const reason = cancel.reason;
      if (reason instanceof ModelError) return reason;
      const timedOut = reason instanceof DOMException && reason.name === "TimeoutError";
      return this.error(
        timedOut ? "timeout" : "aborted",
        `${this.where(path)}: ${timedOut ? "timed out" : `cancelled (${errorMessage(reason)})`}`,
        { cause: error },
      );
    }
    const chain = causes(error);
    const codes = chain.map((c) => c.code ?? "");
    if (codes.includes("UND_ERR_RES_EXCEEDED_MAX_SIZE")) return this.tooLarge(path);
    // A hung server (no answer, or a stream that stopped): not unreachable, so no failover (it may have been
    // generating).
    if (codes.includes("UND_ERR_HEADERS_TIMEOUT") || codes.includes("UND_ERR_BODY_TIMEOUT")) {
      return this.error(
        "timeout",
        `${this.where(path)}: ${codes.includes("UND_ERR_HEADERS_TIMEOUT") ? "no answer" : "nothing more"} within ${this.timeoutMs} ms`,
        { cause: error },
      );
    }
    const detail = chain.at(-1)?.message ?? errorMessage(error);
    if (
      codes.some(
        (code) =>
          code.startsWith("ERR_SSL") || code.includes("CERT") || code.startsWith("ERR_TLS") || code === "EPROTO",
      ) ||
      chain.some((c) => /\bSSL\b|\bTLS\b|certificate/i.test(c.message))
    ) {
      return this.error("tls", `${this.where(path)}: TLS failed (${detail})`, { cause: error });
    }
    if (started)
      return this.error("truncated-stream", `${this.where(path)}: the response broke off (${detail})`, {
        cause: error,
      });
    const known = codes.filter((code) => NETWORK_ERRNO.has(code) || UNDICI_UNREACHABLE.has(code));
    return this.error("unreachable", `${this.where(path)}: cannot reach the server (${known.join(" ← ") || detail})`, {
      cause: error,
    });
  }

  /** An event stream that is not one, or too large, or ended before [DONE]. */
  sseFailure(path: string, error: SseError): ModelError {
    return this.error(
      error.reason === "no-done" ? "truncated-stream" : "bad-response",
      `${this.where(path)}: ${error.message}${error.reason === "too-large" ? " (maxResponseBytes)" : ""}`,
    );
  }

  /** A whole JSON answer, checked against its documented schema (`what` names it in messages). */
  async json<T extends z.ZodType>(
    method: "GET" | "POST",
    path: string,
    body: unknown,
    cancel: Cancel | AbortSignal | undefined,
    schema: T,
    what = "the answer",
  ): Promise<z.infer<T>> {
    const cancellation = cancelOf(cancel);
    const text = await new Promise<string>((resolve, reject) =>
      this.dispatch(
        method,
        path,
        body,
        cancellation,
        new TextResponseHandler(this, path, cancellation, resolve, reject),
      ),
    );
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw this.error(
        "bad-response",
        `${this.where(path)}: ${what} is not JSON (${JSON.stringify(text.slice(0, 120))}${text.length > 120 ? "…" : ""})`,
      );
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const issues = parsed.error.issues
        .slice(0, 3)
        .map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
      throw this.error(
        "bad-response",
        `${this.where(path)}: ${what} is not the documented format (${issues.join("; ")})`,
      );
    }
    return parsed.data;
  }

  /**
   * A streamed answer: `onData` gets the `data` of each server-sent event as
   * it comes, until [DONE] (then this resolves). An error thrown by `onData`
   * stops the request and rejects with it; a stream that ends before [DONE]
   * is truncated.
   */
  stream(
    path: string,
    body: unknown,
    cancel: Cancel | AbortSignal | undefined,
    onData: (data: string) => void,
  ): Promise<void> {
    const cancellation = cancelOf(cancel);
    return new Promise((resolve, reject) =>
      this.dispatch(
        "POST",
        path,
        body,
        cancellation,
        new StreamHandler(this, path, cancellation, onData, resolve, reject),
      ),
    );
  }

  /** The same stream, pulled: each event's `data`, for a consumer that iterates (a teacher's stream). */
  async *events(path: string, body: unknown, signal: AbortSignal | undefined): AsyncGenerator<string> {
    const queue = new AsyncQueue<string>();
    // The request stops when the consumer does (a break, a throw): its own cancellation, fired on the way out.
    const cancel = signal ? Cancel.from(signal) : new Cancel();
    this.stream(path, body, cancel, (data) => queue.push(data)).then(
      () => queue.end(),
      (error: unknown) => queue.fail(error),
    );
    try {
      yield* queue;
    } finally {
      cancel.abort(new Error("the stream's reader stopped"));
    }
  }

  /** Sends a request to the pool, its answer to `handler` (which also listens to the cancellation). */
  private dispatch(
    method: "GET" | "POST",
    path: string,
    body: unknown,
    cancel: Cancel | undefined,
    handler: ClientHandler,
  ): void {
    if (cancel?.aborted) return handler.fail(cancel.reason);
    cancel?.listen(handler);
    const headers = body === undefined ? this.headers : { ...this.headers, "content-type": "application/json" };
    this.pool.dispatch(
      { path: this.pathOf(path), method, headers, body: body === undefined ? undefined : JSON.stringify(body) },
      handler,
    );
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
