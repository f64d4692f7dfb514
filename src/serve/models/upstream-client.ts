import type { IncomingHttpHeaders } from "node:http";
import { Pool, type Dispatcher } from "undici";
import type { z } from "zod";
import { errorMessage } from "../../core/errors.ts";
import { errorBodyMessage } from "../../openai/protocol.ts";
import { SseError, SseFeed } from "../../openai/sse.ts";
import { kindForStatus, parseRetryAfter, ModelError, type ModelErrorKind } from "../../core/model-error.ts";
import { Cancel } from "./cancel.ts";

const MAX_BODY_BYTES = 16 * 1024 * 1024;
/** Of an error answer, only the start is read (for its message). */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** A whole response, stream or not (a long reasoning stream runs to a few MB). */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** A caller's AbortSignal (a health check's timeout, a test) as a Cancel; the gateway's own requests pass a Cancel. */
const cancelOf = (cancel: Cancel | AbortSignal | undefined): Cancel | undefined => (cancel === undefined || cancel instanceof Cancel ? cancel : Cancel.from(cancel));

/**
 * HTTP to one upstream inference server on a keep-alive undici Pool: the
 * gateway's hot path, on undici's dispatch API (a fraction of fetch's, and of
 * its own request API's, per-request overhead). Failures become typed ModelErrors.
 */
export class UpstreamClient {
  private readonly pool: Pool;
  private readonly base: string;
  readonly origin: string;

  constructor(
    url: string,
    private readonly label: string,
    /** The most the upstream may take to send its answer's headers, and between two chunks of its body. */
    private readonly timeoutMs = 300_000,
  ) {
    const parsed = new URL(url);
    this.origin = parsed.origin;
    this.base = parsed.pathname.replace(/\/+$/, "");
    this.pool = new Pool(this.origin, { connections: 128, pipelining: 1, keepAliveTimeout: 30_000, maxResponseSize: MAX_RESPONSE_BYTES, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  }

  private error(kind: ModelErrorKind, message: string, options: { cause?: unknown; status?: number; retryAfterMs?: number } = {}): ModelError {
    return new ModelError(this.label, kind, message, options);
  }

  tooLarge(path: string): ModelError {
    return this.error("bad-response", `${this.origin}${path}: the response is larger than ${MAX_BODY_BYTES} bytes`);
  }

  /** An error answer: its kind by status, with the server's own message and Retry-After. */
  statusError(path: string, status: number, text: string, retryAfter: string | null): ModelError {
    let detail = text.slice(0, 2048);
    try {
      detail = errorBodyMessage(JSON.parse(detail)) ?? detail;
    } catch {
      // not JSON
    }
    return this.error(kindForStatus(status), `${this.origin}${path} answered ${status}: ${detail.slice(0, 300)}`, { status, retryAfterMs: parseRetryAfter(retryAfter) });
  }

  /**
   * A whole JSON response, checked against its documented schema. On undici's
   * dispatch API: the body's chunks are gathered as they come, without the
   * readable stream `request` builds around them (on this path, a sixth of a
   * pass-through proxy's CPU per request).
   */
  async json<T extends z.ZodType>(method: "GET" | "POST", path: string, body: unknown, cancel: Cancel | AbortSignal | undefined, schema: T): Promise<z.infer<T>> {
    const text = await this.fetchText(method, path, body, cancelOf(cancel));
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

  /** One request whose whole body is read as text (at most MAX_BODY_BYTES); failures, error statuses included, are ModelErrors. */
  private fetchText(method: "GET" | "POST", path: string, body: unknown, cancel: Cancel | undefined): Promise<string> {
    return new Promise((resolve, reject) => this.dispatch(method, path, body, cancel, new TextResponseHandler(this, path, cancel, resolve, reject)));
  }

  /** Sends a request to the pool, its answer to `handler` (which also listens to the cancellation). */
  private dispatch(method: "GET" | "POST", path: string, body: unknown, cancel: Cancel | undefined, handler: UpstreamHandler): void {
    if (cancel?.aborted) return handler.fail(cancel.reason);
    cancel?.listen(handler);
    this.pool.dispatch({ path: `${this.base}${path}`, method, headers: body === undefined ? {} : { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) }, handler);
  }

  /** What a failed request becomes: cancelled or timed out, too large, cut off after its answer started, or not reached. */
  failure(error: unknown, path: string, cancel: Cancel | undefined, started: boolean): ModelError {
    if (error instanceof ModelError) return error;
    if (cancel?.aborted) {
      const timedOut = cancel.reason instanceof DOMException && cancel.reason.name === "TimeoutError";
      return this.error(timedOut ? "timeout" : "aborted", `${this.origin}: ${timedOut ? "timed out" : "cancelled"}`, { cause: error });
    }
    const code = (error as { code?: string }).code;
    if (code === "UND_ERR_RES_EXCEEDED_MAX_SIZE") return this.tooLarge(path);
    // A hung upstream (no answer, or a stream that stopped): not unreachable, so no failover (it may have been generating).
    if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") {
      return this.error("timeout", `${this.origin}${path}: ${code === "UND_ERR_HEADERS_TIMEOUT" ? "no answer" : "nothing more"} within ${this.timeoutMs} ms`, { cause: error });
    }
    if (started) return this.error("truncated-stream", `${this.origin}${path}: the response broke off (${errorMessage(error)})`, { cause: error });
    return this.error("unreachable", `${this.origin}: cannot reach the upstream (${code ?? errorMessage(error)})`, { cause: error });
  }

  /**
   * A streamed answer: `onData` gets the `data` of each server-sent event, as
   * it comes, until [DONE] (then this resolves). On the dispatch API too: each
   * chunk goes straight into the event parser. An error thrown by `onData`
   * stops the request and rejects with it; a stream that ends before [DONE]
   * is truncated.
   */
  stream(path: string, body: unknown, cancel: Cancel | AbortSignal | undefined, onData: (data: string) => void): Promise<void> {
    const cancellation = cancelOf(cancel);
    return new Promise((resolve, reject) => this.dispatch("POST", path, body, cancellation, new StreamHandler(this, path, cancellation, onData, resolve, reject)));
  }

  /** An event stream that is not one, or too large, or ended before [DONE]. */
  sseFailure(path: string, error: SseError): ModelError {
    return this.error(error.reason === "no-done" ? "truncated-stream" : "bad-response", `${this.origin}${path}: ${error.message}`);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

/**
 * What both of the client's dispatch handlers share: the cancellation (the handler is
 * its abort listener), the status and Retry-After, an error answer read only
 * for its message, and failures as ModelErrors. Classes, not closures:
 * nothing is allocated per request beyond the handler and the body's chunks.
 */
abstract class UpstreamHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  protected status = 0;
  private retryAfter: string | null = null;
  private started = false;
  private errorBody = "";

  constructor(
    protected readonly client: UpstreamClient,
    protected readonly path: string,
    private readonly cancel: Cancel | undefined,
    protected readonly reject: (error: ModelError) => void,
  ) {}

  /** A successful answer's body, chunk by chunk. */
  protected abstract data(controller: Dispatcher.DispatchController, chunk: Buffer): void;
  /** A successful answer's end. */
  protected abstract end(): void;

  /** The cancellation fired: stop the request (if it has not reached a connection yet, as soon as it does). */
  handleEvent(): void {
    this.controller?.abort(this.cancel!.reason instanceof Error ? this.cancel!.reason : new Error("aborted"));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.cancel?.aborted) this.handleEvent();
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.status = statusCode;
    this.started = true;
    const header = headers["retry-after"];
    this.retryAfter = typeof header === "string" ? header : null;
    if (statusCode < 400 && Number(headers["content-length"] ?? 0) > MAX_BODY_BYTES) controller.abort(this.client.tooLarge(this.path));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.status < 400) return this.data(controller, chunk);
    // An error body is read only for its message.
    if (this.errorBody.length > MAX_ERROR_BODY_BYTES) return controller.abort(new Error("the error body is read no further"));
    this.errorBody += chunk.toString("utf8");
  }

  onResponseEnd(): void {
    this.cancel?.unlisten(this);
    if (this.status >= 400) return this.reject(this.client.statusError(this.path, this.status, this.errorBody, this.retryAfter));
    this.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    // An error answer whose body was cut short (by us or the server): its status says enough.
    if (this.started && this.status >= 400 && !(error instanceof ModelError) && !this.cancel?.aborted) return this.onResponseEnd();
    this.fail(error);
  }

  fail(error: unknown): void {
    this.cancel?.unlisten(this);
    this.reject(this.client.failure(error, this.path, this.cancel, this.started));
  }
}

/** A whole answer, read as text (at most MAX_BODY_BYTES). */
class TextResponseHandler extends UpstreamHandler {
  private size = 0;
  private readonly chunks: Buffer[] = [];

