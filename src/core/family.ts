/**
 * A model family: how its chat is rendered and its text tokenized. Qwen, Gemma and gpt-oss have their chat formats
 * and tokenizers in Avocado; "generic" is any other model, chatted with through its own `tokenizer_config.json`
 * template.
 */
export const FAMILIES = ["qwen", "gemma", "gptoss", "generic"] as const;
export type Family = (typeof FAMILIES)[number];

/** The families whose real tokenizer ships with Avocado (vocabulary trimming, GGUF export, exact counts). */
export const TOKENIZER_FAMILIES = ["qwen", "gemma", "gptoss"] as const;
export type TokenizerFamily = (typeof TOKENIZER_FAMILIES)[number];
