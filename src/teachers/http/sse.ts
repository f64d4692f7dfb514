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
 * The `data` of each server-sent event of an OpenAI-style stream, until its
 * `[DONE]` event. Throws SseError when the body is larger than `maxBytes`, is
 * not an event stream, or ends before `[DONE]`; errors of the body itself
 * (a reset connection, an abort) pass through.
 */
export async function* sseData(body: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<string> {
  const pending: EventSourceMessage[] = [];
  let parseError: string | undefined;
  const parser = createParser({ onEvent: (event) => pending.push(event), onError: (error) => (parseError = error.message) });
  const decoder = new TextDecoder("utf-8");
  let received = 0;
  for await (const chunk of body) {
    received += chunk.byteLength;
    if (received > maxBytes) throw new SseError("too-large", `the stream is larger than ${maxBytes} bytes`);
    parser.feed(decoder.decode(chunk, { stream: true }));
    if (parseError) throw new SseError("malformed", `the event stream is malformed (${parseError})`);
    while (pending.length > 0) {
      const event = pending.shift()!;
      if (event.data === "[DONE]") return;
      yield event.data;
    }
  }
  throw new SseError("no-done", "the event stream ended before its [DONE] event");
}
