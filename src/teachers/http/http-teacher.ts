import type { Family } from "../../core/family.ts";
import { performance } from "node:perf_hooks";
import type { Price } from "../../core/config/teacher-schema.ts";
import { callCost } from "../cost.ts";
import { prepareMessages } from "../../chat/prepare-messages.ts";
import { foreignFamilyIn, splitReasoning, StreamingReasoningSplitter, type GenericTemplate } from "../families.ts";
import { ModelError } from "../../core/model-error.ts";
import type {
  FinishReason,
  ScoreRequest,
  ScoreResult,
  Teacher,
  TeacherCapabilities,
  TeacherEvent,
  TeacherHealth,
  TeacherRequest,
  TeacherResponse,
  TeacherUsage,
  TokenLogprob,
} from "../teacher.ts";
import { DIALECTS, type Dialect, type HttpEngine } from "./dialects.ts";
import {
  chatChunkSchema,
  chatCompletionSchema,
  chatLogprobsToTokens,
  completionSchema,
  legacyLogprobsToTokens,
  modelsSchema,
  reasoningOf,
  type WireUsage,
} from "../../openai/protocol.ts";
import { OpenAiClient } from "../../openai/client.ts";
import { scoreByPromptLogprobs } from "./prompt-logprobs.ts";

export interface HttpTeacherOptions {
  name: string;
  family: Family;
  engine: HttpEngine;
  baseUrl: string;
  model: string;
  /** The key itself (read from the configured environment variable by the caller). */
  apiKey?: string;
  headers?: Record<string, string>;
  maxTokens?: number;
  maxResponseBytes?: number;
  price?: Price;
  /** For GPU-hour prices: how many requests share the server. */
  concurrency?: number;
  /** Generic family: the model's template, rendered here and sent to /v1/completions. */
  template?: GenericTemplate;
}

interface Accumulated {
  raw: string;
  content: string;
  reasoning: string;
  finishReason: string | undefined;
  usage: WireUsage | undefined;
  logprobs: TokenLogprob[];
  model: string | undefined;
  chunks: number;
}

/**
 * A teacher behind an OpenAI-compatible HTTP server (vLLM, SGLang, llama.cpp
 * server, Ollama, TGI): chat completions with the engine's dialect for
 * reasoning, thinking switches and log-probs; scoring through vLLM's
 * prompt_logprobs. It never retries: the scheduler does.
 */
export class HttpTeacher implements Teacher {
  readonly name: string;
  readonly family: Family;
  readonly capabilities: TeacherCapabilities;
  private readonly dialect: Dialect;
  private readonly client: OpenAiClient;

  constructor(private readonly options: HttpTeacherOptions) {
    this.name = options.name;
    this.family = options.family;
    this.dialect = DIALECTS[options.engine];
    if (options.family === "generic" && !options.template)
      throw new ModelError(
        options.name,
        "bad-request",
        "the generic family needs a chat template (chatTemplate: a tokenizer_config.json)",
      );
    this.client = new OpenAiClient({
      label: options.name,
      baseUrl: options.baseUrl,
      apiKey: options.apiKey,
      headers: options.headers,
      maxResponseBytes: options.maxResponseBytes,
    });
    this.capabilities = {
      streaming: true,
      logprobs: this.dialect.maxTopLogprobs !== undefined,
      maxTopLogprobs: this.dialect.maxTopLogprobs ?? 0,
      score: this.dialect.score !== "none",
      reasoning: options.family !== "gemma",
      tokenIds: "engine",
    };
  }

  /** Removes this teacher's secrets from a text (for callers that log responses or errors). */
  redact(text: string): string {
    return this.client.redact(text);
  }

  async generate(request: TeacherRequest): Promise<TeacherResponse> {
    const started = performance.now();
    const generic = this.family === "generic";
    const path = generic ? "/completions" : "/chat/completions";
    const body = this.body(request, false);
    const acc = this.empty();
    if (generic) {
      const answer = await this.client.json("POST", path, body, request.signal, completionSchema, "the completion");
      const choice = answer.choices[0];
      if (!choice) throw new ModelError(this.name, "bad-response", "the completion has no choices");
      acc.raw = choice.text ?? "";
      acc.finishReason = choice.finish_reason ?? undefined;
      acc.logprobs = legacyLogprobsToTokens(choice.logprobs, request.topLogprobs ?? 0);
      acc.usage = answer.usage ?? undefined;
      acc.model = answer.model;
    } else {
      const answer = await this.client.json(
        "POST",
        path,
        body,
        request.signal,
        chatCompletionSchema,
        "the chat completion",
      );
      const choice = answer.choices[0]!;
      acc.content = choice.message.content ?? "";
      acc.reasoning = reasoningOf(choice.message);
      acc.finishReason = choice.finish_reason ?? undefined;
      acc.logprobs = chatLogprobsToTokens(choice.logprobs?.content, request.topLogprobs ?? 0);
      acc.usage = answer.usage ?? undefined;
      acc.model = answer.model;
    }
    return this.finish(acc, request, performance.now() - started);
  }

