import type { ServedModelConfig } from "../../core/config/serve-schema.ts";
import type { Cancel } from "../../core/cancel.ts";

export interface ServedMessage {
  role: "system" | "developer" | "user" | "assistant";
  content: string;
}

export interface GenerationRequest {
  /** Chat messages, or a raw prompt (/v1/completions). */
  messages?: ServedMessage[];
  prompt?: string;
  maxTokens: number;
  temperature?: number;
  topP?: number;
  /** OpenAI's penalties (−2…2) on tokens already generated: once each (presence), per occurrence (frequency). */
  presencePenalty?: number;
  frequencyPenalty?: number;
  seed?: number;
  stop?: string[];
  topLogprobs?: number;
  /** response_format json_object: the answer is valid JSON. */
  json?: boolean;
  /** response_format json_schema: the answer is JSON valid against this schema (OpenAI's structured outputs). */
  jsonSchema?: { name: string; schema: Record<string, unknown>; strict?: boolean | null };
  /** Fires when the request is cancelled (a Cancel, not an AbortController: one is made per request). */
  cancel: Cancel;
  /** Called for each delta as it is generated; `tokens` is how many completion tokens it carries. */
  onDelta?: (delta: { kind: "content" | "reasoning"; text: string; tokens: number }) => void;
}

export interface GenerationResult {
  content: string;
  reasoning: string;
  finishReason: "stop" | "length";
  promptTokens: number;
  completionTokens: number;
  logprobs?: { token: string; logprob: number; top: { token: string; logprob: number }[] }[];
}

/**
 * A model the API sells: a local GGUF through the embedded engine, or a pool of
 * upstream OpenAI-compatible servers. Token counts are the engine's own.
 */
export interface ServedModel {
  readonly config: ServedModelConfig;
  /** Prompt tokens before the request runs (exact for local models, an upper estimate for upstreams). */
  promptTokens(request: Pick<GenerationRequest, "messages" | "prompt">): number;
  /**
   * The fewest tokens a prompt of this many UTF-8 bytes can be, worked out without a tokenizer (checked first: cheap).
   */
  minimumPromptTokens(bytes: number): number;
  /** The most tokens a prompt may be, where the model says (a local GGUF's context); undefined for upstreams. */
  readonly contextTokens: number | undefined;
  generate(request: GenerationRequest): Promise<GenerationResult>;
  /**
   * Refuses (InputError) what this model cannot do before anything is reserved, e.g. a JSON schema its grammar cannot
   * enforce.
   */
  check?(request: Pick<GenerationRequest, "jsonSchema">): Promise<void>;
  health(): Promise<boolean>;
  /**
   * Whether it can take a request now, as last seen (no I/O): a pool with an upstream that passed its last check, a
   * local model always.
   */
  available(): boolean;
  close(): Promise<void>;
}

/** Integer micro-units, rounded up: a fraction of a micro-unit is still charged. */
export function costOf(price: ServedModelConfig["price"], promptTokens: number, completionTokens: number): number {
  return Math.ceil((promptTokens * price.inputPerMillion + completionTokens * price.outputPerMillion) / 1_000_000);
}

const PARTIAL = Symbol("partial generation");

/** Marks a generation's failure with what it had produced (to be charged): the model's own count, not one per event. */
export function withPartial<E>(error: E, partial: GenerationResult): E {
  if (typeof error === "object" && error !== null) Object.defineProperty(error, PARTIAL, { value: partial });
  return error;
}

/** What a failed generation had produced, where its model said. */
export function partialOf(error: unknown): GenerationResult | undefined {
  return typeof error === "object" && error !== null
    ? ((error as Record<symbol, GenerationResult | undefined>)[PARTIAL] ?? undefined)
    : undefined;
}
