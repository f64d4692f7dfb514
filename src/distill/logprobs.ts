import type { TokenLogprob } from "../teachers/teacher.ts";

/**
 * Teacher log-probs for knowledge distillation, packed compactly (`avocado-logprobs/1`). One record per scored answer:
 *
 *   header: varint tokens, varint k, byte idBits
 *   per token: varint byteOffset delta (into the answer's UTF-8 text), then bit-packed:
 *     the chosen token's id (idBits) and −logprob (16 bits), then k × (id, −logprob), most likely first.
 *
 * A −logprob is stored in units of 1/256 nat (error ≤ 1/512 ≈ 0.002; −logprobs past 255.99 are clamped, a probability
 * below e⁻²⁵⁶ that no loss can tell from zero). ids are in the teacher's family vocabulary; `idBits` is the width the
 * record's largest id needs (18 for a 262k vocabulary). At k = 20 that is about 1 + 21 × (18 + 16) / 8 ≈ 90 bytes a
 * token. The byte offsets let cross-tokenizer distillation align a teacher's tokens with the student's.
 */
export const LOGPROB_SCALE = 256;
const MAX_QUANTUM = 0xffff;

export interface PackedToken {
  /** Where the token starts in the answer's UTF-8 bytes. */
  offset: number;
  id: number;
  logprob: number;
  top: { id: number; logprob: number }[];
}

class BitWriter {
  private bytes: number[] = [];
  private current = 0;
  private used = 0;

  bits(value: number, width: number): void {
    for (let bit = width - 1; bit >= 0; bit--) {
      this.current = (this.current << 1) | (Math.floor(value / 2 ** bit) & 1);
      if (++this.used === 8) this.flush();
    }
  }

  varint(value: number): void {
    this.align();
    let rest = value;
    while (rest >= 0x80) {
      this.bytes.push((rest & 0x7f) | 0x80);
      rest = Math.floor(rest / 128);
    }
    this.bytes.push(rest);
  }

  align(): void {
    if (this.used > 0) {
      this.current <<= 8 - this.used;
      this.flush();
    }
  }

  finish(): Uint8Array {
    this.align();
    return Uint8Array.from(this.bytes);
  }

  private flush(): void {
    this.bytes.push(this.current & 0xff);
    this.current = 0;
    this.used = 0;
  }
}

class BitReader {
  private position = 0;
  private bit = 0;

  constructor(private readonly bytes: Uint8Array) {}

  bits(width: number): number {
    let value = 0;
    for (let i = 0; i < width; i++) {
      const byte = this.bytes[this.position]!;
      value = value * 2 + ((byte >> (7 - this.bit)) & 1);
      if (++this.bit === 8) {
        this.bit = 0;
        this.position++;
      }
    }
    return value;
  }

  varint(): number {
    this.align();
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = this.bytes[this.position++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
  }

  align(): void {
    if (this.bit > 0) {
      this.bit = 0;
      this.position++;
    }
  }
}

const quantize = (logprob: number) => Math.min(MAX_QUANTUM, Math.max(0, Math.round(-logprob * LOGPROB_SCALE)));
const dequantize = (quantum: number) => -quantum / LOGPROB_SCALE;

/** Packs one answer's scored tokens (every token's top list cut or padded to k by the caller's k). */
export function packLogprobs(tokens: readonly PackedToken[], k: number): Uint8Array {
  const largest = Math.max(1, ...tokens.flatMap((t) => [t.id, ...t.top.map((entry) => entry.id)]));
  const idBits = Math.max(1, Math.ceil(Math.log2(largest + 1)));
  const writer = new BitWriter();
  writer.varint(tokens.length);
  writer.varint(k);
  writer.bits(idBits, 8);
  let previous = 0;
  for (const token of tokens) {
    writer.varint(token.offset - previous);
    previous = token.offset;
    writer.bits(token.id, idBits);
    writer.bits(quantize(token.logprob), 16);
    for (let i = 0; i < k; i++) {
      // A position with fewer than k alternatives (a tiny vocabulary) repeats its last one.
      const entry = token.top[Math.min(i, token.top.length - 1)] ?? { id: token.id, logprob: token.logprob };
      writer.bits(entry.id, idBits);
      writer.bits(quantize(entry.logprob), 16);
    }
  }
  return writer.finish();
}

/** The tokens of a packed record (log-probs to within 1/512). */
export function unpackLogprobs(bytes: Uint8Array): PackedToken[] {
  const reader = new BitReader(bytes);
  const count = reader.varint();
  const k = reader.varint();
  const idBits = reader.bits(8);
  const tokens: PackedToken[] = [];
  let offset = 0;
  for (let t = 0; t < count; t++) {
    offset += reader.varint();
    const id = reader.bits(idBits);
    const logprob = dequantize(reader.bits(16));
    const top = Array.from({ length: k }, () => ({ id: reader.bits(idBits), logprob: dequantize(reader.bits(16)) }));
    tokens.push({ offset, id, logprob, top });
  }
  return tokens;
}

/**
 * A scored answer's tokens with their byte offsets into `text`: each token's text is found in order (a token whose
 * text is not where expected, such as part of a multi-byte character, keeps the offset reached so far).
 */
export function withOffsets(text: string, tokens: readonly TokenLogprob[], k: number): PackedToken[] {
  const encoder = new TextEncoder();
  let charPosition = 0;
  let bytePosition = 0;
  return tokens.map((token) => {
    const at = token.text === "" ? -1 : text.indexOf(token.text, charPosition);
    if (at >= 0) {
      bytePosition += encoder.encode(text.slice(charPosition, at)).length;
      charPosition = at;
    }
    const offset = bytePosition;
    if (at >= 0) {
      bytePosition += encoder.encode(token.text).length;
      charPosition = at + token.text.length;
    }
    return {
      offset,
      id: token.token ?? 0,
      logprob: token.logprob,
      top: token.top.slice(0, k).map((entry) => ({ id: entry.token ?? 0, logprob: entry.logprob })),
    };
  });
}

/** The largest difference between the log-probs given and those a packed record gives back. */
export function largestError(original: readonly PackedToken[], packed: Uint8Array): number {
  const back = unpackLogprobs(packed);
  let worst = 0;
  original.forEach((token, t) => {
    worst = Math.max(worst, Math.abs(token.logprob - back[t]!.logprob));
    token.top.forEach((entry, i) => (worst = Math.max(worst, Math.abs(entry.logprob - back[t]!.top[i]!.logprob))));
  });
  return worst;
}
