import { createParser, type EventSourceMessage } from "eventsource-parser";

/** Why an event stream could not be read to its end. */
export class SseError extends Error {
  constructor(
    readonly reason: "too-large" | "malformed" | "no-done",
    message: string,
  ) {
    super(message);
  }
}

/**
 * An OpenAI-style event stream, fed chunk by chunk: `onData` gets the `data`
 * of each event until the `[DONE]` event (what follows it is ignored).
 * `push` throws SseError when the stream grows larger than `maxBytes` or is
 * not an event stream; `end` throws when it ended before `[DONE]`.
 */
export class SseFeed {
  private readonly parser;
  private readonly decoder = new TextDecoder("utf-8");
  private received = 0;
  private parseError: string | undefined;
  /** Whether the `[DONE]` event has come. */
  done = false;

  constructor(
    private readonly maxBytes: number,
    private readonly onData: (data: string) => void,
  ) {
    this.parser = createParser({
      onEvent: (event) => this.event(event),
      onError: (error) => (this.parseError ??= error.message),
    });
  }

  push(chunk: Uint8Array): void {
    if (this.done) return;
    this.received += chunk.byteLength;
    if (this.received > this.maxBytes)
      throw new SseError("too-large", `the stream is larger than ${this.maxBytes} bytes`);
    this.parser.feed(this.decoder.decode(chunk, { stream: true }));
    if (this.parseError) throw new SseError("malformed", `the event stream is malformed (${this.parseError})`);
  }

  end(): void {
    if (!this.done) throw new SseError("no-done", "the event stream ended before its [DONE] event");
  }

  private event(event: EventSourceMessage): void {
    if (this.done) return;
    if (event.data === "[DONE]") this.done = true;
    else this.onData(event.data);
  }
}

/**
 * The `data` of each server-sent event of an OpenAI-style stream, until its
 * `[DONE]` event. Throws SseError when the body is larger than `maxBytes`, is
 * not an event stream, or ends before `[DONE]`; errors of the body itself
 * (a reset connection, an abort) pass through.
 */
export async function* sseData(body: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<string> {
  const pending: string[] = [];
  const feed = new SseFeed(maxBytes, (data) => pending.push(data));
  for await (const chunk of body) {
    feed.push(chunk);
    yield* pending.splice(0);
    if (feed.done) return;
  }
  feed.end();
}
