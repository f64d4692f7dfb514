import type { Family } from "../core/family.ts";
import {
  LlamaChat,
  LlamaCompletion,
  LlamaText,
  SpecialTokensText,
  type ChatWrapper,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type LlamaGrammar,
  type Token,
} from "node-llama-cpp";
import { CHAT_FORMATS, type ChatFormat, type WrapperOptions } from "../chat/chat-format.ts";
import { AvocadoError, ContextLengthError, EngineError, FileError, InputError, errorMessage } from "../core/errors.ts";
import { TOKENIZER_FAMILIES, type TokenizerFamily } from "../core/family.ts";
import { checkGguf } from "./gguf-check.ts";
import { SchemaGrammars } from "./json-schema.ts";
import { sharedLlama } from "./llama.ts";
import { guardOutputOrder } from "./output-order-guard.ts";
import { guardPlainText } from "./plain-text-guard.ts";
import type {
  ChatMessage,
  ChatRequest,
  ChatResult,
  CompletionRequest,
  CompletionResult,
  EngineOptions,
  TokenLogprob,
} from "./engine-requests.ts";
import { append, repeatPenalty, toHistory, withProbabilities } from "./llama-inputs.ts";
import { SequencePool } from "./sequence-pool.ts";

export type { ChatMessage, ChatRequest, ChatResult, CompletionRequest, CompletionResult, EngineOptions, TokenLogprob };

/** Below this size a model is latency-bound: more threads only add synchronisation (measured on 2 cores). */
const SMALL_MODEL_BYTES = 64 * 1024 * 1024;
const TOKEN_CACHE_ENTRIES = 4096;
/** Only a format's fixed parts are memoised: a customer's long message would pin megabytes per entry. */
const TOKEN_CACHE_CHARACTERS = 256;

/**
 * The embedded engine: one GGUF loaded in-process through node-llama-cpp, chatting
 * in its family's format, with streaming, usage, exact top-k log-probs and
 * teacher-forced scoring, over several concurrent sequences.
 */
export class EmbeddedEngine {
  private constructor(
    readonly path: string,
    readonly family: Family,
    readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly pool: SequencePool,
    readonly format: ChatFormat,
  ) {}

  /** Tokens one sequence holds: a prompt must be shorter. */
  get contextSize(): number {
    return this.context.contextSize / this.context.totalSequences;
  }

  private longestToken: number | undefined;
  /** The most UTF-8 bytes one token stands for: a text of n bytes is at least n / this many tokens. */
  get maxTokenBytes(): number {
    if (this.longestToken === undefined) {
      let longest = 1;
      for (const token of this.model.iterateAllTokens())
        longest = Math.max(longest, Buffer.byteLength(this.model.detokenize([token], true)));
      this.longestToken = longest;
    }
    return this.longestToken;
  }

  /** Chat wrappers are stateless renderers: one per engine and rendering option. */
  private readonly wrappers = new Map<string, ChatWrapper>();
  /** Grammars of the JSON schemas asked for lately (a client sends the same schema with each request). */
  private readonly schemaGrammars = new SchemaGrammars();
  private readonly tokenCache = new Map<string, Token[]>();

