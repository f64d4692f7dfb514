import { Tiktoken } from "js-tiktoken/lite";
import o200kBase from "js-tiktoken/ranks/o200k_base";
import { bytesToUnicode, TokenType, type ReferenceTokenizer, type TokenTypeValue } from "./reference-tokenizer.ts";

/** The harmony special tokens of o200k_harmony (gpt-oss), ids 199,998–201,087. */
const NAMED_SPECIALS: Record<number, string> = {
  199998: "<|startoftext|>",
  199999: "<|endoftext|>",
  200002: "<|return|>",
  200003: "<|constrain|>",
  200005: "<|channel|>",
  200006: "<|start|>",
  200007: "<|end|>",
  200008: "<|message|>",
  200012: "<|call|>",
  200018: "<|endofprompt|>",
};
const FIRST_SPECIAL = 199998;
const VOCABULARY_SIZE = 201088;

interface TiktokenInternals {
  rankMap: Map<string, number>;
  textMap: Map<number, Uint8Array>;
}

/**
 * gpt-oss's o200k_harmony: js-tiktoken's `o200k_base` ranks plus the harmony
 * special tokens. Served to llama.cpp as byte-level BPE ("gpt2") with merges
 * derived from the ranks.
 */
export class O200kHarmonyTokenizer implements ReferenceTokenizer {
  readonly family = "gptoss" as const;
  readonly description = "o200k_harmony byte-level BPE (js-tiktoken o200k_base + harmony specials)";
  readonly ggufModel = "gpt2" as const;
  readonly ggufPre = "granite-embed-multi-97m";
  readonly vocabularySize = VOCABULARY_SIZE;
  readonly specialTokens = new Map<string, number>();
  readonly roles = { bos: 199998, eos: 200002, eot: 200002, pad: 199999, addBos: false };
  private readonly encoder = new Tiktoken(o200kBase);
  private readonly internals = this.encoder as unknown as TiktokenInternals;
  private readonly byteChars = bytesToUnicode();
  private readonly partsCache = new Map<number, [number, number] | null>();

  constructor() {
    for (let id = FIRST_SPECIAL; id < VOCABULARY_SIZE; id++) this.specialTokens.set(this.tokenString(id), id);
  }

  encodeText(text: string): number[] {
    return this.encoder.encode(text, [], []);
  }
  decode(ids: readonly number[]): string {
    const parts: Uint8Array[] = [];
    for (const id of ids) {
      if (id >= FIRST_SPECIAL) parts.push(new TextEncoder().encode(this.tokenString(id)));
      else parts.push(this.bytes(id));
    }
    return Buffer.concat(parts).toString("utf8");
  }
  private bytes(id: number): Uint8Array {
    const bytes = this.internals.textMap.get(id);
    if (!bytes) throw new Error(`o200k has no token ${id}`);
    return bytes;
  }
  tokenString(id: number): string {
    if (id >= FIRST_SPECIAL) return NAMED_SPECIALS[id] ?? `<|reserved_${id}|>`;
    return Array.from(this.bytes(id), (b) => this.byteChars[b]).join("");
  }
  tokenType(id: number): TokenTypeValue {
    return id >= FIRST_SPECIAL ? TokenType.control : TokenType.normal;
  }
  tokenScore(): number {
    return 0;
  }
  private rankOf(bytes: readonly number[]): number | undefined {
    return this.internals.rankMap.get(bytes.join(","));
  }
  /** The two parts that BPE over the token's bytes, with lower ranks only, ends with. */
  private parts(id: number): [number, number] | null {
    const cached = this.partsCache.get(id);
    if (cached !== undefined) return cached;
    let result: [number, number] | null = null;
    if (id < FIRST_SPECIAL) {
      let pieces: number[][] = Array.from(this.bytes(id), (b) => [b]);
      while (pieces.length > 2) {
        let best = -1;
        let bestRank = Infinity;
        for (let i = 0; i + 1 < pieces.length; i++) {
          const rank = this.rankOf([...(pieces[i] as number[]), ...(pieces[i + 1] as number[])]);
          if (rank !== undefined && rank < id && rank < bestRank) {
            bestRank = rank;
            best = i;
          }
        }
        if (best < 0) break;
        pieces = [
          ...pieces.slice(0, best),
          [...(pieces[best] as number[]), ...(pieces[best + 1] as number[])],
          ...pieces.slice(best + 2),
        ];
      }
      if (pieces.length === 2) {
        const left = this.rankOf(pieces[0] as number[]);
        const right = this.rankOf(pieces[1] as number[]);
        if (left !== undefined && right !== undefined) result = [left, right];
      }
    }
    this.partsCache.set(id, result);
    return result;
  }
  mergeAncestors(id: number): number[] {
    return this.parts(id) ?? [];
  }
  baseTokens(): number[] {
    const ids: number[] = [];
    for (let b = 0; b < 256; b++) {
      const id = this.rankOf([b]);
      if (id === undefined) throw new Error(`o200k lacks byte ${b}`);
      ids.push(id);
    }
    return ids;
  }
  mergesFor(kept: ReadonlySet<number>): string[] {
    const merges: string[] = [];
    for (const id of [...kept].sort((a, b) => a - b)) {
      const parts = this.parts(id);
      if (parts && kept.has(parts[0]) && kept.has(parts[1])) {
        merges.push(`${this.tokenString(parts[0])} ${this.tokenString(parts[1])}`);
      }
    }
    return merges;
  }
}
