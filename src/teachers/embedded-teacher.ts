import type { Family } from "../core/family.ts";
import { performance } from "node:perf_hooks";
import { CHAT_FORMATS, genericChatFormat, type ChatFormat } from "../chat/chat-format.ts";
import { genericTemplate } from "../chat/generic-template.ts";
import { AsyncQueue } from "../core/async-queue.ts";
import type { Price } from "../core/config/teacher-schema.ts";
import { AvocadoError, InputError, errorMessage } from "../core/errors.ts";
import {
  EmbeddedEngine,
  type ChatMessage,
  type ChatResult,
  type TokenLogprob as EngineLogprob,
} from "../engine/embedded-engine.ts";
import { checkGguf } from "../engine/gguf-check.ts";
import { callCost } from "./cost.ts";
import { prepareMessages } from "../chat/prepare-messages.ts";
import { familyOfTemplate, foreignFamilyIn, loadGenericTemplate, splitReasoning } from "./families.ts";
import { ModelError } from "../core/model-error.ts";
import type {
  ScoreRequest,
  ScoreResult,
  Teacher,
  TeacherCapabilities,
  TeacherEvent,
  TeacherHealth,
  TeacherRequest,
  TeacherResponse,
  TokenLogprob,
} from "./teacher.ts";

export interface EmbeddedTeacherOptions {
  name: string;
  family: Family;
  path: string;
  /** Generic family: a tokenizer_config.json whose template to use instead of the GGUF's. */
  chatTemplate?: string;
  sequences?: number;
  maxTokens?: number;
  price?: Price;
  /** F32 KV cache for faithful scores (see EmbeddedEngine). */
  kvCache?: "F16" | "F32";
}

type Metadata = Record<string, unknown>;

function ggufValue(metadata: unknown, path: string): unknown {
  let node = metadata;
  for (const key of path.split(".")) node = node && typeof node === "object" ? (node as Metadata)[key] : undefined;
  return node;
}

/** The text of the GGUF's end-of-sequence token, where it records one. */
function eosText(metadata: unknown): string {
  const id = ggufValue(metadata, "tokenizer.ggml.eos_token_id");
  const tokens = ggufValue(metadata, "tokenizer.ggml.tokens");
  return typeof id === "number" && Array.isArray(tokens) && typeof tokens[id] === "string" ? tokens[id] : "";
}

/** A GGUF teacher run in-process by node-llama-cpp (the embedded engine). */
export class EmbeddedTeacher implements Teacher {
  readonly capabilities: TeacherCapabilities;
  private constructor(
    readonly name: string,
    readonly family: Family,
    readonly engine: EmbeddedEngine,
    private readonly options: EmbeddedTeacherOptions,
    /** Trimmed tiny-world vocabularies map back to the family's real ids. */
    private readonly fullIds: readonly number[] | undefined,
  ) {
    this.capabilities = {
      streaming: true,
      logprobs: true,
      maxTopLogprobs: 20,
      score: true,
      reasoning: engine.format.reasons || family === "generic",
      tokenIds: fullIds ? "family" : "engine",
    };
  }

  /**
   * Loads the GGUF after checking that the declared family is the model's own:
   * the family recorded by our exporter, else the family of the GGUF's chat template.
   */
  static async open(options: EmbeddedTeacherOptions): Promise<EmbeddedTeacher> {
    const info = await checkGguf(options.path);
    const recorded = ggufValue(info.metadata, "avocado.tokenizer.family");
    const template = ggufValue(info.metadata, "tokenizer.chat_template");
    const actual =
      typeof recorded === "string" ? recorded : typeof template === "string" ? familyOfTemplate(template) : undefined;
    if (options.family !== "generic" && actual !== undefined && actual !== options.family) {
      throw new ModelError(
        options.name,
        "family-mismatch",
        `declared family '${options.family}', but ${options.path} is a '${actual}' model (its chat template and tokenizer)`,
      );
    }
    let format: ChatFormat;
    if (options.family === "generic") {
      if (options.chatTemplate) format = genericChatFormat(await loadGenericTemplate(options.chatTemplate));
      else if (typeof template === "string")
        format = genericChatFormat(genericTemplate(template, { bosToken: "", eosToken: eosText(info.metadata) }));
      else
        throw new InputError(
          `teacher '${options.name}': the generic family needs a chat template, and ${options.path} has none (set chatTemplate to a tokenizer_config.json)`,
        );
    } else format = CHAT_FORMATS[options.family];
    const fullIds = ggufValue(info.metadata, "avocado.tokenizer.full_ids");
    const engine = await EmbeddedEngine.load(options.path, {
      sequences: options.sequences ?? 1,
      format,
      kvCache: options.kvCache,
    });
    return new EmbeddedTeacher(
      options.name,
      options.family,
      engine,
      options,
      Array.isArray(fullIds) ? (fullIds as number[]) : undefined,
    );
  }

  async generate(request: TeacherRequest): Promise<TeacherResponse> {
    let done: TeacherResponse | undefined;
    for await (const event of this.run(request, false)) if (event.type === "done") done = event.response;
    if (!done) throw new ModelError(this.name, "engine", "generation ended without a response");
    return done;
  }