  async *stream(request: TeacherRequest): AsyncGenerator<TeacherEvent> {
    const started = performance.now();
    const generic = this.family === "generic";
    const body = this.body(request, true);
    const acc = this.empty();
    // Servers without a reasoning parser leave <think> / harmony channels in the content: split it here.
    const splitter = new StreamingReasoningSplitter(this.family);
    try {
      for await (const data of this.client.events(
        generic ? "/completions" : "/chat/completions",
        body,
        request.signal,
      )) {
        let json: unknown;
        try {
          json = JSON.parse(data);
        } catch {
          throw new ModelError(
            this.name,
            "bad-response",
            `a stream event is not JSON (${JSON.stringify(data.slice(0, 80))})`,
          );
        }
        if (json && typeof json === "object" && "error" in json) {
          throw new ModelError(
            this.name,
            "server",
            this.client.redact(
              `the server reported an error mid-stream: ${JSON.stringify((json as { error: unknown }).error).slice(0, 300)}`,
            ),
          );
        }
        acc.chunks++;
        if (generic) {
          const chunk = completionSchema.safeParse(json);
          if (!chunk.success)
            throw new ModelError(
              this.name,
              "bad-response",
              `a stream event is not a completion chunk (${chunk.error.issues[0]?.message})`,
            );
          acc.usage = chunk.data.usage ?? acc.usage;
          for (const choice of chunk.data.choices) {
            if (choice.text) yield* this.rawDelta(acc, splitter, choice.text);
            acc.finishReason = choice.finish_reason ?? acc.finishReason;
            acc.logprobs.push(...legacyLogprobsToTokens(choice.logprobs, request.topLogprobs ?? 0));
          }
        } else {
          const chunk = chatChunkSchema.safeParse(json);
          if (!chunk.success)
            throw new ModelError(
              this.name,
              "bad-response",
              `a stream event is not a chat chunk (${chunk.error.issues[0]?.message})`,
            );
          acc.usage = chunk.data.usage ?? acc.usage;
          acc.model = chunk.data.model ?? acc.model;
          for (const choice of chunk.data.choices) {
            const reasoning = reasoningOf(choice.delta);
            if (reasoning) {
              acc.reasoning += reasoning;
              yield { type: "reasoning", text: reasoning };
            }
            if (choice.delta?.content) yield* this.rawDelta(acc, splitter, choice.delta.content);
            acc.finishReason = choice.finish_reason ?? acc.finishReason;
            acc.logprobs.push(...chatLogprobsToTokens(choice.logprobs?.content, request.topLogprobs ?? 0));
          }
        }
      }
    } catch (error) {
      // A stream that lost only its [DONE] after the final chunk is complete.
      if (!(
        error instanceof ModelError &&
        error.kind === "truncated-stream" &&
        acc.finishReason !== undefined &&
        acc.usage !== undefined
      ))
        throw error;
    }
    if (acc.finishReason === undefined)
      throw new ModelError(this.name, "truncated-stream", "the stream ended without a finish_reason");
    yield { type: "done", response: this.finish(acc, request, performance.now() - started) };
  }

  score(request: ScoreRequest): Promise<ScoreResult> {
    return scoreByPromptLogprobs(
      { name: this.name, family: this.family, options: this.options, dialect: this.dialect, client: this.client },
      request,
    );
  }

