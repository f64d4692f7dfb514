import type { IncomingHttpHeaders } from "node:http";
import type { Dispatcher } from "undici";
import type { Cancel } from "../core/cancel.ts";
import { ModelError } from "../core/model-error.ts";
import type { OpenAiClient } from "./client.ts";
import { SseError, SseFeed } from "./sse.ts";

/** Of an error answer, only the start is read (for its message). */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/**
 * What both of the client's dispatch handlers share: the cancellation (the
 * handler is its listener), the status, Retry-After and Location, an error
 * answer read only for its message, and failures as ModelErrors. Classes, not
 * closures: nothing is allocated per request beyond the handler and the body's chunks.
 */
export abstract class ClientHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private status = 0;
  private retryAfter: string | null = null;
  private location: string | null = null;
  private started = false;
  private errorBody = "";

  constructor(
    protected readonly client: OpenAiClient,
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
    const header = (name: string) => (typeof headers[name] === "string" ? (headers[name] as string) : null);
    this.retryAfter = header("retry-after");
    this.location = header("location");
    if (statusCode < 300 && Number(headers["content-length"] ?? 0) > this.client.maxResponseBytes)
      controller.abort(this.client.tooLarge(this.path));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.status < 300) return this.data(controller, chunk);
    // An error answer (or a redirect, which is not followed) is read only for its message.
    if (this.errorBody.length > MAX_ERROR_BODY_BYTES)
      return controller.abort(new Error("the error body is read no further"));
    this.errorBody += chunk.toString("utf8");
  }

  onResponseEnd(): void {
    this.cancel?.unlisten(this);
    if (this.status >= 300)
      return this.reject(
        this.client.statusError(this.path, this.status, this.errorBody, this.retryAfter, this.location),
      );
    this.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    // An error answer whose body was cut short (by us or the server): its status says enough.
    if (this.started && this.status >= 300 && !(error instanceof ModelError) && !this.cancel?.aborted)
      return this.onResponseEnd();
    this.fail(error);
  }

  fail(error: unknown): void {
    this.cancel?.unlisten(this);
    this.reject(this.client.failure(error, this.path, this.cancel, this.started));
  }
}

/** A whole answer, read as text (at most the client's maxResponseBytes). */
export class TextResponseHandler extends ClientHandler {
  private size = 0;
  private readonly chunks: Buffer[] = [];

  constructor(
    client: OpenAiClient,
    path: string,
    cancel: Cancel | undefined,
    private readonly resolve: (text: string) => void,
    reject: (error: ModelError) => void,
  ) {
    super(client, path, cancel, reject);
  }

  protected data(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.size += chunk.length;
    if (this.size > this.client.maxResponseBytes) return controller.abort(this.client.tooLarge(this.path));
    this.chunks.push(chunk);
  }

  protected end(): void {
    this.resolve(
      this.chunks.length === 1 ? this.chunks[0]!.toString("utf8") : Buffer.concat(this.chunks).toString("utf8"),
    );
  }
}

/** A streamed answer: chunks go straight into the event parser. */
export class StreamHandler extends ClientHandler {
  private readonly feed: SseFeed;
  /** Resolved at [DONE]; whether the response itself has ended. */
  private finished = false;
  private ended = false;

  constructor(
    client: OpenAiClient,
    path: string,
    cancel: Cancel | undefined,
    onData: (data: string) => void,
    private readonly resolve: () => void,
    reject: (error: ModelError) => void,
  ) {
    super(client, path, cancel, reject);
    this.feed = new SseFeed(client.maxResponseBytes, onData);
  }

  protected data(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    try {
      this.feed.push(chunk);
    } catch (error) {
      // Not an event stream, too large, or an event its reader refused (a ModelError).
      return controller.abort(error instanceof SseError ? this.client.sseFailure(this.path, error) : (error as Error));
    }
    if (!this.feed.done || this.finished) return;
    // Done at [DONE]. A server that then keeps its response open loses the connection (at the end of this turn: a
    // normal one has ended by then).
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
