import type { ChatFormat } from "../chat/chat-format.ts";
import { encodeLlamaText } from "../tokenizers/encode-llama-text.ts";
import type { ReferenceTokenizer } from "../tokenizers/reference-tokenizer.ts";

export interface ChatExample {
  system?: string;
  user: string;
  reasoning?: string;
  answer: string;
}

export interface RenderedExample {
  /** The family's real token ids (prompt, then completion). */
  tokens: number[];
  /** True on the completion (assistant) tokens: the SFT targets. */
  mask: boolean[];
  promptLength: number;
}

/**
 * Renders one chat example into the family's real token ids with a loss mask on
 * the assistant's tokens. The prompt comes from the engine's own chat wrapper,
 * so training and inference see identical prompt tokens.
 */
export function renderExample(
  format: ChatFormat,
  tokenizer: ReferenceTokenizer,
  example: ChatExample,
): RenderedExample {
  const prompt = encodeLlamaText(tokenizer, format.renderPrompt({ system: example.system, user: example.user }));
  const completion = encodeLlamaText(
    tokenizer,
    format.renderCompletion(format.reasons ? example.reasoning : undefined, example.answer),
  );
  return {
    tokens: [...prompt, ...completion],
    mask: [...prompt.map(() => false), ...completion.map(() => true)],
    promptLength: prompt.length,
  };
}
