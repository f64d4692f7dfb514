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

  /**
   * A whole JSON response, checked against its documented schema. On undici's
   * dispatch API: the body's chunks are gathered as they come, without the
   * readable stream `request` builds around them (on this path, a sixth of a
   * pass-through proxy's CPU per request).
   */
  async json<T extends z.ZodType>(method: "GET" | "POST", path: string, body: unknown, signal: AbortSignal | undefined, schema: T): Promise<z.infer<T>> {
    const response = await this.fetchText(method, path, body, signal);
    if (response.status >= 400) {
      let detail = response.text.slice(0, 2048);
      try {
        detail = errorBodyMessage(JSON.parse(detail)) ?? detail;
      } catch {
        // not JSON
      }
      throw this.error(kindForStatus(response.status), `${this.origin}${path} answered ${response.status}: ${detail.slice(0, 300)}`, { status: response.status, retryAfterMs: parseRetryAfter(response.retryAfter) });
    }
    let value: unknown;
    try {
      value = JSON.parse(response.text);
    } catch {
      throw this.error("bad-response", `${this.origin}${path}: the body is not JSON`);
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw this.error("bad-response", `${this.origin}${path}: not the documented format (${parsed.error.issues[0]?.message})`);
    return parsed.data;
  }

  /** One request whose whole body is read as text (at most MAX_BODY_BYTES); failures are TeacherErrors. */
  private fetchText(method: "GET" | "POST", path: string, body: unknown, signal: AbortSignal | undefined): Promise<{ status: number; retryAfter: string | null; text: string }> {
    return new Promise((resolve, reject) => {
      const fail = (error: unknown, started: boolean) => {
        signal?.removeEventListener("abort", onAbort);
        if (error instanceof TeacherError) return reject(error);
        if (signal?.aborted) {
          const timedOut = signal.reason instanceof DOMException && signal.reason.name === "TimeoutError";
          return reject(this.error(timedOut ? "timeout" : "aborted", `${this.origin}: ${timedOut ? "timed out" : "cancelled"}`, { cause: error }));
        }
        if ((error as { code?: string }).code === "UND_ERR_RES_EXCEEDED_MAX_SIZE") return reject(this.tooLarge(path));
        if (started) return reject(this.error("truncated-stream", `${this.origin}${path}: the response broke off (${errorMessage(error)})`, { cause: error }));
        reject(this.error("unreachable", `${this.origin}: cannot reach the upstream (${(error as { code?: string }).code ?? errorMessage(error)})`, { cause: error }));
      };
      let controller: { abort(reason: Error): void } | undefined;
      const onAbort = () => controller?.abort(signal!.reason instanceof Error ? signal!.reason : new Error("aborted"));
      if (signal?.aborted) return fail(signal.reason, false);
      signal?.addEventListener("abort", onAbort, { once: true });
      let status = 0;
      let retryAfter: string | null = null;
      let started = false;
      let size = 0;
      const chunks: Buffer[] = [];
      this.pool.dispatch(
        { path: `${this.base}${path}`, method, headers: body === undefined ? {} : { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) },
        {
          onRequestStart: (requestController) => {
            controller = requestController;
            // Cancelled while it waited for a connection.
            if (signal?.aborted) onAbort();
          },
          onResponseStart: (requestController, statusCode, headers) => {
            status = statusCode;
            started = true;
            const header = headers["retry-after"];
            retryAfter = typeof header === "string" ? header : null;
            if (Number(headers["content-length"] ?? 0) > MAX_BODY_BYTES) requestController.abort(this.tooLarge(path));
          },
          onResponseData: (requestController, chunk) => {
            size += chunk.length;
            // An error body is read only for its message.
            if (size > MAX_BODY_BYTES || (status >= 400 && size > 64 * 1024)) {
              if (status < 400) return requestController.abort(this.tooLarge(path));
              return requestController.abort(new Error("error body too long"));
            }
            chunks.push(chunk);
          },
          onResponseEnd: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve({ status, retryAfter, text: chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8") });
          },
          onResponseError: (_requestController, error) => {
            // An error answer whose body we stopped reading: its status says enough.
            if (status >= 400 && !(error instanceof TeacherError) && !signal?.aborted && started) {
              signal?.removeEventListener("abort", onAbort);
              return resolve({ status, retryAfter, text: Buffer.concat(chunks).toString("utf8") });
            }
            fail(error, started);
          },
        },
      );
    });
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
