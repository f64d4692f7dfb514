import type { LlamaModel, Token } from "node-llama-cpp";
import { EngineError, InputError } from "../core/errors.ts";

/** The part of node-llama-cpp's native model (its private `_model`) that the guard wraps. */
interface NativeModel {
  tokenize(text: string, specialTokens: boolean): Uint32Array;
}

/** GGUF `tokenizer.ggml.token_type` of a control token. */
const GGUF_CONTROL = 3;
const GUARDED = Symbol("avocado.plainTextGuard");
/** Spellings of control tokens accepted in one text: each costs a tokenizer call (see the guard). */
export const MAX_SPELLINGS = 64;
/** Texts up to this long are memoised (a format's fixed parts); a customer's long message would pin memory. */
const MEMO_CHARACTERS = 256;
const MEMO_ENTRIES = 4096;

/**
 * The ids a chat format uses as markup: CONTROL in the GGUF, control or
 * end-of-generation to llama.cpp. The GGUF's own types count because llama.cpp
 * re-marks some of them (harmony's `<|start|>`, `<|channel|>`…) as user-defined.
 */
export function controlTokenIds(model: LlamaModel): Set<Token> {
  const ids = new Set<Token>();
  const tokenizer = (model.fileInfo.metadata as { tokenizer?: { ggml?: { token_type?: unknown } } }).tokenizer?.ggml;
  const types = Array.isArray(tokenizer?.token_type) ? (tokenizer.token_type as unknown[]) : [];
  types.forEach((type, id) => {
    if (type === GGUF_CONTROL) ids.add(id as Token);
  });
  for (const token of model.iterateAllTokens()) {
    if (model.getTokenAttributes(token).control || model.isEogToken(token)) ids.add(token);
  }
  return ids;
}

/** A cut inside a control spelling that the BPE pre-tokenizers always split at: before its first letter run. */
function cutPoint(spelling: string): number {
  for (let i = 1; i < spelling.length; i++) {
    if (/[\p{L}\p{N}]/u.test(spelling[i]!) && !/[\p{L}\p{N}]/u.test(spelling[i - 1]!)) return i;
  }
  return 1;
}

/**
 * Makes text tokenized as text (`specialTokens` false) never become control
 * tokens. llama.cpp matches user-defined tokens in any text, and marks some of
 * harmony's (`<|start|>`, `<|end|>`, `<|channel|>`, `<|message|>`) so, which
 * lets a customer's message open turns and channels of its own. Wrapped at
 * node-llama-cpp's native tokenize, every path (chat rendering, counting,
 * completions of plain text) gets it; markup asked for (`specialTokens` true)
 * is untouched. Text with no control spelling costs one regular-expression scan.
 */
export function guardPlainText(model: LlamaModel): void {
  const native = (model as unknown as { _model?: Partial<NativeModel> & { [GUARDED]?: true } })._model;
  if (!native || typeof native.tokenize !== "function") {
    // Refusing is safer than letting customers' text become control tokens.
    throw new EngineError(
      "node-llama-cpp's model no longer has the tokenize method the plain-text guard wraps; check the guard against this version",
    );
  }
  if (native[GUARDED]) return;
  const tokenize = native.tokenize.bind(native) as NativeModel["tokenize"];
  const control = controlTokenIds(model);
  if (control.size === 0) return;
  const spellings = [...control]
    .map((id) => model.detokenize([id], true))
    .filter((spelling) => spelling.length > 1)
    .sort((a, b) => b.length - a.length);
  const pattern =
    spellings.length > 0
      ? new RegExp(spellings.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g")
      : undefined;
  const hasControl = (tokens: Uint32Array) => {
    for (let i = 0; i < tokens.length; i++) if (control.has(tokens[i]! as Token)) return true;
    return false;
  };

  /**
   * The text's tokens as text: each control spelling cut where the pre-tokenizer splits anyway, the parts tokenized
   * apart.
   */
  const plain = (text: string, matches: RegExpMatchArray[]): Uint32Array => {
    const tokens: number[] = [];
    let start = 0;
    const add = (part: string) => {
      let piece = tokenize(part, false);
      // Never expected (spellings that overlap): character by character, which cannot spell a control token.
      if (hasControl(piece))
        piece = Uint32Array.from(
          [...part].flatMap((char) => [...tokenize(char, false)].filter((t) => !control.has(t as Token))),
        );
      for (let i = 0; i < piece.length; i++) tokens.push(piece[i]!);
    };
    for (const match of matches) {
      const cut = match.index! + cutPoint(match[0]);
      add(text.slice(start, cut));
      start = cut;
    }
    add(text.slice(start));
    return Uint32Array.from(tokens);
  };

  // Short texts are memoised: a chat format renders and tokenizes the same fixed parts (harmony's system header, role
  // and channel markers) on every call, and some pre-tokenizers cost ~0.8 ms a call (o200k's, in llama.cpp).
  const memo = new Map<string, Uint32Array>();
  const memoised = (text: string, specialTokens: boolean, run: () => Uint32Array): Uint32Array => {
    if (text.length > MEMO_CHARACTERS) return run();
    const key = `${specialTokens ? "s" : "t"}${text}`;
    let tokens = memo.get(key);
    if (!tokens) {
      tokens = run();
      if (memo.size >= MEMO_ENTRIES) memo.clear();
      memo.set(key, tokens);
    }
    // A copy: callers own what they are given.
    return tokens.slice();
  };

  Object.defineProperties(native, {
    tokenize: {
      value: (text: string, specialTokens: boolean): Uint32Array =>
        memoised(text, specialTokens, () => guardedTokenize(text, specialTokens)),
    },
    [GUARDED]: { value: true },
  });

  function guardedTokenize(text: string, specialTokens: boolean): Uint32Array {
    if (specialTokens || !pattern) return tokenize(text, specialTokens);
    // Looked for first: llama.cpp spends ~0.75 ms on each fragment it partitions a text into, so tens of thousands
    // of spellings in one message would hold the thread for seconds, guarded or not.
    const matches = [...text.matchAll(pattern)];
    if (matches.length === 0) return tokenize(text, false);
    if (matches.length > MAX_SPELLINGS) {
      throw new InputError(
        `the text spells the model's control tokens (such as ${JSON.stringify(matches[0]![0])}) ${matches.length} times; at most ${MAX_SPELLINGS} are accepted`,
      );
    }
    return plain(text, matches);
  }
}
