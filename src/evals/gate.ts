import { pairedBootstrap } from "./stats.ts";
import type { ItemRecord } from "./run.ts";
import { detectableDifference } from "./summary.ts";
import type { GatedRate, Suite } from "./suite.ts";

export interface GateCheck {
  metric: string;
  /** The items it is measured on ("all", or one group). */
  group: string;
  better: "higher" | "lower";
  /** candidate − baseline over the suite's items, with its paired-bootstrap interval. */
  difference: number;
  low: number;
  high: number;
  minimumDetectable: number;
  verdict: "pass" | "worse" | "underpowered";
  reason: string;
}

export interface GateResult {
  pass: boolean;
  margin: number;
  items: number;
  checks: GateCheck[];
}

/**
 * A non-inferiority test of a candidate against a baseline on the same items, per gated rate of the suite (`gated`; by
 * default every metric, higher is better): it fails when the interval of candidate − baseline reaches past the margin
 * on the worse side (below −margin, or above +margin where lower is better: more over-refusal, more deflection), and
 * when those items are too few to tell a change of the margin (their minimum detectable effect at 80 % power is
 * larger): "underpowered" is a failure, not a pass. A failed call counts as a wrong answer.
 */
export function gate(
  suite: Suite,
  records: readonly ItemRecord[],
  candidate: string,
  baseline: string,
  margin: number,
  seed = 1,
): GateResult {
  const values = (model: string, metric: string, group: string | undefined) => {
    const index = new Map(records.filter((r) => r.model === model).map((r) => [r.item, r]));
    return suite.items
      .filter((item) => group === undefined || item.group === group)
      .map((item) => (index.get(item.id)?.scores?.[metric] ? 1 : 0));
  };
  // Items asked about one thing are resampled together, and the power counted in clusters.
  const clustersOf = (group: string | undefined) => {
    const clusters = suite.items
      .filter((item) => group === undefined || item.group === group)
      .map((item) => item.cluster ?? item.id);
    return new Set(clusters).size < clusters.length ? clusters : undefined;
  };
  const gated: GatedRate[] = suite.gated ?? suite.metrics.map((metric) => ({ metric, better: "higher" }));
  const checks = gated.map(({ metric, group, better }): GateCheck => {
    const b = values(baseline, metric, group);
    const c = values(candidate, metric, group);
    const clusters = clustersOf(group);
    const { estimate, low, high } = pairedBootstrap(b, c, { seed, resamples: 10_000, clusters });
    const minimumDetectable = detectableDifference(b, c, clusters);
    const points = (x: number) => `${(100 * x).toFixed(1)} points`;
    const measured = { metric, group: group ?? "all", better, difference: estimate, low, high, minimumDetectable };
    if (minimumDetectable > margin) {
      const reason = `${b.length} items detect a change of ${points(minimumDetectable)} at best, more than the margin of ${points(margin)}`;
      return { ...measured, verdict: "underpowered", reason };
    }
    // How much worse the candidate may be, at the worse end of the interval.
    const worst = better === "higher" ? -low : high;
    const bound = better === "higher" ? "lower bound" : "upper bound";
    if (worst > margin) {
      const reason = `the candidate may be worse by up to ${points(worst)} (${bound}), past the margin of ${points(margin)} by ${points(worst - margin)}`;
      return { ...measured, verdict: "worse", reason };
    }
    const reason = `no worse than ${points(Math.max(0, worst))} at the ${bound}, within the margin of ${points(margin)}`;
    return { ...measured, verdict: "pass", reason };
  });
  return { pass: checks.every((check) => check.verdict === "pass"), margin, items: suite.items.length, checks };
}
