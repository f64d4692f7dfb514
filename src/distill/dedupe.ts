import { words } from "../evals/contamination.ts";

/**
 * Near-duplicate detection by MinHash with LSH banding (Broder 1997; Leskovec et al., "Mining of Massive Datasets",
 * ch. 3). A text is the set of its word 5-grams (the whole text when shorter); `permutations` seeded hash functions
 * give its signature; signatures are cut into `bands` bands of `permutations / bands` rows, and two texts sharing a
 * band are candidates. A candidate is a duplicate when the share of equal signature slots (the estimate of their
 * Jaccard similarity) reaches `threshold`. With 128 permutations in 32 bands of 4, a pair at similarity 0.8 becomes a
 * candidate with probability 1 − (1 − 0.8⁴)³² > 0.9999, a pair at 0.3 with about 0.23 (then rejected by the estimate).
 * Written here rather than taken from a package: the npm ones are unmaintained or lack the banded index.
 */
export class NearDuplicates {
  private readonly seeds: Uint32Array;
  private readonly rows: number;
  private readonly buckets = new Map<string, number[]>();
  private readonly signatures: Uint32Array[] = [];

  constructor(
    readonly threshold = 0.8,
    readonly permutations = 128,
    readonly bands = 32,
    readonly shingle = 5,
  ) {
    if (permutations % bands !== 0) throw new RangeError(`${bands} bands do not divide ${permutations} permutations`);
    this.rows = permutations / bands;
    // Fixed seeds: the same texts give the same decisions on every run.
    this.seeds = Uint32Array.from({ length: permutations }, (_, i) =>
      fmix32(0x9e3779b9 ^ Math.imul(i + 1, 0x85ebca6b)),
    );
  }

  /** The texts seen before that this one nearly duplicates (their indices), then remembers it. */
  add(text: string): number[] {
    const signature = this.signature(text);
    const index = this.signatures.length;
    this.signatures.push(signature);
    const candidates = new Set<number>();
    const keys: string[] = [];
    for (let band = 0; band < this.bands; band++) {
      const key = `${band}:${Array.from(signature.subarray(band * this.rows, (band + 1) * this.rows)).join(",")}`;
      keys.push(key);
      for (const other of this.buckets.get(key) ?? []) candidates.add(other);
    }
    for (const key of keys) {
      const bucket = this.buckets.get(key);
      if (bucket) bucket.push(index);
      else this.buckets.set(key, [index]);
    }
    return [...candidates].filter((other) => this.similarity(index, other) >= this.threshold).sort((a, b) => a - b);
  }

  /** The estimated Jaccard similarity of two remembered texts. */
  similarity(a: number, b: number): number {
    const x = this.signatures[a]!;
    const y = this.signatures[b]!;
    let equal = 0;
    for (let i = 0; i < x.length; i++) if (x[i] === y[i]) equal++;
    return equal / x.length;
  }

  private signature(text: string): Uint32Array {
    const tokens = words(text);
    const size = Math.max(1, Math.min(this.shingle, tokens.length));
    const grams = new Set<number>();
    for (let i = 0; i + size <= Math.max(size, tokens.length); i++)
      grams.add(hashString(tokens.slice(i, i + size).join(" ")));
    const signature = new Uint32Array(this.permutations).fill(0xffffffff);
    for (const gram of grams) {
      for (let p = 0; p < this.permutations; p++) {
        const value = fmix32(gram ^ this.seeds[p]!);
        if (value < signature[p]!) signature[p] = value;
      }
    }
    return signature;
  }
}

/** MurmurHash3's 32-bit finalizer: a cheap, well-mixed permutation of 32-bit values. */
function fmix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over UTF-16 code units, then mixed. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return fmix32(h);
}
