import type { z } from "zod";
import type { ServedModelConfig } from "../../core/config/serve-schema.ts";
import {
  chatChunkSchema,
  chatCompletionSchema,
  completionSchema,
  modelsSchema,
  reasoningOf,
  type WireUsage,
} from "../../openai/protocol.ts";
import { ModelError, type ModelErrorKind } from "../../core/model-error.ts";
import { referenceTokenizer } from "../../tokenizers/index.ts";
import type { ReferenceTokenizer } from "../../tokenizers/reference-tokenizer.ts";
import { withPartial, type GenerationRequest, type GenerationResult, type ServedModel } from "./served-model.ts";
import { OpenAiClient } from "../../openai/client.ts";

interface Upstream {
  url: string;
  client: OpenAiClient;
  outstanding: number;
  healthy: boolean;
}

const HEALTH_INTERVAL_MS = 5_000;

/** A stream event from an upstream, as JSON: anything else is a bad response (502), not our own failure. */
function parseEvent(data: string, model: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    throw new ModelError(
      `upstream ${model}`,
      "bad-response",
      `a stream event is not JSON (${JSON.stringify(data.slice(0, 80))})`,
    );
  }
}

function checked<T extends z.ZodType>(schema: T, value: unknown, model: string): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success)
    throw new ModelError(
      `upstream ${model}`,
      "bad-response",
      `a stream event is not the documented format (${result.error.issues[0]?.message})`,
    );
  return result.data;
}

/** Failures after which a request, if nothing was produced yet, goes to another upstream of the pool. */
const FAILOVER_KINDS = new Set<ModelErrorKind>(["unreachable", "overloaded", "rate-limited", "server"]);

/**
 * A model served by a pool of upstream OpenAI-compatible servers (vLLM,
 * llama.cpp server, …): least-outstanding-requests routing over the healthy
 * ones, periodic health checks, and failover to another upstream when one
 * cannot be reached, is busy (429, 503) or fails (5xx) before any output was
 * produced. Token counts are the upstream's own usage.
 */
export class UpstreamServedModel implements ServedModel {
  private readonly upstreams: Upstream[];
  private readonly timer: NodeJS.Timeout;
  /** Counts the text of a stream cut before its usage (see `streamTokens`). */
  private readonly tokenizer: ReferenceTokenizer | undefined;

  constructor(readonly config: ServedModelConfig) {
    this.tokenizer = config.tokenizer ? referenceTokenizer(config.tokenizer) : undefined;
    this.upstreams = (config.upstreams ?? []).map((url) => ({
      url,
      client: new OpenAiClient({ label: `upstream ${config.name}`, baseUrl: url, timeoutMs: config.timeoutMs }),
      outstanding: 0,
      healthy: true,
    }));
    this.timer = setInterval(() => void this.health(), HEALTH_INTERVAL_MS);
    this.timer.unref();
  }

  /**
   * An upper bound of the prompt's tokens, for the hold only (the upstream's usage is what is billed):
   * byte-level tokenizers never produce more tokens than UTF-8 bytes, plus a few template tokens per message.
   * Holding too much is harmless (settlement returns it); holding too little would under-charge.
   */
  readonly contextTokens = undefined;

  /** Nothing is known of the upstream's tokenizer: no lower bound (its counting is cheap, see promptTokens). */
  minimumPromptTokens(): number {
    return 0;
  }

  promptTokens(request: Pick<GenerationRequest, "messages" | "prompt">): number {
    if (request.prompt !== undefined) return Buffer.byteLength(request.prompt) + 8;
    return (request.messages ?? []).reduce((sum, m) => sum + Buffer.byteLength(m.content) + 16, 16);
  }

  private pick(exclude: Set<Upstream>): Upstream | undefined {
    let best: Upstream | undefined;
    for (const upstream of this.upstreams) {
      if (!upstream.healthy || exclude.has(upstream)) continue;
      if (!best || upstream.outstanding < best.outstanding) best = upstream;
    }
    return best ?? this.upstreams.find((u) => !exclude.has(u));
  }

  async generate(request: GenerationRequest): Promise<GenerationResult> {
    const tried = new Set<Upstream>();
    let last: ModelError | undefined;
    for (;;) {
      const upstream = this.pick(tried);
      // Every upstream tried: the last one's failure says why (busy, failing, unreachable).
      if (!upstream)
        throw last ?? new ModelError(`upstream ${this.config.name}`, "unreachable", "no upstream could be reached");
      tried.add(upstream);
      upstream.outstanding++;
      let produced = false;
      try {
        return await this.call(upstream, request, () => (produced = true));
      } catch (error) {
        // Before any output, another upstream may answer: one that cannot be reached is also marked unhealthy (until
        // its next health check); one that is busy (429, 503) or failed (5xx) is only skipped for this request.
        if (error instanceof ModelError && !produced && FAILOVER_KINDS.has(error.kind) && !request.cancel.aborted) {
          if (error.kind === "unreachable") upstream.healthy = false;
          last = error;
          continue;
        }
        throw error;
      } finally {
        upstream.outstanding--;
      }
    }
  }

