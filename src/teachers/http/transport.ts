import type { z } from "zod";
import { errorMessage } from "../../core/errors.ts";
import { kindForStatus, parseRetryAfter, ModelError, type ModelErrorKind } from "../../core/model-error.ts";
import { errorBodyMessage } from "../../openai/protocol.ts";
import { SseError, sseData } from "../../openai/sse.ts";

const UNREACHABLE_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EPIPE", "UND_ERR_SOCKET", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_CLOSED"]);
const ERROR_SNIPPET_BYTES = 2048;

export interface TransportOptions {
  teacher: string;
  baseUrl: string;
  apiKey: string | undefined;
  headers: Record<string, string>;
  maxResponseBytes: number;
}

/** Every cause in an error chain (fetch wraps the socket error in `cause`, sometimes twice). */
function causes(error: unknown): { code?: string; message: string; name?: string }[] {
  const chain: { code?: string; message: string; name?: string }[] = [];
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    const e = current as { code?: unknown; message?: unknown; name?: unknown; cause?: unknown };
    chain.push({ code: typeof e.code === "string" ? e.code : undefined, message: typeof e.message === "string" ? e.message : String(current), name: typeof e.name === "string" ? e.name : undefined });
    current = e.cause;
  }
  return chain;
}

/**
 * HTTP to one OpenAI-compatible server: JSON requests, bounded response bodies,
 * SSE streams, and every failure turned into a typed ModelError whose message
 * never carries the API key, a secret header or URL credentials.
 */
export class Transport {
  private readonly secrets: string[];
  /** The base URL without credentials, for messages. */
  readonly displayUrl: string;
  private readonly url: URL;

  constructor(private readonly options: TransportOptions) {
    this.url = new URL(options.baseUrl.replace(/\/+$/, ""));
    const secrets = [options.apiKey, this.url.password, this.url.username, ...Object.entries(options.headers).filter(([name]) => /auth|key|token|secret|cookie/i.test(name)).map(([, value]) => value)];
    this.secrets = secrets.filter((s): s is string => typeof s === "string" && s.length >= 4).sort((a, b) => b.length - a.length);
    const display = new URL(this.url);
    display.username = "";
    display.password = "";
    this.displayUrl = display.toString().replace(/\/$/, "");
  }

  /** Removes every secret (key, secret headers, URL credentials) from a text. */
  redact(text: string): string {
    let out = text;
    for (const secret of this.secrets) out = out.split(secret).join("[redacted]");
    return out;
  }

  /** `path` under the base URL (`/chat/completions`), or under the server root when it starts with `//` (`//tokenize`). */
  endpoint(path: string): URL {
    if (path.startsWith("//")) return new URL(path.slice(1), `${this.url.origin}/`);
    return new URL(`${this.url.pathname.replace(/\/$/, "")}${path}`, this.url.origin);
  }

  private headers(json: boolean): Headers {
    const headers = new Headers(this.options.headers);
    if (json) headers.set("content-type", "application/json");
    if (this.options.apiKey) headers.set("authorization", `Bearer ${this.options.apiKey}`);
    if (this.url.username || this.url.password) {
      headers.set("authorization", `Basic ${Buffer.from(`${decodeURIComponent(this.url.username)}:${decodeURIComponent(this.url.password)}`).toString("base64")}`);
    }
    return headers;
  }

  private error(kind: ModelErrorKind, message: string, options: { cause?: unknown; status?: number; retryAfterMs?: number } = {}): ModelError {
    return new ModelError(this.options.teacher, kind, this.redact(message), options);
  }

