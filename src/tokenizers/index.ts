import { Gemma3Tokenizer } from "./gemma3.ts";
import { O200kHarmonyTokenizer } from "./o200k-harmony.ts";
import { Qwen3Tokenizer } from "./qwen3.ts";
import type { TokenizerFamily } from "../core/family.ts";
import type { ReferenceTokenizer } from "./reference-tokenizer.ts";

const cache = new Map<TokenizerFamily, ReferenceTokenizer>();

/** The family's full reference tokenizer (loaded once per process; Gemma's takes ~1 s). */
export function referenceTokenizer(family: TokenizerFamily): ReferenceTokenizer {
  let tokenizer = cache.get(family);
  if (!tokenizer) {
    tokenizer =
      family === "qwen"
        ? new Qwen3Tokenizer()
        : family === "gemma"
          ? new Gemma3Tokenizer()
          : new O200kHarmonyTokenizer();
    cache.set(family, tokenizer);
  }
  return tokenizer;
}
