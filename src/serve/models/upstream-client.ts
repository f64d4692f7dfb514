import { Pool } from "undici";
import type { z } from "zod";
import { errorMessage } from "../../core/errors.ts";
import { errorBodyMessage } from "../../teachers/http/protocol.ts";
import { SseError, sseData } from "../../teachers/http/sse.ts";
import { kindForStatus, parseRetryAfter, TeacherError, type TeacherErrorKind } from "../../teachers/teacher-error.ts";

const MAX_BODY_BYTES = 16 * 1024 * 1024;
/** A whole response, stream or not (a long reasoning stream runs to a few MB). */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/**
 * HTTP to one upstream inference server on a keep-alive undici Pool: the
 * gateway's hot path (undici's request API costs a fraction of fetch's
 * per-request overhead). Failures become typed TeacherErrors.
 */
export class UpstreamClient {
  private readonly pool: Pool;
  private readonly base: string;
  readonly origin: string;

  constructor(
    url: string,
    private readonly label: string,
  ) {
    const parsed = new URL(url);
    this.origin = parsed.origin;
    this.base = parsed.pathname.replace(/\/+$/, "");
    this.pool = new Pool(this.origin, { connections: 128, pipelining: 1, keepAliveTimeout: 30_000, maxResponseSize: MAX_RESPONSE_BYTES });
  }

  private error(kind: TeacherErrorKind, message: string, options: { cause?: unknown; status?: number; retryAfterMs?: number } = {}): TeacherError {
    return new TeacherError(this.label, kind, message, options);
  }

  private tooLarge(path: string): TeacherError {
    return this.error("bad-response", `${this.origin}${path}: the response is larger than ${MAX_BODY_BYTES} bytes`);
  }

  private async send(method: "GET" | "POST", path: string, body: unknown, signal: AbortSignal | undefined) {
    let response;
    try {
      response = await this.pool.request({
        path: `${this.base}${path}`,
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (signal?.aborted) {
        const timedOut = signal.reason instanceof DOMException && signal.reason.name === "TimeoutError";
        throw this.error(timedOut ? "timeout" : "aborted", `${this.origin}: ${timedOut ? "timed out" : "cancelled"}`, { cause: error });
      }
      throw this.error("unreachable", `${this.origin}: cannot reach the upstream (${(error as { code?: string }).code ?? errorMessage(error)})`, { cause: error });
    }
    if (response.statusCode >= 400) {
      const text = (await response.body.text().catch(() => "")).slice(0, 2048);
      let detail = text;
      try {
        detail = errorBodyMessage(JSON.parse(text)) ?? text;
      } catch {
        // not JSON
      }
      const status = response.statusCode;
      const retryAfter = response.headers["retry-after"];
      throw this.error(kindForStatus(status), `${this.origin}${path} answered ${status}: ${detail.slice(0, 300)}`, { status, retryAfterMs: parseRetryAfter(typeof retryAfter === "string" ? retryAfter : null) });
    }
    return response;
  }

  async json<T extends z.ZodType>(method: "GET" | "POST", path: string, body: unknown, signal: AbortSignal | undefined, schema: T): Promise<z.infer<T>> {
    const response = await this.send(method, path, body, signal);
    if (Number(response.headers["content-length"] ?? 0) > MAX_BODY_BYTES) {
      response.body.destroy();
      throw this.tooLarge(path);
    }
    let text: string;
    try {
      text = await response.body.text();
    } catch (error) {
      if ((error as { code?: string }).code === "UND_ERR_RES_EXCEEDED_MAX_SIZE") throw this.tooLarge(path);
      throw this.error("truncated-stream", `${this.origin}${path}: the response broke off (${errorMessage(error)})`, { cause: error });
    }
    if (text.length > MAX_BODY_BYTES) throw this.tooLarge(path);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw this.error("bad-response", `${this.origin}${path}: the body is not JSON`);
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw this.error("bad-response", `${this.origin}${path}: not the documented format (${parsed.error.issues[0]?.message})`);
    return parsed.data;
  }

  /** The `data` of each server-sent event until [DONE]; a body that ends first is a truncated stream. */
  async *events(path: string, body: unknown, signal: AbortSignal | undefined): AsyncGenerator<string> {
    const response = await this.send("POST", path, body, signal);
    try {
      yield* sseData(response.body, MAX_BODY_BYTES);
    } catch (error) {
      if (error instanceof SseError) throw this.error(error.reason === "no-done" ? "truncated-stream" : "bad-response", `${this.origin}${path}: ${error.message}`);
      throw this.error(signal?.aborted ? "aborted" : "truncated-stream", `${this.origin}${path}: the stream broke off (${errorMessage(error)})`, { cause: error });
    } finally {
      response.body.destroy();
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