  private async call(upstream: Upstream, request: GenerationRequest, onOutput: () => void): Promise<GenerationResult> {
    const stream = request.onDelta !== undefined;
    // Assigned field by field rather than spread from conditional objects: this is on every request's path, and each
    // spread copies.
    const body: Record<string, unknown> = {
      model: this.config.upstreamModel ?? this.config.name,
      max_tokens: request.maxTokens,
    };
    if (request.temperature !== undefined) body.temperature = request.temperature;
    if (request.topP !== undefined) body.top_p = request.topP;
    if (request.seed !== undefined) body.seed = request.seed;
    if (request.presencePenalty !== undefined) body.presence_penalty = request.presencePenalty;
    if (request.frequencyPenalty !== undefined) body.frequency_penalty = request.frequencyPenalty;
    if (request.stop) body.stop = request.stop;
    if (request.jsonSchema) body.response_format = { type: "json_schema", json_schema: request.jsonSchema };
    else if (request.json) body.response_format = { type: "json_object" };
    if (stream) {
      body.stream = true;
      body.stream_options =
        this.config.streamUsage === "continuous"
          ? { include_usage: true, continuous_usage_stats: true }
          : { include_usage: true };
    }
    const chat = request.prompt === undefined;
    if (chat) body.messages = request.messages;
    else body.prompt = request.prompt;
    if (request.topLogprobs !== undefined) {
      body.logprobs = chat ? true : request.topLogprobs;
      if (chat) body.top_logprobs = request.topLogprobs;
    }
    const path = chat ? "/chat/completions" : "/completions";
    const result: GenerationResult = {
      content: "",
      reasoning: "",
      finishReason: "stop",
      promptTokens: 0,
      completionTokens: 0,
    };
    let usage: WireUsage | undefined;
    if (!stream) {
      if (chat) {
        const parsed = await upstream.client.json("POST", path, body, request.cancel, chatCompletionSchema);
        onOutput();
        const choice = parsed.choices[0]!;
        result.content = choice.message.content ?? "";
        result.reasoning = reasoningOf(choice.message);
        result.finishReason = choice.finish_reason === "length" ? "length" : "stop";
        usage = parsed.usage ?? undefined;
      } else {
        const parsed = await upstream.client.json("POST", path, body, request.cancel, completionSchema);
        onOutput();
        result.content = parsed.choices[0]?.text ?? "";
        result.finishReason = parsed.choices[0]?.finish_reason === "length" ? "length" : "stop";
        usage = parsed.usage ?? undefined;
      }
    } else {
      // A stream's tokens as they come: the upstream's running usage where it sends one, else the model's tokenizer
      // over each event's text, else one per event (a lower bound).
      let counted = 0;
      const tokensOf = (text: string, eventUsage: WireUsage | null | undefined): number => {
        const total = eventUsage
          ? eventUsage.completion_tokens
          : counted + (this.tokenizer ? this.tokenizer.encodeText(text).length : 1);
        const tokens = Math.max(0, total - counted);
        counted += tokens;
        return tokens;
      };
      try {
        // Each event as it comes (no stream or async iteration between the socket and here).
        await upstream.client.stream(path, body, request.cancel, (data) => {
          onOutput();
          const json = parseEvent(data, this.config.name);
          if (chat) {
            const chunk = checked(chatChunkSchema, json, this.config.name);
            usage = chunk.usage ?? usage;
            for (const choice of chunk.choices) {
              const reasoning = reasoningOf(choice.delta);
              if (reasoning) {
                result.reasoning += reasoning;
                request.onDelta!({ kind: "reasoning", text: reasoning, tokens: tokensOf(reasoning, chunk.usage) });
              }
              if (choice.delta?.content) {
                result.content += choice.delta.content;
                request.onDelta!({
                  kind: "content",
                  text: choice.delta.content,
                  tokens: tokensOf(choice.delta.content, chunk.usage),
                });
              }
              if (choice.finish_reason) result.finishReason = choice.finish_reason === "length" ? "length" : "stop";
            }
          } else {
            const chunk = checked(completionSchema, json, this.config.name);
            usage = chunk.usage ?? usage;
            for (const choice of chunk.choices) {
              if (choice.text) {
                result.content += choice.text;
                request.onDelta!({ kind: "content", text: choice.text, tokens: tokensOf(choice.text, chunk.usage) });
              }
              if (choice.finish_reason) result.finishReason = choice.finish_reason === "length" ? "length" : "stop";
            }
          }
        });
      } catch (error) {
        // Cut (the upstream failed, went silent, or the client left): charged what the stream carried, counted whole.
        if (result.content === "" && result.reasoning === "") throw error;
        throw withPartial(error, {
          ...result,
          promptTokens: usage?.prompt_tokens ?? 0,
          completionTokens: this.streamTokens(result, usage, counted),
        });
      }
    }
    if (!usage)
      throw new ModelError(
        `upstream ${this.config.name}`,
        "bad-response",
        `${upstream.client.origin} reported no usage; metering needs it`,
      );
    result.promptTokens = usage.prompt_tokens;
    result.completionTokens = usage.completion_tokens;
    return result;
  }

  /**
   * The completion tokens of a stream cut before its final usage: the upstream's last running count; else the
   * tokenizer's count of its whole text (exact, where per-event counts can split a token); else one per event.
   */
  private streamTokens(result: GenerationResult, usage: WireUsage | undefined, counted: number): number {
    if (usage) return usage.completion_tokens;
    if (!this.tokenizer) return counted;
    return this.tokenizer.encodeText(result.reasoning).length + this.tokenizer.encodeText(result.content).length;
  }

  available(): boolean {
    return this.upstreams.some((u) => u.healthy);
  }

  async health(): Promise<boolean> {
    await Promise.all(
      this.upstreams.map(async (upstream) => {
        try {
          await upstream.client.json("GET", "/models", undefined, AbortSignal.timeout(2_000), modelsSchema);
          upstream.healthy = true;
        } catch {
          upstream.healthy = false;
        }
      }),
    );
    return this.upstreams.some((u) => u.healthy);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all(this.upstreams.map((u) => u.client.close()));
  }
}