  /** Sends a request; resolves with a 2xx response, or throws the failure's ModelError. */
  async send(method: "GET" | "POST", path: string, body: unknown, signal: AbortSignal | undefined): Promise<Response> {
    const url = this.endpoint(path);
    const where = `${method} ${this.redact(`${this.displayUrl}${url.pathname.slice(this.url.pathname.replace(/\/$/, "").length) || "/"}`)}`;
    let response: Response;
    try {
      response = await fetch(url, { method, headers: this.headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body), signal, redirect: "error" });
    } catch (error) {
      throw this.fetchError(error, where, signal);
    }
    if (response.ok) return response;
    const snippet = await this.readText(response, ERROR_SNIPPET_BYTES, signal, true).catch(() => "");
    let detail = snippet.trim();
    try {
      detail = errorBodyMessage(JSON.parse(snippet)) ?? detail;
    } catch {
      // not JSON: keep the text
    }
    const status = response.status;
    const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
    const message = `${where} answered ${status}${detail ? `: ${detail.slice(0, 300)}` : ""}`;
    throw this.error(kindForStatus(status), message, { status, retryAfterMs });
  }

  private fetchError(error: unknown, where: string, signal: AbortSignal | undefined): ModelError {
    if (signal?.aborted) return this.abortError(signal, where);
    const chain = causes(error);
    const codes = chain.map((c) => c.code ?? "");
    const detail = chain.at(-1)?.message ?? errorMessage(error);
    if (codes.some((code) => code.startsWith("ERR_SSL") || code.includes("CERT") || code.startsWith("ERR_TLS")) || chain.some((c) => /\bSSL\b|\bTLS\b|certificate/i.test(c.message))) {
      return this.error("tls", `${where}: TLS failed (${detail})`, { cause: error });
    }
    if (codes.some((code) => UNREACHABLE_CODES.has(code)) || chain.some((c) => /fetch failed|other side closed|socket/i.test(c.message))) {
      return this.error("unreachable", `${where}: cannot reach the server (${codes.filter(Boolean).join(" ← ") || detail})`, { cause: error });
    }
    return this.error("unreachable", `${where}: request failed (${detail})`, { cause: error });
  }

  abortError(signal: AbortSignal, where: string): ModelError {
    const reason: unknown = signal.reason;
    if (reason instanceof ModelError) return reason;
    const timedOut = reason instanceof DOMException && reason.name === "TimeoutError";
    return this.error(timedOut ? "timeout" : "aborted", `${where}: ${timedOut ? "timed out" : `cancelled (${errorMessage(reason)})`}`, { cause: reason });
  }

  /** The body as text, refusing more than `limit` bytes (or truncating, for error snippets). */
  async readText(response: Response, limit: number, signal: AbortSignal | undefined, truncate = false): Promise<string> {
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      for await (const chunk of response.body ?? []) {
        size += chunk.byteLength;
        if (size > limit) {
          if (truncate) {
            chunks.push(chunk.subarray(0, chunk.byteLength - (size - limit)));
            await response.body?.cancel().catch(() => undefined);
            break;
          }
          await response.body?.cancel().catch(() => undefined);
          throw this.error("bad-response", `the response is larger than ${limit} bytes (maxResponseBytes)`);
        }
        chunks.push(chunk);
      }
    } catch (error) {
      if (error instanceof ModelError) throw error;
      if (signal?.aborted) throw this.abortError(signal, "reading the response");
      throw this.error("truncated-stream", `the response body broke off (${errorMessage(error)})`, { cause: error });
    }
    return new TextDecoder("utf-8", { fatal: false }).decode(Buffer.concat(chunks));
  }

  /** A JSON body checked against its schema. */
  async json<T extends z.ZodType>(response: Response, schema: T, signal: AbortSignal | undefined, what: string): Promise<z.infer<T>> {
    const text = await this.readText(response, this.options.maxResponseBytes, signal);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw this.error("bad-response", `${what}: the body is not JSON (${JSON.stringify(text.slice(0, 120))}${text.length > 120 ? "…" : ""})`);
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw this.error("bad-response", `${what}: the JSON is not the documented format (${parsed.error.issues.slice(0, 3).map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")})`);
    return parsed.data;
  }

  /**
   * Server-sent events of a streaming response: each `data` field, until `[DONE]`.
   * Ends with a truncated-stream error when the body stops before `[DONE]`.
   */
  async *events(response: Response, signal: AbortSignal | undefined): AsyncGenerator<string> {
    const body = response.body;
    if (!body) throw this.error("bad-response", "the streaming response has no body");
    try {
      yield* sseData(body, this.options.maxResponseBytes);
    } catch (error) {
      if (error instanceof SseError) throw this.error(error.reason === "no-done" ? "truncated-stream" : "bad-response", `${error.message}${error.reason === "too-large" ? " (maxResponseBytes)" : ""}`);
      if (error instanceof ModelError) throw error;
      if (signal?.aborted) throw this.abortError(signal, "reading the stream");
      throw this.error("truncated-stream", `the event stream broke off (${errorMessage(error)})`, { cause: error });
    } finally {
      await body.cancel().catch(() => undefined);
    }
  }
}
