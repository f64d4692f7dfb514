/**
 * Signals that a key is extracting the closed model (distilling it through the
 * API), from what every request leaves in the usage records: a SimHash of the
 * prompt (never the prompt), the top_logprobs asked, the temperature, tokens.
 *
 * The score, 0–100, is the sum of four documented parts:
 * - volume (0–25): completion tokens per day, saturating at 2 million;
 * - logprobs (0–30): share of requests asking for log-probs × ((top_logprobs + 1) / 6, at most 1);
 * - coverage (0–20): share of distinct prompts, counted only past 200 requests
 *   (a broad sweep of the input space, as a distillation set is);
 * - templating (0–25): share of prompts within 3 bits of another prompt's SimHash
 *   (one template with a few words changed: a systematic pattern).
 * A key scoring ≥ the configured threshold (default 60) is flagged; the server
 * can throttle it to a reduced RPM.
 */
export interface ExtractionReport {
  requests: number;
  days: number;
  score: number;
  parts: { volume: number; logprobs: number; coverage: number; templating: number };
  facts: {
    completionTokensPerDay: number;
    logprobShare: number;
    meanTopLogprobs: number;
    distinctShare: number;
    templatedShare: number;
    greedyShare: number;
  };
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function fnv1a(text: string, seed: number): number {
  let hash = (FNV_OFFSET ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, FNV_PRIME) >>> 0;
  }
  return hash >>> 0;
}

/** Adds one word's two 32-bit hashes to the SimHash's bit counts. */
function count(counts: Int32Array, low: number, high: number): void {
  for (let bit = 0; bit < 32; bit++) {
    counts[bit]! += (low >>> bit) & 1 ? 1 : -1;
    counts[bit + 32]! += (high >>> bit) & 1 ? 1 : -1;
  }
}