  stream(request: TeacherRequest): AsyncIterable<TeacherEvent> {
    return this.run(request, true);
  }

  private async *run(request: TeacherRequest, streaming: boolean): AsyncGenerator<TeacherEvent> {
    if (request.signal?.aborted) throw this.aborted(request.signal);
    const queue = new AsyncQueue<TeacherEvent>();
    const stop = new AbortController();
    const signal = request.signal ? AbortSignal.any([request.signal, stop.signal]) : stop.signal;
    const started = performance.now();
    const maxTokens = Math.min(
      request.maxTokens ?? this.options.maxTokens ?? 1024,
      this.options.maxTokens ?? Number.MAX_SAFE_INTEGER,
    );
    this.engine
      .chat({
        messages: this.messages(request),
        maxTokens,
        temperature: request.temperature ?? 0,
        topP: request.topP,
        seed: request.seed,
        stop: request.stop,
        thinking: request.thinking,
        reasoningEffort: request.reasoningEffort,
        topLogprobs: request.topLogprobs,
        signal,
        onChunk: streaming ? (chunk) => queue.push({ type: chunk.kind, text: chunk.text }) : undefined,
      })
      .then((result) => {
        if (result.finishReason === "abort") throw this.aborted(signal);
        queue.push({ type: "done", response: this.response(result, performance.now() - started) });
        queue.end();
      })
      .catch((error: unknown) => queue.fail(signal.aborted ? this.aborted(signal) : this.wrap(error)));
    try {
      yield* queue;
    } finally {
      stop.abort(new Error("the consumer stopped reading the stream"));
    }
  }

  async score(request: ScoreRequest): Promise<ScoreResult> {
    if (request.signal?.aborted) throw this.aborted(request.signal);
    try {
      const options = { thinking: request.thinking, reasoningEffort: request.reasoningEffort };
      const prefix = this.engine.promptTokens(this.messages(request), options);
      const continuation = this.engine.tokenize(request.continuation, true);
      if (continuation.length === 0)
        throw new ModelError(this.name, "bad-request", "the continuation to score is empty");
      const tokens = (await this.engine.score(prefix, continuation, request.topLogprobs ?? 0)).map((t) =>
        this.logprob(t),
      );
      return {
        teacher: this.name,
        tokens,
        logprob: tokens.reduce((sum, t) => sum + t.logprob, 0),
        promptTokens: prefix.length,
      };
    } catch (error) {
      throw this.wrap(error);
    }
  }

  async health(): Promise<TeacherHealth> {
    const started = performance.now();
    const tokens = this.engine.tokenize("ok");
    return { ok: tokens.length > 0, latencyMs: performance.now() - started, detail: `loaded ${this.options.path}` };
  }

  async close(): Promise<void> {
    await this.engine.dispose();
  }

  private messages(request: { messages: TeacherRequest["messages"] }): ChatMessage[] {
    return prepareMessages(this.family, request.messages).map((m) => ({
      role: m.role === "developer" ? "system" : m.role,
      content: m.content,
    }));
  }

  private response(result: ChatResult, latencyMs: number): TeacherResponse {
    let { content, reasoning } = result;
    // Reasoning markup left in the content (a thought the chat wrapper did not take as one) is split off as every
    // transport splits it, so a model answers the same through its GGUF and through a server.
    if (reasoning === "") ({ content, reasoning } = splitReasoning(this.family, content));
    const foreign = foreignFamilyIn(this.family, `${reasoning}${content}`);
    if (foreign)
      throw new ModelError(
        this.name,
        "family-mismatch",
        `declared family '${this.family}', but the output carries '${foreign}' control markers`,
      );
    const usage = { ...result.usage };
    const response: TeacherResponse = {
      teacher: this.name,
      model: this.options.path,
      content,
      reasoning,
      finishReason: result.finishReason === "length" ? "length" : "stop",
      usage,
      costMicros: callCost(this.options.price, usage, latencyMs, this.options.sequences ?? 1),
      latencyMs,
    };
    if (result.logprobs) response.logprobs = result.logprobs.map((t) => this.logprob(t));
    return response;
  }

  private logprob(t: EngineLogprob): TokenLogprob {
    const id = (token: number) => (this.fullIds ? (this.fullIds[token] ?? token) : token);
    return {
      token: id(t.token),
      text: t.text,
      logprob: t.logprob,
      top: t.top.map((o) => ({ token: id(o.token), text: o.text, logprob: o.logprob })),
    };
  }

  private aborted(signal: AbortSignal): ModelError {
    const reason: unknown = signal.reason;
    if (reason instanceof ModelError) return reason;
    return new ModelError(
      this.name,
      reason instanceof DOMException && reason.name === "TimeoutError" ? "timeout" : "aborted",
      `request cancelled (${errorMessage(reason)})`,
    );
  }

  private wrap(error: unknown): ModelError {
    if (error instanceof ModelError) return error;
    if (error instanceof InputError) return new ModelError(this.name, "bad-request", error.message, { cause: error });
    if (error instanceof AvocadoError) return new ModelError(this.name, "engine", error.message, { cause: error });
    return new ModelError(this.name, "engine", errorMessage(error), { cause: error });
  }
}
