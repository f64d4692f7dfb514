import { readFile } from "node:fs/promises";
import { Template } from "@huggingface/jinja";
import {
  ChatWrapper,
  LlamaText,
  SpecialTokensText,
  type ChatWrapperGenerateContextStateOptions,
  type ChatWrapperGeneratedContextState,
  type ChatWrapperSettings,
} from "node-llama-cpp";
import { z } from "zod";
import { FileError, InputError, errorMessage } from "../core/errors.ts";

const tokenizerConfigSchema = z.looseObject({
  chat_template: z.union([z.string(), z.array(z.object({ name: z.string(), template: z.string() }))]),
  bos_token: z.union([z.string(), z.object({ content: z.string() }).loose(), z.null()]).optional(),
  eos_token: z.union([z.string(), z.object({ content: z.string() }).loose(), z.null()]).optional(),
});

export interface GenericTemplate {
  chatTemplate: string;
  bosToken: string;
  eosToken: string;
  render(
    messages: readonly { role: string; content: string }[],
    options?: { addGenerationPrompt?: boolean; thinking?: boolean },
  ): string;
}

/**
 * A model's chat template from its tokenizer_config.json, rendered with @huggingface/jinja (as transformers.js does).
 */
export async function loadGenericTemplate(path: string): Promise<GenericTemplate> {
  let parsed: z.infer<typeof tokenizerConfigSchema>;
  try {
    parsed = tokenizerConfigSchema.parse(JSON.parse(await readFile(path, "utf8")));
  } catch (error) {
    throw new FileError(path, `is not a tokenizer_config.json with a chat_template (${errorMessage(error)})`, {
      cause: error,
    });
  }
  const chatTemplate =
    typeof parsed.chat_template === "string"
      ? parsed.chat_template
      : (parsed.chat_template.find((t) => t.name === "default") ?? parsed.chat_template[0])?.template;
  if (!chatTemplate) throw new FileError(path, "has an empty chat_template list");
  const token = (value: typeof parsed.bos_token) => (typeof value === "string" ? value : (value?.content ?? ""));
  try {
    return genericTemplate(chatTemplate, { bosToken: token(parsed.bos_token), eosToken: token(parsed.eos_token) });
  } catch (error) {
    throw new FileError(path, `has a chat_template that does not parse (${errorMessage(error)})`, { cause: error });
  }
}

/** A chat template ready to render (throws when the Jinja does not parse). */
export function genericTemplate(chatTemplate: string, tokens: { bosToken: string; eosToken: string }): GenericTemplate {
  const template = new Template(chatTemplate);
  const { bosToken, eosToken } = tokens;
  return {
    chatTemplate,
    bosToken,
    eosToken,
    render(messages, options = {}) {
      return template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: bosToken,
        eos_token: eosToken,
        ...(options.thinking !== undefined ? { enable_thinking: options.thinking } : {}),
      });
    },
  };
}

/**
 * A node-llama-cpp chat wrapper that renders the prompt with the model's own
 * template through @huggingface/jinja, exactly as transformers would with
 * add_generation_prompt (node-llama-cpp's JinjaTemplateChatWrapper renders the
 * open assistant turn as a finished, thought-less message instead). Thoughts in
 * `<think>…</think>` become reasoning segments.
 */
export class RenderedTemplateChatWrapper extends ChatWrapper {
  readonly wrapperName = "AvocadoRenderedTemplate";
  override readonly settings: ChatWrapperSettings;

  constructor(
    private readonly template: GenericTemplate,
    private readonly options: { thinking?: boolean } = {},
  ) {
    super();
    this.settings = {
      ...ChatWrapper.defaultSettings,
      segments: template.chatTemplate.includes("</think>")
        ? { thought: { prefix: "<think>", suffix: "</think>" } }
        : undefined,
    };
  }

  override generateContextState({
    chatHistory,
  }: ChatWrapperGenerateContextStateOptions): ChatWrapperGeneratedContextState {
    const items = chatHistory.at(-1)?.type === "model" ? chatHistory.slice(0, -1) : chatHistory;
    const messages = items.map((item) =>
      item.type === "system"
        ? {
            role: "system",
            content: typeof item.text === "string" ? item.text : LlamaText.fromJSON(item.text).toString(),
          }
        : item.type === "user"
          ? { role: "user", content: item.text }
          : { role: "assistant", content: item.response.filter((part) => typeof part === "string").join("") },
    );
    const options = { addGenerationPrompt: true, thinking: this.options.thinking };
    const stops = [this.template.eosToken]
      .filter((token) => token !== "")
      .map((token) => LlamaText(new SpecialTokensText(token)));
    return { contextText: markupAndText(this.template, messages, options), stopGenerationTriggers: stops };
  }
}

/** Stands for message i in a rendering: private-use characters, which templates neither trim nor split on. */
const placeholder = (index: number) => `\u{E000}${index}\u{E001}`;
const PLACEHOLDER = /\u{E000}(\d+)\u{E001}/gu;

/**
 * The rendered prompt with the template's own text as markup and each
 * message's text as plain text, so that no message can spell control tokens.
 * Where the messages go is learnt by rendering placeholders in their place; a
 * template that changes a message's text (so the two renderings disagree)
 * cannot be told apart from its markup, and is refused rather than guessed.
 */
export function markupAndText(
  template: GenericTemplate,
  messages: readonly { role: string; content: string }[],
  options: { addGenerationPrompt?: boolean; thinking?: boolean },
): LlamaText {
  const rendered = template.render(messages, options);
  const skeleton = template.render(
    messages.map((m, index) => ({ role: m.role, content: placeholder(index) })),
    options,
  );
  const parts: (string | SpecialTokensText)[] = [];
  let from = 0;
  for (const match of skeleton.matchAll(PLACEHOLDER)) {
    if (match.index > from) parts.push(new SpecialTokensText(skeleton.slice(from, match.index)));
    parts.push(messages[Number(match[1])]!.content);
    from = match.index + match[0].length;
  }
  if (from < skeleton.length) parts.push(new SpecialTokensText(skeleton.slice(from)));
  const text = LlamaText(parts);
  if (text.toString() !== rendered) {
    throw new InputError(
      "the model's chat template changes a message's text, so it cannot be kept apart from the template's markup",
    );
  }
  return text;
}