/** Whether the first `length` characters are all ASCII (then a word is a run of [a-z0-9] once lowercased). */
function ascii(text: string, length: number): boolean {
  for (let i = 0; i < length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/**
 * 64-bit SimHash of a prompt's words (first 4,000 characters, lowercased; a
 * word is a run of letters and digits), as 16 hex digits. An ASCII prompt (the
 * common case, on every request's path) is scanned once, hashing each word as
 * it goes, with no lowercased copy, regular expression or word strings; the
 * result is the same as the general path's (tested on random text).
 */
export function simhash(prompt: string): string {
  const counts = new Int32Array(64);
  const length = Math.min(prompt.length, 4000);
  if (ascii(prompt, length)) {
    let low = 0;
    let high = 0;
    let inWord = false;
    for (let i = 0; i <= length; i++) {
      let code = i < length ? prompt.charCodeAt(i) : 0;
      if (code >= 65 && code <= 90) code += 32;
      if ((code >= 97 && code <= 122) || (code >= 48 && code <= 57)) {
        if (!inWord) {
          inWord = true;
          low = FNV_OFFSET >>> 0;
          high = (FNV_OFFSET ^ 0x9e3779b9) >>> 0;
        }
        low = Math.imul(low ^ code, FNV_PRIME) >>> 0;
        high = Math.imul(high ^ code, FNV_PRIME) >>> 0;
      } else if (inWord) {
        inWord = false;
        count(counts, low, high);
      }
    }
  } else {
    for (const word of prompt
      .slice(0, 4000)
      .toLowerCase()
      .match(/[\p{L}\p{N}]+/gu) ?? [])
      count(counts, fnv1a(word, 0), fnv1a(word, 0x9e3779b9));
  }
  let low = 0;
  let high = 0;
  for (let bit = 0; bit < 32; bit++) {
    if (counts[bit]! > 0) low |= 1 << bit;
    if (counts[bit + 32]! > 0) high |= 1 << bit;
  }
  return (high >>> 0).toString(16).padStart(8, "0") + (low >>> 0).toString(16).padStart(8, "0");
}

function popcount32(value: number): number {
  let v = value >>> 0;
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

function distance(a: string, b: string): number {
  return (
    popcount32(parseInt(a.slice(0, 8), 16) ^ parseInt(b.slice(0, 8), 16)) +
    popcount32(parseInt(a.slice(8), 16) ^ parseInt(b.slice(8), 16))
  );
}

/**
 * Share of hashes with a near-duplicate (≤ 3 bits apart, exact duplicates excluded).
 * Four 16-bit bands: two hashes 3 bits apart agree exactly on at least one band.
 */
function templatedShare(hashes: string[]): number {
  const distinct = [...new Set(hashes)];
  if (distinct.length < 2) return 0;
  const buckets = new Map<string, string[]>();
  for (const hash of distinct)
    for (let band = 0; band < 4; band++) {
      const key = `${band}:${hash.slice(band * 4, band * 4 + 4)}`;
      const bucket = buckets.get(key);
      if (bucket) bucket.push(hash);
      else buckets.set(key, [hash]);
    }
  const near = new Set<string>();
  for (const bucket of buckets.values()) {
    if (bucket.length < 2 || bucket.length > 500) continue;
    for (let i = 0; i < bucket.length; i++)
      for (let j = i + 1; j < bucket.length; j++) {
        if (distance(bucket[i]!, bucket[j]!) <= 3) {
          near.add(bucket[i]!);
          near.add(bucket[j]!);
        }
      }
  }
  const counts = new Map<string, number>();
  for (const hash of hashes) counts.set(hash, (counts.get(hash) ?? 0) + 1);
  let templated = 0;
  for (const hash of near) templated += counts.get(hash) ?? 0;
  return templated / hashes.length;
}

export function extractionReport(
  rows: readonly {
    created_at: number;
    completion_tokens: number;
    prompt_simhash: string | null;
    logprobs: number;
    temperature: number | null;
  }[],
  days: number,
): ExtractionReport {
  const requests = rows.length;
  const hashes = rows.map((r) => r.prompt_simhash).filter((h): h is string => h !== null);
  const completionTokensPerDay = rows.reduce((sum, r) => sum + r.completion_tokens, 0) / Math.max(days, 1 / 24);
  const withLogprobs = rows.filter((r) => r.logprobs >= 0);
  const logprobShare = requests ? withLogprobs.length / requests : 0;
  const meanTopLogprobs = withLogprobs.length
    ? withLogprobs.reduce((sum, r) => sum + r.logprobs, 0) / withLogprobs.length
    : 0;
  const distinctShare = hashes.length ? new Set(hashes).size / hashes.length : 0;
  const templated = templatedShare(hashes);
  const greedyShare = requests ? rows.filter((r) => r.temperature === 0).length / requests : 0;
  const parts = {
    volume: 25 * Math.min(1, completionTokensPerDay / 2_000_000),
    logprobs: 30 * logprobShare * Math.min(1, (meanTopLogprobs + 1) / 6),
    coverage: requests >= 200 ? 20 * distinctShare : 0,
    templating: 25 * templated,
  };
  const score = Math.round(parts.volume + parts.logprobs + parts.coverage + parts.templating);
  return {
    requests,
    days,
    score,
    parts,
    facts: {
      completionTokensPerDay,
      logprobShare,
      meanTopLogprobs,
      distinctShare,
      templatedShare: templated,
      greedyShare,
    },
  };
}

/** A key's extraction score, recomputed in the background at most once a minute (requests never wait for it). */
export class ExtractionMonitor {
  private readonly scores = new Map<string, { score: number; at: number; refreshing: boolean }>();
  constructor(
    private readonly load: (keyId: string, since: number) => Promise<Parameters<typeof extractionReport>[0]>,
    private readonly windowDays: number,
    private readonly refreshMs = 60_000,
  ) {}

  /** The last known score of a key (0 until first computed); schedules a refresh when stale. */
  score(keyId: string): number {
    const now = Date.now();
    const known = this.scores.get(keyId);
    if (!known || (now - known.at > this.refreshMs && !known.refreshing)) {
      const entry = known ?? { score: 0, at: 0, refreshing: false };
      entry.refreshing = true;
      this.scores.set(keyId, entry);
      void this.load(keyId, now - this.windowDays * 86_400_000)
        .then((rows) => {
          entry.score = extractionReport(rows, this.windowDays).score;
        })
        .catch(() => undefined)
        .finally(() => {
          entry.at = Date.now();
          entry.refreshing = false;
        });
    }
    return known?.score ?? 0;
  }
}
