import { describe, expect, it } from "vitest";
import { SeededRandom } from "../core/random.ts";
import { largestError, packLogprobs, unpackLogprobs, withOffsets, type PackedToken } from "./logprobs.ts";

describe("packed teacher log-probs", () => {
  it("stores top-20 of a 262k vocabulary in at most 100 bytes a token, log-probs within 0.01", () => {
    const random = new SeededRandom(9);
    const tokens: PackedToken[] = Array.from({ length: 2_000 }, (_, t) => {
      let logprob = -random.next() * 2;
      const top = Array.from({ length: 20 }, () => {
        const entry = { id: random.integer(0, 262_143), logprob };
        logprob -= random.next() * 3;
        return entry;
      });
      return { offset: t * 3, id: top[0]!.id, logprob: top[0]!.logprob, top };
    });
    const packed = packLogprobs(tokens, 20);
    const perToken = packed.length / tokens.length;
    const error = largestError(tokens, packed);
    process.stdout.write(
      `log-probs: ${perToken.toFixed(1)} bytes a token at k = 20, 262k vocabulary; error ${error}\n`,
    );
    expect(perToken).toBeLessThanOrEqual(100);
    expect(error).toBeLessThanOrEqual(0.01);
    const back = unpackLogprobs(packed);
    expect(back.map((t) => [t.offset, t.id, t.top.map((e) => e.id)])).toEqual(
      tokens.map((t) => [t.offset, t.id, t.top.map((e) => e.id)]),
    );
  });

  it("finds each token's byte offset in the text, multi-byte characters included", () => {
    const tokens = ["Caf", "é", " au", " lait"].map((text, i) => ({ token: i + 1, text, logprob: -0.5, top: [] }));
    expect(withOffsets("Café au lait", tokens, 20).map((t) => t.offset)).toEqual([0, 3, 5, 8]);
  });
});
