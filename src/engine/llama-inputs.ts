import type { ChatHistoryItem, ControlledEvaluateInputItem, LLamaContextualRepeatPenalty, Token } from "node-llama-cpp";
import type { ChatMessage } from "./engine-requests.ts";

/**
 * Evaluation input asking for the next-token distribution after positions [from, to).
 * Temperature 0 makes llama.cpp return the full (untruncated, unrenormalised) distribution.
 */
export function withProbabilities(tokens: readonly Token[], from: number, to: number): ControlledEvaluateInputItem[] {
  return tokens.map((token, i): ControlledEvaluateInputItem =>
    i >= from && i < to ? [token, { generateNext: { probabilities: true, options: { temperature: 0 } } }] : token,
  );
}

/**
 * OpenAI's presence and frequency penalties as llama.cpp applies them: on the
 * tokens generated so far (up to `maxTokens` of them), llama.cpp's own repeat
 * penalty off. None when neither is asked for.
 */
export function repeatPenalty(request: {
  presencePenalty?: number;
  frequencyPenalty?: number;
  maxTokens?: number;
}): LLamaContextualRepeatPenalty | undefined {
  if (!request.presencePenalty && !request.frequencyPenalty) return undefined;
  return {
    penalty: 1,
    presencePenalty: request.presencePenalty ?? 0,
    frequencyPenalty: request.frequencyPenalty ?? 0,
    lastTokens: request.maxTokens ?? 256,
    penalizeNewLine: true,
  };
}

/** `target.push(...source)` without spreading: a long prompt's tokens overflow the call stack as arguments. */
export function append<T>(target: T[], source: readonly T[]): void {
  for (const item of source) target.push(item);
}

/** Chat messages as node-llama-cpp's history, with the open model turn it generates into. */
export function toHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = messages.map((m) =>
    m.role === "system"
      ? { type: "system", text: m.content }
      : m.role === "user"
        ? { type: "user", text: m.content }
        : { type: "model", response: [m.content] },
  );
  history.push({ type: "model", response: [] });
  return history;
}