  static async load(path: string, options: EngineOptions = {}): Promise<EmbeddedEngine> {
    const info = await checkGguf(path);
    const stored = (info.metadata as unknown as Record<string, Record<string, Record<string, unknown>>>).avocado
      ?.tokenizer?.family;
    const family: Family | undefined =
      options.family ??
      options.format?.family ??
      (typeof stored === "string" && (TOKENIZER_FAMILIES as readonly string[]).includes(stored)
        ? (stored as TokenizerFamily)
        : undefined);
    if (!family)
      throw new InputError(
        `${path}: no model family is recorded in the GGUF; pass one of ${TOKENIZER_FAMILIES.join(", ")}`,
      );
    const llama = await sharedLlama();
    let model: LlamaModel;
    try {
      model = await llama.loadModel({ modelPath: path });
    } catch (error) {
      throw new FileError(path, `could not be loaded by llama.cpp (${errorMessage(error)})`, { cause: error });
    }
    try {
      guardPlainText(model);
    } catch (error) {
      await model.dispose();
      throw error;
    }
    const sequences = options.sequences ?? 1;
    const trained = model.trainContextSize;
    const threads = options.threads ?? (model.size < SMALL_MODEL_BYTES ? 1 : undefined);
    const context = await model.createContext({
      sequences,
      contextSize: (options.contextSize ?? trained) * sequences,
      threads,
      experimentalKvCacheKeyType: options.kvCache,
      experimentalKvCacheValueType: options.kvCache,
      flashAttention: options.kvCache === "F32" ? false : undefined,
    });
    try {
      guardOutputOrder(context);
    } catch (error) {
      await context.dispose();
      await model.dispose();
      throw error;
    }
    return new EmbeddedEngine(
      path,
      family,
      model,
      context,
      new SequencePool(context, sequences),
      options.format ?? CHAT_FORMATS[family as TokenizerFamily],
    );
  }

  async chat(request: ChatRequest): Promise<ChatResult> {
    const sequence = await this.pool.acquire(request.signal);
    const wrapperOptions: WrapperOptions = { thinking: request.thinking, reasoningEffort: request.reasoningEffort };
    const chat = new LlamaChat({
      contextSequence: sequence,
      chatWrapper: this.wrapper(wrapperOptions),
      autoDisposeSequence: false,
    });
    try {
      const promptLength = this.promptTokens(request.messages, wrapperOptions).length;
      if (promptLength >= sequence.contextSize) {
        throw new ContextLengthError(promptLength, sequence.contextSize);
      }
      let lastToken: Token | undefined;
      // Tokens sampled so far: a chunk's last token is sampled but not yet in the context. Each text chunk carries the
      // tokens since the previous one, markup the chat wrapper hides (harmony's channels, Qwen's <think>) included.
      let sampled = 0;
      let reported = 0;
      const response = await chat.generateResponse(toHistory(request.messages), {
        maxTokens: request.maxTokens ?? 256,
        temperature: request.temperature ?? 0,
        topK: request.topK,
        topP: request.topP,
        seed: request.seed,
        repeatPenalty: repeatPenalty(request),
        customStopTriggers: request.stop && request.stop.length > 0 ? [...request.stop] : undefined,
        grammar: request.jsonSchema
          ? await this.schemaGrammar(request.jsonSchema)
          : request.json
            ? await (await sharedLlama()).getGrammarFor("json")
            : undefined,
        signal: request.signal,
        stopOnAbortSignal: true,
        onResponseChunk: (chunk) => {
          if (chunk.tokens.length === 0) return;
          lastToken = chunk.tokens.at(-1);
          sampled = Math.max(sampled, sequence.nextTokenIndex - promptLength + 1);
          if (chunk.text === "" || !request.onChunk) return;
          request.onChunk({
            kind: chunk.type === "segment" && chunk.segmentType === "thought" ? "reasoning" : "content",
            text: chunk.text,
            tokens: sampled - reported,
          });
          reported = sampled;
        },
      });
      let reasoning = "";
      for (const part of response.fullResponse)
        if (typeof part !== "string" && part.segmentType === "thought") reasoning += part.text;
      const stop = response.metadata.stopReason;
      const contextTokens = sequence.contextTokens;
      // The context holds every assistant token but the last sampled one when generation stopped at the length limit
      // or on an abort (it was streamed, so it counts).
      const generated = contextTokens.slice(promptLength);
      if (sampled > generated.length && lastToken !== undefined) generated.push(lastToken);
      const completionTokens = generated.length + (stop === "eogToken" ? 1 : 0);
      const reasoningTokens = reasoning === "" ? 0 : Math.min(completionTokens, this.model.tokenize(reasoning).length);
      const result: ChatResult = {
        content: response.response,
        reasoning: reasoning.trim(),
        finishReason: stop === "maxTokens" ? "length" : stop === "abort" ? "abort" : "stop",
        // Every assistant token counts, forced ones (harmony's "<|start|>assistant") and the end-of-generation token
        // included.
        usage: { promptTokens: promptLength, completionTokens, reasoningTokens },
        completionTokens: generated,
      };
      if (request.topLogprobs !== undefined && generated.length > 0) {
        result.logprobs = await this.scoreOn(
          sequence,
          contextTokens.slice(0, promptLength),
          generated,
          request.topLogprobs,
        );
      }
      return result;
    } catch (error) {
      if (error instanceof AvocadoError) throw error;
      throw new EngineError(`${this.path}: generation failed (${errorMessage(error)})`, { cause: error });
    } finally {
      chat.dispose({ disposeSequence: false });
      this.pool.release(sequence);
    }
  }

