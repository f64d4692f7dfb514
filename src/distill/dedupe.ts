import { words } from "../evals/contamination.ts";

/**
 * Near-duplicate detection by MinHash with LSH banding (Broder 1997; Leskovec et al., "Mining of Massive Datasets",
 * ch. 3). A text is the set of its word 5-grams (the whole text when shorter); `permutations` seeded hash functions
 * give its signature; signatures are cut into `bands` bands of `permutations / bands` rows, and two texts sharing a
 * band are candidates. A candidate is a duplicate when the share of equal signature slots (the estimate of their
 * Jaccard similarity) reaches `threshold`. With 128 permutations in 16 bands of 8, a pair at similarity 0.8 becomes a
 * candidate with probability 1 − (1 − 0.8⁸)¹⁶ ≈ 0.95 (0.85: 0.994; 0.9: 0.9998), a pair at 0.3 with about 0.001: few
 * candidates to check, where 32 bands of 4 made GSM8K's shared phrasing a candidate for most pairs.
 * Written here rather than taken from a package: the npm ones are unmaintained or lack the banded index.
 */
export class NearDuplicates {
  private readonly seeds: Int32Array;
  private readonly multipliers: Int32Array;
  private readonly rows: number;
  /** Per band: the band's hash → the texts holding it. */
  private readonly buckets: Map<number, number[]>[];
  private readonly signatures: Int32Array[] = [];

  constructor(
    readonly threshold = 0.8,
    readonly permutations = 128,
    readonly bands = 16,
    readonly shingle = 5,
  ) {
    if (permutations % bands !== 0) throw new RangeError(`${bands} bands do not divide ${permutations} permutations`);
    this.rows = permutations / bands;
    this.buckets = Array.from({ length: bands }, () => new Map<number, number[]>());
    // Fixed seeds: the same texts give the same decisions on every run.
    [this.seeds, this.multipliers] = hashFamily(permutations);
  }

  /** The texts seen before that this one nearly duplicates (their indices), then remembers it. */
  add(text: string): number[] {
    const signature = this.signature(text);
    const index = this.signatures.length;
    this.signatures.push(signature);
    const candidates = new Set<number>();
    for (let band = 0; band < this.bands; band++) {
      // The band's rows hashed to one number (a collision only adds a candidate, which the estimate then rejects).
      let key = band;
      for (let row = band * this.rows; row < (band + 1) * this.rows; row++) key = fmix32(key ^ signature[row]!);
      const bucket = this.buckets[band]!.get(key);
      if (bucket) {
        for (const other of bucket) candidates.add(other);
        bucket.push(index);
      } else this.buckets[band]!.set(key, [index]);
    }
    const found: number[] = [];
    for (const other of candidates) if (this.similarity(index, other) >= this.threshold) found.push(other);
    return found.sort((a, b) => a - b);
  }

  /** The estimated Jaccard similarity of two remembered texts. */
  similarity(a: number, b: number): number {
    const x = this.signatures[a]!;
    const y = this.signatures[b]!;
    let equal = 0;
    for (let i = 0; i < x.length; i++) if (x[i] === y[i]) equal++;
    return equal / x.length;
  }

  private signature(text: string): Int32Array {
    // Each word hashed once; a gram's hash chains its words' (no strings built per gram).
    const tokens = words(text).map(hashString);
    const size = Math.max(1, Math.min(this.shingle, tokens.length));
    const count = Math.max(size, tokens.length) - size + 1;
    const grams = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      let h = size;
      for (let j = i; j < i + size; j++) h = fmix32(h ^ (tokens[j] ?? 0));
      grams[i] = h;
    }
    const signature = new Int32Array(this.permutations);
    for (let p = 0; p < this.permutations; p++) {
      // A random odd multiplier and an offset: a permutation of 32-bit values, cheap on well-mixed input.
      const a = this.multipliers[p]!;
      const b = this.seeds[p]!;
      let min = 0x7fffffff;
      for (let g = 0; g < count; g++) {
        const value = (Math.imul(grams[g]!, a) + b) | 0;
        if (value < min) min = value;
      }
      signature[p] = min;
    }
    return signature;
  }
}

const families = new Map<number, [Int32Array, Int32Array]>();

/**
 * The `permutations` hash functions (an offset and an odd multiplier each), fixed so that the same texts give the same
 * decisions on every run, and made once. Signed 32-bit throughout: values past 2³¹ would be doubles to V8, several
 * times slower in the inner loop.
 */
function hashFamily(permutations: number): [Int32Array, Int32Array] {
  let family = families.get(permutations);
  if (!family) {
    const seeds = Int32Array.from({ length: permutations }, (_, i) =>
      fmix32(0x9e3779b9 ^ Math.imul(i + 1, 0x85ebca6b)),
    );
    family = [seeds, Int32Array.from(seeds, (seed) => fmix32(seed ^ 0x27d4eb2f) | 1)];
    families.set(permutations, family);
  }
  return family;
}

/** MurmurHash3's 32-bit finalizer: a cheap, well-mixed permutation of 32-bit values (signed: V8 keeps them small). */
function fmix32(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

/** FNV-1a over UTF-16 code units, then mixed. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return fmix32(h);
}
