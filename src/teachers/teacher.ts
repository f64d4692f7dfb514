import type { Family } from "../core/family.ts";
import type { ReasoningEffort } from "../chat/chat-format.ts";
import type { RoleMessage } from "../chat/prepare-messages.ts";
import type { TokenLogprob } from "../openai/token-logprob.ts";

export type { TokenLogprob };

/**
 * A teacher: an open-weight model whose outputs Avocado distils, wherever it
 * runs (in-process GGUF, or any OpenAI-compatible inference server). Every
 * implementation passes the shared conformance suite (`teacher-conformance.ts`).
 */
export interface Teacher {
  readonly name: string;
  readonly family: Family;
  readonly capabilities: TeacherCapabilities;
  /** One complete response. */
  generate(request: TeacherRequest): Promise<TeacherResponse>;
  /** The same response as it is produced: deltas, then exactly one `done` event carrying the full response. */
  stream(request: TeacherRequest): AsyncIterable<TeacherEvent>;
  /** Teacher-forced log-probs of a given assistant continuation after the rendered prompt. */
  score(request: ScoreRequest): Promise<ScoreResult>;
  /** Cheap liveness check: the model loads / the server answers. */
  health(signal?: AbortSignal): Promise<TeacherHealth>;
  close(): Promise<void>;
}

export interface TeacherCapabilities {
  streaming: boolean;
  /** Top-k log-probs of generated tokens, and the most k the engine allows (vLLM 20, TGI 5, …). */
  logprobs: boolean;
  maxTopLogprobs: number;
  /** Teacher-forced scoring of a given continuation (vLLM `prompt_logprobs`, the embedded engine). */
  score: boolean;
  /** Whether responses carry a separate reasoning part. */
  reasoning: boolean;
  /** Whether the teacher's ids are its family's real token ids (so logprobs of several teachers can be compared). */
  tokenIds: "family" | "trimmed" | "engine";
}

/** `developer` is harmony's instruction role; families without it receive it as a system message. */
export type TeacherMessage = RoleMessage;

export interface TeacherRequest {
  messages: readonly TeacherMessage[];
  /** Always bounded: an engine that never stops ends at this many tokens (default from the teacher's config). */
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  stop?: readonly string[];
  /** Top-k log-probs for every generated token (0 = the chosen token's only). */
  topLogprobs?: number;
  /** Qwen thinking on/off (`enable_thinking`); ignored by families that always or never reason. */
  thinking?: boolean;
  /** gpt-oss reasoning effort. */
  reasoningEffort?: ReasoningEffort;
  signal?: AbortSignal;
}

export interface TeacherUsage {
  promptTokens: number;
  /** All generated tokens, reasoning included. */
  completionTokens: number;
  reasoningTokens: number;
  /**
   * Set when the engine did not report a count and it was estimated (reasoning apportioned by length, or chunks
   * counted).
   */
  estimated?: boolean;
}

export type FinishReason = "stop" | "length";

export interface TeacherResponse {
  teacher: string;
  /** The model name the engine reported (HTTP) or the GGUF path (embedded). */
  model: string;
  content: string;
  reasoning: string;
  finishReason: FinishReason;
  usage: TeacherUsage;
  /** Micro-units of the configured currency (integers, never floats); 0 when no price is configured. */
  costMicros: number;
  latencyMs: number;
  logprobs?: TokenLogprob[];
}

export type TeacherEvent =
  { type: "reasoning"; text: string } | { type: "content"; text: string } | { type: "done"; response: TeacherResponse };

export interface ScoreRequest {
  messages: readonly TeacherMessage[];
  /**
   * The assistant's side, exactly as the model would produce it (control tokens such as `<|im_end|>` are read as such).
   */
  continuation: string;
  topLogprobs?: number;
  thinking?: boolean;
  reasoningEffort?: ReasoningEffort;
  signal?: AbortSignal;
}

export interface ScoreResult {
  teacher: string;
  tokens: TokenLogprob[];
  /** Sum of the continuation tokens' log-probs. */
  logprob: number;
  promptTokens: number;
}

export interface TeacherHealth {
  ok: boolean;
  latencyMs: number;
  detail: string;
}
