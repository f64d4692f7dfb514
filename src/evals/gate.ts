import { minimumDetectableEffect, pairedBootstrap } from "./stats.ts";
import { spreadOf, type ItemRecord } from "./run.ts";
import type { Suite } from "./suite.ts";

export interface GateCheck {
  metric: string;
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
 * A non-inferiority test of a candidate against a baseline on the same items, per metric of the suite: it fails when
 * the lower bound of candidate − baseline is below −margin, and when the suite is too small to tell a drop of the
 * margin (its minimum detectable effect at 80 % power is larger): "underpowered" is a failure, not a pass. A failed
 * call counts as a wrong answer.
 */
export function gate(
  suite: Suite,
  records: readonly ItemRecord[],
  candidate: string,
  baseline: string,
  margin: number,
  seed = 1,
): GateResult {
  const values = (model: string, metric: string) => {
    const index = new Map(records.filter((r) => r.model === model).map((r) => [r.item, r]));
    return suite.items.map((item) => (index.get(item.id)?.scores?.[metric] ? 1 : 0));
  };
  const checks = suite.metrics.map((metric): GateCheck => {
    const b = values(baseline, metric);
    const c = values(candidate, metric);
    const { estimate, low, high } = pairedBootstrap(b, c, { seed, resamples: 10_000 });
    const minimumDetectable = minimumDetectableEffect(suite.items.length, spreadOf(b, c));
    const points = (x: number) => `${(100 * x).toFixed(1)} points`;
    const measured = { metric, difference: estimate, low, high, minimumDetectable };
    if (minimumDetectable > margin) {
      const reason = `${suite.items.length} items detect a change of ${points(minimumDetectable)} at best, more than the margin of ${points(margin)}`;
      return { ...measured, verdict: "underpowered", reason };
    }
    if (low < -margin) {
      const reason = `the candidate may be worse by up to ${points(-low)} (lower bound), past the margin of ${points(margin)} by ${points(-low - margin)}`;
      return { ...measured, verdict: "worse", reason };
    }
    const reason = `no worse than ${points(-low)} at the lower bound, within the margin of ${points(margin)}`;
    return { ...measured, verdict: "pass", reason };
  });
  return { pass: checks.every((check) => check.verdict === "pass"), margin, items: suite.items.length, checks };
}
