import { SeededRandom } from "../core/random.ts";

/**
 * The statistics an eval reports (after Miller 2024, "Adding Error Bars to Evals"): accuracy with Wilson intervals,
 * paired comparisons of two models on the same items (bootstrap and exact McNemar), clustered standard errors for
 * items that come in groups, and the smallest effect a suite of this size can detect.
 */

export interface Interval {
  estimate: number;
  low: number;
  high: number;
}

/** The standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`a probability strictly between 0 and 1 is needed (found ${p})`);
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239,
  ];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const tail = (q: number) =>
    (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) /
    ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  if (p < 0.02425) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - 0.02425) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
    (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
  );
}

/** A proportion with its Wilson score interval (well-behaved near 0 and 1, unlike the normal one). */
export function wilson(successes: number, n: number, confidence = 0.95): Interval {
  if (n <= 0) return { estimate: Number.NaN, low: 0, high: 1 };
  const z = normalQuantile(1 - (1 - confidence) / 2);
  const p = successes / n;
  const centre = p + (z * z) / (2 * n);
  const spread = z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n));
  const denominator = 1 + (z * z) / n;
  return {
    estimate: p,
    low: Math.max(0, (centre - spread) / denominator),
    high: Math.min(1, (centre + spread) / denominator),
  };
}

/**
 * The standard error of a mean whose items come in clusters (several questions on one passage, samples of one
 * prompt): the sum of squared within-cluster residual sums (Miller 2024, eq. 4). With one item a cluster it is the
 * usual standard error, up to n − 1 against n.
 */
export function clusteredStandardError(values: readonly number[], clusters: readonly (string | number)[]): number {
  if (values.length !== clusters.length) throw new RangeError("one cluster per value is needed");
  const n = values.length;
  if (n === 0) return Number.NaN;
  const mean = values.reduce((sum, v) => sum + v, 0) / n;
  const residuals = new Map<string | number, number>();
  for (let i = 0; i < n; i++) residuals.set(clusters[i]!, (residuals.get(clusters[i]!) ?? 0) + values[i]! - mean);
  let sum = 0;
  for (const r of residuals.values()) sum += r * r;
  return Math.sqrt(sum) / n;
}

export interface PairedComparison extends Interval {
  /** From the share of resampled differences at or below zero: 2 × min(share, 1 − share), a rough two-sided p. */
  pValue: number;
  resamples: number;
}

/**
 * The mean difference b − a of two models scored on the same items, with a percentile interval from a seeded paired
 * bootstrap. With `clusters`, whole clusters are resampled (items of one cluster are not independent).
 */
export function pairedBootstrap(
  a: readonly number[],
  b: readonly number[],
  options: { resamples?: number; seed?: number; confidence?: number; clusters?: readonly (string | number)[] } = {},
): PairedComparison {
  if (a.length !== b.length)
    throw new RangeError(`paired scores need the same items (${a.length} against ${b.length})`);
  const resamples = options.resamples ?? 10_000;
  const confidence = options.confidence ?? 0.95;
  const random = new SeededRandom(options.seed ?? 20_241_101);
  // Per unit (an item, or a cluster): the summed difference and the item count.
  let sums: Float64Array;
  let counts: Float64Array;
  if (options.clusters) {
    const index = new Map<string | number, number>();
    for (const cluster of options.clusters) if (!index.has(cluster)) index.set(cluster, index.size);
    sums = new Float64Array(index.size);
    counts = new Float64Array(index.size);
    for (let i = 0; i < a.length; i++) {
      const unit = index.get(options.clusters[i]!)!;
      sums[unit]! += b[i]! - a[i]!;
      counts[unit]! += 1;
    }
  } else {
    sums = Float64Array.from(b, (value, i) => value - a[i]!);
    counts = new Float64Array(a.length).fill(1);
  }
  const units = sums.length;
  if (units === 0) return { estimate: Number.NaN, low: Number.NaN, high: Number.NaN, pValue: 1, resamples };
  const estimate = sums.reduce((s, v) => s + v, 0) / counts.reduce((s, v) => s + v, 0);
  const means = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let sum = 0;
    let count = 0;
    for (let k = 0; k < units; k++) {
      const unit = (random.next() * units) | 0;
      sum += sums[unit]!;
      count += counts[unit]!;
    }
    means[r] = sum / count;
  }
  means.sort();
  const tail = (1 - confidence) / 2;
  const at = (q: number) => means[Math.min(resamples - 1, Math.max(0, Math.floor(q * resamples)))]!;
  let atOrBelow = 0;
  for (const mean of means) if (mean <= 0) atOrBelow++;
  const share = atOrBelow / resamples;
  return {
    estimate,
    low: at(tail),
    high: at(1 - tail),
    pValue: Math.min(1, 2 * Math.min(share, 1 - share)),
    resamples,
  };
}