  constructor(client: UpstreamClient, path: string, cancel: Cancel | undefined, private readonly resolve: (text: string) => void, reject: (error: ModelError) => void) {
    super(client, path, cancel, reject);
  }

  protected data(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.size += chunk.length;
    if (this.size > MAX_BODY_BYTES) return controller.abort(this.client.tooLarge(this.path));
    this.chunks.push(chunk);
  }

  protected end(): void {
    this.resolve(this.chunks.length === 1 ? this.chunks[0]!.toString("utf8") : Buffer.concat(this.chunks).toString("utf8"));
  }
}

/** A streamed answer: chunks go straight into the event parser. */
class StreamHandler extends UpstreamHandler {
  private readonly feed: SseFeed;
  /** Resolved at [DONE]; whether the response itself has ended. */
  private finished = false;
  private ended = false;

  constructor(client: UpstreamClient, path: string, cancel: Cancel | undefined, onData: (data: string) => void, private readonly resolve: () => void, reject: (error: ModelError) => void) {
    super(client, path, cancel, reject);
    this.feed = new SseFeed(MAX_BODY_BYTES, onData);
  }

  protected data(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    try {
      this.feed.push(chunk);
    } catch (error) {
      // Not an event stream, too large, or an event its reader refused (a ModelError).
      return controller.abort(error instanceof SseError ? this.client.sseFailure(this.path, error) : (error as Error));
    }
    if (!this.feed.done || this.finished) return;
    // Done at [DONE]. A server that then keeps its response open loses the connection (at the end of this turn: a normal one has ended by then).
    this.finished = true;
    this.resolve();
    setImmediate(() => {
      if (!this.ended) controller.abort(new Error("the answer went on after [DONE]"));
    });
  }

  protected end(): void {
    this.ended = true;
    try {
      this.feed.end();
    } catch (error) {
      return this.reject(this.client.sseFailure(this.path, error as SseError));
    }
    this.resolve();
  }
}