  /** Continues a rendered prompt (the generic family over /v1/completions, and raw completions). */
  async complete(request: CompletionRequest): Promise<CompletionResult> {
    const prompt = this.tokenize(request.prompt, true);
    const sequence = await this.pool.acquire(request.signal);
    const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
    try {
      if (prompt.length === 0) throw new InputError("the prompt is empty");
      if (prompt.length >= sequence.contextSize) throw new ContextLengthError(prompt.length, sequence.contextSize);
      await sequence.clearHistory();
      const generated: Token[] = [];
      let unsent = 0;
      const response = await completion.generateCompletionWithMeta(prompt, {
        maxTokens: request.maxTokens ?? 256,
        temperature: request.temperature ?? 0,
        topP: request.topP,
        seed: request.seed,
        repeatPenalty: repeatPenalty(request),
        customStopTriggers: request.stop && request.stop.length > 0 ? [...request.stop] : undefined,
        signal: request.signal,
        stopOnAbortSignal: true,
        onToken: (tokens) => {
          const visible = tokens.filter((token) => !this.model.isEogToken(token));
          append(generated, tokens);
          unsent += tokens.length;
          if (visible.length === 0) return;
          request.onText?.(this.model.detokenize(visible, true), unsent);
          unsent = 0;
        },
      });
      const stop = response.metadata.stopReason;
      const text = this.model.detokenize(
        generated.filter((token) => !this.model.isEogToken(token)),
        true,
      );
      const result: CompletionResult = {
        text,
        finishReason: stop === "maxTokens" ? "length" : stop === "abort" ? "abort" : "stop",
        usage: { promptTokens: prompt.length, completionTokens: generated.length },
        completionTokens: generated,
      };
      if (request.topLogprobs !== undefined && generated.length > 0)
        result.logprobs = await this.scoreOn(sequence, prompt, generated, request.topLogprobs);
      return result;
    } catch (error) {
      if (error instanceof AvocadoError) throw error;
      throw new EngineError(`${this.path}: completion failed (${errorMessage(error)})`, { cause: error });
    } finally {
      completion.dispose({ disposeSequence: false });
      this.pool.release(sequence);
    }
  }

  /**
   * Tokens of a rendered prompt for these messages (the chat wrapper's own rendering).
   * LlamaText tokenizes value by value, so values are memoised: a chat format's fixed
   * parts (harmony's system header, role markers) are tokenized once per engine.
   */
  promptTokens(messages: readonly ChatMessage[], options: WrapperOptions = {}): Token[] {
    const state = this.wrapper(options).generateContextState({ chatHistory: toHistory(messages) });
    const tokens: Token[] = [];
    for (const value of state.contextText.values) {
      const text = typeof value === "string" ? value : value.value;
      if (text.length > TOKEN_CACHE_CHARACTERS) {
        append(tokens, LlamaText(value).tokenize(this.model.tokenizer));
        continue;
      }
      const key =
        typeof value === "string"
          ? `t${value}`
          : value instanceof SpecialTokensText
            ? `s${value.value}`
            : `k${value.value}`;
      let piece = this.tokenCache.get(key);
      if (!piece) {
        piece = LlamaText(value).tokenize(this.model.tokenizer);
        if (this.tokenCache.size >= TOKEN_CACHE_ENTRIES) this.tokenCache.clear();
        this.tokenCache.set(key, piece);
      }
      append(tokens, piece);
    }
    return tokens;
  }