/**
 * Exact McNemar test of two models' right/wrong on the same items: a two-sided binomial test on the discordant pairs
 * (`onlyA`: items only a got right; `onlyB`: only b).
 */
export function mcnemarExact(
  a: readonly boolean[],
  b: readonly boolean[],
): { onlyA: number; onlyB: number; pValue: number } {
  if (a.length !== b.length)
    throw new RangeError(`paired scores need the same items (${a.length} against ${b.length})`);
  let onlyA = 0;
  let onlyB = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] && !b[i]) onlyA++;
    else if (b[i] && !a[i]) onlyB++;
  }
  const n = onlyA + onlyB;
  if (n === 0) return { onlyA, onlyB, pValue: 1 };
  // P(X ≤ min) under Binomial(n, 1/2), summed in log space so that large n does not underflow.
  const k = Math.min(onlyA, onlyB);
  let logTerm = -n * Math.LN2;
  let tail = Math.exp(logTerm);
  for (let i = 1; i <= k; i++) {
    logTerm += Math.log((n - i + 1) / i);
    tail += Math.exp(logTerm);
  }
  return { onlyA, onlyB, pValue: Math.min(1, 2 * tail) };
}

/**
 * The smallest mean paired difference a test of `n` items detects with `power` at two-sided level `alpha`, given the
 * standard deviation of the per-item differences (for right/wrong items with discordance rate q and little net
 * difference, about √q). Reported next to every comparison: a difference below it is not evidence of none.
 */
export function minimumDetectableEffect(n: number, sdDifference: number, alpha = 0.05, power = 0.8): number {
  if (n <= 1) return Number.POSITIVE_INFINITY;
  return ((normalQuantile(1 - alpha / 2) + normalQuantile(power)) * sdDifference) / Math.sqrt(n);
}

/** The sample standard deviation of paired differences b − a. */
export function differenceSd(a: readonly number[], b: readonly number[]): number {
  const n = a.length;
  if (n < 2) return Number.NaN;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += b[i]! - a[i]!;
  mean /= n;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += (b[i]! - a[i]! - mean) ** 2;
  return Math.sqrt(sum / (n - 1));
}

/**
 * The difference of two independent proportions x1/n1 − x2/n2 with Newcombe's hybrid score interval (his method 10,
 * from the two Wilson intervals): it keeps its coverage at rates near 0 and 1, where a probe's rates usually are.
 */
export function newcombeDifference(x1: number, n1: number, x2: number, n2: number, confidence = 0.95): Interval {
  if (n1 <= 0 || n2 <= 0) return { estimate: Number.NaN, low: -1, high: 1 };
  const p1 = x1 / n1;
  const p2 = x2 / n2;
  const a = wilson(x1, n1, confidence);
  const b = wilson(x2, n2, confidence);
  return {
    estimate: p1 - p2,
    low: p1 - p2 - Math.sqrt((p1 - a.low) ** 2 + (b.high - p2) ** 2),
    high: p1 - p2 + Math.sqrt((a.high - p1) ** 2 + (p2 - b.low) ** 2),
  };
}
