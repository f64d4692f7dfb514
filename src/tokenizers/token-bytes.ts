import { bytesToUnicode, TokenType, type ReferenceTokenizer } from "./reference-tokenizer.ts";

const byteOf = new Map(bytesToUnicode().map((char, byte) => [char, byte]));
const encoder = new TextEncoder();
const caches = new WeakMap<ReferenceTokenizer, Map<number, Uint8Array>>();

/**
 * The exact bytes a token stands for, alone (a byte-level BPE piece may be part of a UTF-8 character, which decoding
 * it alone would replace). Alignment across tokenizers compares these.
 */
export function tokenBytes(tokenizer: ReferenceTokenizer, id: number): Uint8Array {
  let cache = caches.get(tokenizer);
  if (!cache) caches.set(tokenizer, (cache = new Map()));
  let bytes = cache.get(id);
  if (bytes) return bytes;
  const text = tokenizer.tokenString(id);
  const type = tokenizer.tokenType(id);
  if (type === TokenType.control || type === TokenType.userDefined) bytes = encoder.encode(text);
  else if (tokenizer.ggufModel === "gpt2") bytes = Uint8Array.from([...text].map((char) => byteOf.get(char) ?? 0x3f));
  else if (type === TokenType.byte) bytes = Uint8Array.of(parseInt(text.slice(3, 5), 16));
  else bytes = encoder.encode(text.replaceAll("\u2581", " "));
  cache.set(id, bytes);
  return bytes;
}

/** A map key for a byte string. */
export const bytesKey = (bytes: Uint8Array) => Buffer.from(bytes).toString("latin1");
