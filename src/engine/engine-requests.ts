import type { Token } from "node-llama-cpp";
import type { ChatFormat, WrapperOptions } from "../chat/chat-format.ts";
import type { TokenizerFamily } from "../core/family.ts";

/** What the embedded engine is asked, and what it answers: chat, raw completion, loading options. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface TokenLogprob {
  token: number;
  text: string;
  logprob: number;
  top: { token: number; text: string; logprob: number }[];
}

export interface ChatRequest {
  messages: readonly ChatMessage[];
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /**
   * OpenAI's penalties on the tokens generated so far: once per distinct token (presence), per occurrence (frequency).
   */
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Stop generating when one of these strings appears (it is not part of the content). */
  stop?: readonly string[];
  /** Constrain the answer to valid JSON (llama.cpp's JSON grammar): OpenAI's response_format json_object. */
  json?: boolean;
  /**
   * Constrain it to this JSON schema (OpenAI's response_format json_schema): see {@link EmbeddedEngine.schemaGrammar}.
   */
  jsonSchema?: Record<string, unknown>;
  /** Qwen thinking on/off, harmony reasoning effort: see {@link WrapperOptions}. */
  thinking?: boolean;
  reasoningEffort?: WrapperOptions["reasoningEffort"];
  /** Return this many exact top log-probs for every generated token (teacher-forced re-score). */
  topLogprobs?: number;
  signal?: AbortSignal;
  /**
   * Text as it is generated, with how many generated tokens it carries (those of text-less chunks before it included).
   */
  onChunk?: (chunk: { kind: "content" | "reasoning"; text: string; tokens: number }) => void;
}

export interface ChatResult {
  content: string;
  reasoning: string;
  finishReason: "stop" | "length" | "abort";
  /** `reasoningTokens` is the part of `completionTokens` spent on the reasoning (thought segments). */
  usage: { promptTokens: number; completionTokens: number; reasoningTokens: number };
  completionTokens: Token[];
  logprobs?: TokenLogprob[];
}

/** A raw text completion: the prompt is already rendered (special-token markup is read as such). */
export interface CompletionRequest {
  prompt: string;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  stop?: readonly string[];
  topLogprobs?: number;
  signal?: AbortSignal;
  /** Text as it is generated, special tokens (e.g. `<think>`) included, with how many tokens it carries. */
  onText?: (text: string, tokens: number) => void;
}

export interface CompletionResult {
  /** Generated text with special tokens spelled out, end-of-generation token excluded. */
  text: string;
  finishReason: "stop" | "length" | "abort";
  usage: { promptTokens: number; completionTokens: number };
  completionTokens: Token[];
  logprobs?: TokenLogprob[];
}

export interface EngineOptions {
  /** Parallel sequences on the one loaded model (concurrent requests). */
  sequences?: number;
  contextSize?: number;
  /** Overrides the family stored in the GGUF (`avocado.tokenizer.family`). */
  family?: TokenizerFamily;
  /** A chat format other than the family's (e.g. a generic Jinja template); `family` is then only a label. */
  format?: ChatFormat;
  /**
   * CPU threads for evaluation. Default: 1 for tiny models (measured: 4,500 tok/s with 1 thread, 90 with 2), else all
   * cores.
   */
  threads?: number;
  /**
   * KV-cache precision: llama.cpp's default F16, or F32 (and no flash attention) for faithful scoring: parity with
   * PyTorch to ~1e-5.
   */
  kvCache?: "F16" | "F32";
}
