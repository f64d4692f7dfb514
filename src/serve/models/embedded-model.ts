import type { ServedModelConfig } from "../../core/config/serve-schema.ts";
import { EmbeddedEngine } from "../../engine/embedded-engine.ts";
import { prepareMessages } from "../../chat/prepare-messages.ts";
import type { GenerationRequest, GenerationResult, ServedModel } from "./served-model.ts";

/** A local GGUF served by the embedded engine: exact token counts from the model's own tokenizer. */
export class EmbeddedServedModel implements ServedModel {
  private constructor(
    readonly config: ServedModelConfig,
    private readonly engine: EmbeddedEngine,
  ) {}

  static async load(config: ServedModelConfig, path: string): Promise<EmbeddedServedModel> {
    return new EmbeddedServedModel(config, await EmbeddedEngine.load(path, { sequences: config.sequences }));
  }

  private messages(request: Pick<GenerationRequest, "messages">) {
    return prepareMessages(this.engine.family, request.messages ?? []).map((m) => ({
      role: m.role === "developer" ? ("system" as const) : m.role,
      content: m.content,
    }));
  }

  get contextTokens(): number {
    return this.engine.contextSize;
  }

  minimumPromptTokens(bytes: number): number {
    // Below the context, bytes / longest token could refuse nothing: 0 is lower bound enough, and needs no pass over
    // the vocabulary (made once, for the first prompt whose bound could refuse it).
    if (bytes < this.engine.contextSize) return 0;
    return Math.ceil(bytes / this.engine.maxTokenBytes);
  }

  promptTokens(request: Pick<GenerationRequest, "messages" | "prompt">): number {
    return request.prompt !== undefined
      ? this.engine.tokenize(request.prompt, true).length
      : this.engine.promptTokens(this.messages(request)).length;
  }

  async generate(request: GenerationRequest): Promise<GenerationResult> {
    const common = {
      maxTokens: request.maxTokens,
      temperature: request.temperature ?? 1,
      topP: request.topP,
      seed: request.seed,
      stop: request.stop,
      topLogprobs: request.topLogprobs,
      presencePenalty: request.presencePenalty,
      frequencyPenalty: request.frequencyPenalty,
      // node-llama-cpp takes an AbortSignal: made for the requests that reach a local model only.
      signal: request.cancel.signal,
    };
    const logprobs = (
      list: { text: string; logprob: number; top: { text: string; logprob: number }[] }[] | undefined,
    ) =>
      list?.map((t) => ({
        token: t.text,
        logprob: t.logprob,
        top: t.top.map((o) => ({ token: o.text, logprob: o.logprob })),
      }));
    if (request.prompt !== undefined) {
      const result = await this.engine.complete({
        ...common,
        prompt: request.prompt,
        onText: request.onDelta ? (text, tokens) => request.onDelta!({ kind: "content", text, tokens }) : undefined,
      });
      return {
        content: result.text,
        reasoning: "",
        finishReason: result.finishReason === "length" ? "length" : "stop",
        promptTokens: result.usage.promptTokens,
        completionTokens: result.usage.completionTokens,
        logprobs: logprobs(result.logprobs),
      };
    }
    const result = await this.engine.chat({
      ...common,
      json: request.json,
      jsonSchema: request.jsonSchema?.schema,
      messages: this.messages(request),
      onChunk: request.onDelta,
    });
    return {
      content: result.content,
      reasoning: result.reasoning,
      finishReason: result.finishReason === "length" ? "length" : "stop",
      promptTokens: result.usage.promptTokens,
      // The engine counts every assistant token, those its chat format forces included (harmony's "<|start|>assistant…"
      // between the analysis and the final channel), which node-llama-cpp's max tokens does not: a request is never
      // reported or charged more completion tokens than its max_tokens (what vLLM, sampling those tokens, would give).
      completionTokens: Math.min(result.usage.completionTokens, request.maxTokens),
      logprobs: logprobs(result.logprobs),
    };
  }

  async check(request: Pick<GenerationRequest, "jsonSchema">): Promise<void> {
    // Compiled now (and kept): a schema the grammar cannot enforce is refused before anything is reserved.
    if (request.jsonSchema) await this.engine.schemaGrammar(request.jsonSchema.schema);
  }

  available(): boolean {
    return true;
  }

  async health(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    await this.engine.dispose();
  }
}