  /** Tokens of a text, special-token markup (e.g. `<|im_end|>`) included when `special` is set. */
  tokenize(text: string, special = false): Token[] {
    return this.model.tokenize(text, special);
  }

  detokenize(tokens: readonly Token[]): string {
    return this.model.detokenize(tokens, true);
  }

  /**
   * The grammar of a JSON schema (compiled once per schema): an InputError
   * names a keyword the grammar cannot enforce, rather than ignoring it.
   */
  schemaGrammar(schema: Record<string, unknown>): Promise<LlamaGrammar> {
    return this.schemaGrammars.get(schema);
  }

  private wrapper(options: WrapperOptions): ChatWrapper {
    const key = `${options.thinking ?? ""}/${options.reasoningEffort ?? ""}`;
    let wrapper = this.wrappers.get(key);
    if (!wrapper) {
      wrapper = this.format.createWrapper(
        options.thinking === undefined && options.reasoningEffort === undefined ? undefined : options,
      );
      this.wrappers.set(key, wrapper);
    }
    return wrapper;
  }

  /** Teacher-forced log-probs of `continuation` after `prefix`, with the exact top-k at each position. */
  async score(prefix: readonly Token[], continuation: readonly Token[], topK = 0): Promise<TokenLogprob[]> {
    const sequence = await this.pool.acquire();
    try {
      return await this.scoreOn(sequence, prefix, continuation, topK);
    } finally {
      this.pool.release(sequence);
    }
  }

  /** Full next-token distribution (log-probs by token id) after `prefix`. */
  async nextTokenLogprobs(prefix: readonly Token[]): Promise<Map<Token, number>> {
    if (prefix.length === 0) throw new InputError("next-token log-probs need at least one prefix token");
    const sequence = await this.pool.acquire();
    try {
      await sequence.clearHistory();
      const output = await sequence.controlledEvaluate(withProbabilities(prefix, prefix.length - 1, prefix.length));
      const probabilities = output.at(-1)?.next.probabilities;
      if (!probabilities) throw new EngineError(`${this.path}: llama.cpp returned no probabilities`);
      return new Map([...probabilities].map(([token, p]) => [token, Math.log(p)]));
    } finally {
      this.pool.release(sequence);
    }
  }

  private async scoreOn(
    sequence: LlamaContextSequence,
    prefix: readonly Token[],
    continuation: readonly Token[],
    topK: number,
  ): Promise<TokenLogprob[]> {
    if (prefix.length === 0) throw new InputError("scoring needs at least one prefix token");
    await sequence.clearHistory();
    const all = [...prefix, ...continuation];
    const output = await sequence.controlledEvaluate(withProbabilities(all, prefix.length - 1, all.length - 1));
    const detokenize = (token: Token) => this.model.detokenize([token], true);
    return continuation.map((token, j) => {
      const probabilities = output[prefix.length - 1 + j]?.next.probabilities;
      if (!probabilities) throw new EngineError(`${this.path}: llama.cpp returned no probabilities at position ${j}`);
      const top = [...probabilities.entries()]
        .slice(0, topK)
        .map(([t, p]) => ({ token: t, text: detokenize(t), logprob: Math.log(p) }));
      return { token, text: detokenize(token), logprob: Math.log(probabilities.get(token) ?? 0), top };
    });
  }

  async dispose(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
  }
}