  async health(signal?: AbortSignal): Promise<TeacherHealth> {
    const started = performance.now();
    try {
      const models = await this.client.json(
        "GET",
        "/models",
        undefined,
        signal ?? AbortSignal.timeout(10_000),
        modelsSchema,
        "the model list",
      );
      const served = models.data.map((m) => m.id);
      const ok = served.includes(this.options.model);
      return {
        ok,
        latencyMs: performance.now() - started,
        detail: ok
          ? `serves ${this.options.model}`
          : `does not serve ${this.options.model} (it serves ${served.join(", ") || "nothing"})`,
      };
    } catch (error) {
      return {
        ok: false,
        latencyMs: performance.now() - started,
        detail: error instanceof ModelError ? error.message : this.client.redact(String(error)),
      };
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private body(request: TeacherRequest, stream: boolean): Record<string, unknown> {
    const maxTokens = Math.min(
      request.maxTokens ?? this.options.maxTokens ?? 1024,
      this.options.maxTokens ?? Number.MAX_SAFE_INTEGER,
    );
    const topLogprobs = request.topLogprobs;
    if (topLogprobs !== undefined && this.dialect.maxTopLogprobs === undefined) {
      throw new ModelError(this.name, "unsupported", `${this.options.engine} serves no log-probs`);
    }
    if (topLogprobs !== undefined && topLogprobs > this.dialect.maxTopLogprobs!) {
      throw new ModelError(
        this.name,
        "bad-request",
        `top_logprobs ${topLogprobs} is more than ${this.options.engine} allows (${this.dialect.maxTopLogprobs})`,
      );
    }
    const messages = prepareMessages(this.family, request.messages);
    const common: Record<string, unknown> = {
      model: this.options.model,
      max_tokens: maxTokens,
      temperature: request.temperature ?? 0,
      ...(request.topP !== undefined ? { top_p: request.topP } : {}),
      ...(request.seed !== undefined ? { seed: request.seed } : {}),
      ...(request.stop && request.stop.length > 0 ? { stop: [...request.stop] } : {}),
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    };
    if (this.family === "generic") {
      return {
        ...common,
        prompt: this.options.template!.render(messages, { thinking: request.thinking }),
        ...(topLogprobs !== undefined ? { logprobs: topLogprobs } : {}),
      };
    }
    return {
      ...common,
      messages,
      ...this.dialect.reasoningFields(request, this.family),
      ...(topLogprobs !== undefined
        ? { logprobs: true, top_logprobs: topLogprobs, ...this.dialect.logprobFields(topLogprobs) }
        : {}),
    };
  }

  private empty(): Accumulated {
    return {
      raw: "",
      content: "",
      reasoning: "",
      finishReason: undefined,
      usage: undefined,
      logprobs: [],
      model: undefined,
      chunks: 0,
    };
  }

  private *rawDelta(acc: Accumulated, splitter: StreamingReasoningSplitter, text: string): Generator<TeacherEvent> {
    acc.raw += text;
    for (const event of splitter.feed(text)) yield event;
  }

  private finish(acc: Accumulated, request: TeacherRequest, latencyMs: number): TeacherResponse {
    let { content, reasoning } = acc;
    const raw = acc.raw || content;
    const foreign = foreignFamilyIn(this.family, `${reasoning}${raw}`);
    if (foreign)
      throw new ModelError(
        this.name,
        "family-mismatch",
        `declared family '${this.family}', but the output carries '${foreign}' control markers (check the teacher's family)`,
      );
    if (reasoning === "") ({ content, reasoning } = splitReasoning(this.family, raw));
    else content = raw;
    const usage = this.usage(acc, reasoning, content);
    const finishReason: FinishReason = acc.finishReason === "length" ? "length" : "stop";
    const response: TeacherResponse = {
      teacher: this.name,
      model: acc.model ?? this.options.model,
      content,
      reasoning: reasoning.trim(),
      finishReason,
      usage,
      costMicros: callCost(this.options.price, usage, latencyMs, this.options.concurrency ?? 1),
      latencyMs,
    };
    if (request.topLogprobs !== undefined) {
      // Asked for and not given (a server that ignores the fields): an error, not an answer silently without them.
      if (acc.logprobs.length === 0 && content + reasoning !== "")
        throw new ModelError(this.name, "bad-response", "log-probs were asked for and the server returned none");
      response.logprobs = acc.logprobs;
    }
    return response;
  }

  /** The server's usage; reasoning tokens from its details, else apportioned by length (marked as estimated). */
  private usage(acc: Accumulated, reasoning: string, content: string): TeacherUsage {
    if (!acc.usage) {
      return {
        promptTokens: 0,
        completionTokens: acc.logprobs.length || acc.chunks,
        reasoningTokens: 0,
        estimated: true,
      };
    }
    const completion = acc.usage.completion_tokens;
    const reported = acc.usage.completion_tokens_details?.reasoning_tokens;
    if (reported !== undefined && reported !== null)
      return { promptTokens: acc.usage.prompt_tokens, completionTokens: completion, reasoningTokens: reported };
    if (reasoning === "")
      return { promptTokens: acc.usage.prompt_tokens, completionTokens: completion, reasoningTokens: 0 };
    const share = reasoning.length / Math.max(1, reasoning.length + content.length);
    return {
      promptTokens: acc.usage.prompt_tokens,
      completionTokens: completion,
      reasoningTokens: Math.round(completion * share),
      estimated: true,
    };
  }
}
