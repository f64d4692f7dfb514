import type { LlamaTextJSON } from "node-llama-cpp";
import { InputError } from "../core/errors.ts";
import type { ReferenceTokenizer } from "./reference-tokenizer.ts";

const splitters = new WeakMap<ReferenceTokenizer, RegExp>();

function specialSplitter(tokenizer: ReferenceTokenizer): RegExp {
  let regex = splitters.get(tokenizer);
  if (!regex) {
    const escaped = [...tokenizer.specialTokens.keys()]
      .sort((a, b) => b.length - a.length)
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    regex = new RegExp(`(${escaped.join("|")})`);
    splitters.set(tokenizer, regex);
  }
  return regex;
}

/** Text in which special-token strings are parsed as special tokens (llama.cpp's `parse_special`). */
export function encodeSpecialText(tokenizer: ReferenceTokenizer, text: string): number[] {
  const ids: number[] = [];
  for (const piece of text.split(specialSplitter(tokenizer))) {
    if (piece === "") continue;
    const special = tokenizer.specialTokens.get(piece);
    if (special !== undefined) ids.push(special);
    else ids.push(...tokenizer.encodeText(piece));
  }
  return ids;
}

function roleToken(tokenizer: ReferenceTokenizer, name: string): number {
  const { roles } = tokenizer;
  const id =
    name === "BOS" ? roles.bos : name === "EOS" ? roles.eos : name === "EOT" ? (roles.eot ?? roles.eos) : undefined;
  if (id === undefined) throw new InputError(`the ${tokenizer.family} tokenizer has no ${name} token`);
  return id;
}

/**
 * Tokenizes a node-llama-cpp LlamaText (as JSON) with a family's reference
 * tokenizer exactly as llama.cpp would tokenize it: plain strings as text,
 * special-token text with specials parsed, and special tokens by role.
 */
export function encodeLlamaText(tokenizer: ReferenceTokenizer, text: LlamaTextJSON): number[] {
  const values = typeof text === "string" ? [text] : text;
  const ids: number[] = [];
  for (const value of values) {
    if (typeof value === "string") ids.push(...tokenizer.encodeText(value));
    else if (value.type === "specialTokensText") ids.push(...encodeSpecialText(tokenizer, value.value));
    else ids.push(roleToken(tokenizer, value.value));
  }
  return ids;
}
