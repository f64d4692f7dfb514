import type { FastifyReply } from "fastify";
import type { ServeConfig } from "../core/config/serve-schema.ts";
import type { Logger } from "../core/logger.ts";
import { generationError } from "./http/error-mapping.ts";
import { chatLogprobs, legacyLogprobs, usageOf } from "./http/render.ts";
import type { Lease } from "./limits/limiter.ts";
import type { ApiMetrics } from "./metrics.ts";
import { partialOf, type GenerationRequest, type GenerationResult, type ServedModel } from "./models/served-model.ts";

type Delta = Parameters<NonNullable<GenerationRequest["onDelta"]>>[0];

/** One streamed request: what it streams, where to, and what it reports to. */
export interface StreamOptions {
  route: "chat" | "completions";
  id: string;
  model: ServedModel;
  generation: GenerationRequest;
  n: number;
  promptTokens: number;
  includeUsage: boolean;
  reply: FastifyReply;
  lease: Lease;
  /** performance.now() when the request arrived (time to first token). */
  started: number;
  /** Filled with what each choice generated, also when the stream fails (to be charged). */
  results: GenerationResult[];
  /** The hold's commit: nothing is sent before it. */
  committed: Promise<void>;
  config: Pick<ServeConfig, "streamBufferBytes">;
  logger: Logger;
  metrics: ApiMetrics;
}

/**
 * A streamed answer of `n` choices, generated concurrently: each event names
 * its choice's index, and each choice ends with its own finish event as soon
 * as it is done. If one fails, the others stop, and what every choice had
 * streamed is in `results` (to be charged).
 */
export async function streamResponse(stream: StreamOptions): Promise<void> {
  const {
    route,
    id,
    model,
    generation,
    n,
    promptTokens,
    reply,
    lease,
    started,
    results,
    committed,
    config,
    logger,
    metrics,
  } = stream;
  const raw = reply.raw;
  const created = Math.floor(Date.now() / 1000);
  const object = route === "chat" ? "chat.completion.chunk" : "text_completion";
  // The events of one turn of the event loop (an upstream chunk often holds several) go out in one write, at its end.
  // Once the generations are over (`closing`), what is left waits for the [DONE] written after settlement: one write
  // with it.
  let corked = false;
  let closing = false;
  const send = (choices: unknown[], usage?: unknown) => {
    if (raw.destroyed) return;
    if (!corked) {
      corked = true;
      raw.cork();
      setImmediate(() => {
        if (closing) return;
        corked = false;
        raw.uncork();
      });
    }
    // A client that does not read (what waits for it is past the stream's high-water mark, then past the bound): its
    // connection is closed (the generation stops, and is charged what it generated).
    if (
      !raw.write(`data: ${JSON.stringify({ id, object, created, model: model.config.name, choices, usage })}\n\n`) &&
      raw.writableLength > config.streamBufferBytes &&
      !raw.destroyed
    ) {
      logger.log("warn", "api.stream_not_read", { requestId: id, bufferedBytes: raw.writableLength });
      metrics.limitHits.inc({ limit: "stream_buffer" });
      raw.destroy();
    }
  };
  let first = true;
  // Set at the first failure: what the others generate after it is neither sent nor charged (what was charged is what
  // the client received).
  let stopped = false;
  const streamed = new Array<number>(n).fill(0);
  const emit = (index: number, delta: Delta) => {
    if (stopped) return;
    if (first) {
      metrics.firstToken.observe((performance.now() - started) / 1000);
      first = false;
    }
    streamed[index]! += delta.tokens;
    lease.addTokens(delta.tokens);
    if (route === "chat")
      send([
        {
          index,
          delta: delta.kind === "reasoning" ? { reasoning_content: delta.text } : { content: delta.text },
          logprobs: null,
          finish_reason: null,
        },
      ]);
    else send([{ index, text: delta.text, logprobs: null, finish_reason: null }]);
  };
  const finish = (index: number, result: GenerationResult) => {
    if (stopped) return;
    const logprobs = result.logprobs
      ? route === "chat"
        ? chatLogprobs(result.logprobs)
        : legacyLogprobs(result.logprobs)
      : null;
    if (route === "chat") send([{ index, delta: {}, logprobs, finish_reason: result.finishReason }]);
    else send([{ index, text: "", logprobs, finish_reason: result.finishReason }]);
  };
  // The generations start while the hold commits; what comes before it has waits, in order.
  let early: { index: number; delta?: Delta; result?: GenerationResult }[] | undefined = [];
  // One choice failing stops the others (several choices share a signal of their own).
  const stopAll = n > 1 ? generation.cancel.child() : undefined;
  const cancel = stopAll ?? generation.cancel;
  const finished = new Array<GenerationResult | undefined>(n);
  // What a choice that failed had produced, as its model counted it (an upstream's usage or tokenizer).
  const partials = new Array<GenerationResult | undefined>(n);
  const generations = Array.from({ length: n }, (_, index) => {
    // One choice generates from the request's own object; several each from a copy, with their own callback.
    const choice = n === 1 ? generation : { ...generation };
    choice.cancel = cancel;
    choice.onDelta = (delta) => (early ? early.push({ index, delta }) : emit(index, delta));
    return model.generate(choice).then(
      (result) => {
        finished[index] = result;
        if (early) early.push({ index, result });
        else finish(index, result);
        return result;
      },
      (error: unknown) => {
        partials[index] = partialOf(error);
        throw error;
      },
    );
  });
  const all = Promise.all(generations);
  all.catch(() => stopAll?.abort(new Error("another choice failed")));
  await committed;
  reply.hijack();
  raw.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-request-id": id,
  });
  if (route === "chat")
    for (let index = 0; index < n; index++)
      send([{ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]);
  for (const event of early) {
    if (event.delta) emit(event.index, event.delta);
    else finish(event.index, event.result!);
  }
  early = undefined;
  try {
    results.push(...(await all));
    closing = true;
    if (stream.includeUsage) send([], usageOf(results));
  } catch (error) {
    stopped = true;
    closing = true;
    // What every choice streamed is charged: the finished ones as they reported, the others as far as they got (nothing
    // if they sent nothing), by their model's count where it gave one, else by the tokens their deltas carried.
    for (let index = 0; index < n; index++) {
      const done = finished[index];
      const partial = partials[index];
      if (done) results.push(done);
      else if (streamed[index]! === 0) continue;
      else if (partial)
        results.push({
          ...partial,
          promptTokens: partial.promptTokens || promptTokens,
          completionTokens: Math.min(partial.completionTokens, generation.maxTokens),
        });
      else
        results.push({
          content: "",
          reasoning: "",
          finishReason: "stop",
          promptTokens,
          completionTokens: Math.min(streamed[index]!, generation.maxTokens),
        });
    }
    // Headers are sent: the stream ends with an error event in the OpenAI shape (then [DONE], after settlement).
    if (!raw.destroyed) raw.write(`data: ${JSON.stringify(generationError(error).body())}\n\n`);
    throw error;
  }
}
