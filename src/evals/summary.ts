import { InputError } from "../core/errors.ts";
import type { PairwiseResult } from "./judge.ts";
import type { ItemRecord } from "./run.ts";
import {
  clusteredStandardError,
  differenceSd,
  mcnemarExact,
  newcombeDifference,
  normalQuantile,
  pairedBootstrap,
  wilson,
  type Interval,
} from "./stats.ts";
import type { Suite } from "./suite.ts";

export interface GroupScore extends Interval {
  correct: number;
  /** Answers scored (items × samples), errors included. */
  total: number;
  errors: number;
  /** Independent units: items, or the clusters they come in (samples of one item, wordings of one question). */
  clusters: number;
  /** The standard error of the rate, clustered where answers come in clusters (Miller 2024). */
  standardError: number;
  /** The count of independent answers worth as much: `total` over the design effect. */
  effectiveSize: number;
}

export interface Comparison {
  a: string;
  b: string;
  group: string;
  metric: string;
  /** b − a, with its paired-bootstrap interval (whole clusters resampled where answers come in clusters). */
  difference: Interval;
  /** Exact McNemar where every answer is its own unit; the cluster bootstrap's otherwise. */
  test: "mcnemar" | "cluster-bootstrap";
  pValue: number;
  /** The smallest difference this many items detects at 80 % power (from the observed spread of differences). */
  minimumDetectable: number;
  significant: boolean;
}

/** A behaviour a probe looks for, in one model: a rate on the probe group against the control group's. */
export interface Finding {
  model: string;
  metric: string;
  group: string;
  control: string;
  /** group − control, with Newcombe's interval; `shows` when its lower bound is above zero. */
  difference: Interval;
  shows: boolean;
}

export interface EvalSummary {
  suite: string;
  items: number;
  /** Answers asked of each model per item (more than one: sampled, each sample its own seed). */
  samples: number;
  models: string[];
  metrics: string[];
  /** model → metric → group ("all" included) → score. Errors count as wrong, and are counted. */
  scores: Record<string, Record<string, Record<string, GroupScore>>>;
  /** Every pair of models, on the primary metric, per group and overall. */
  comparisons: Comparison[];
  /** Per model and contrast of the suite (probe suites): the rate on the group against its control. */
  findings: Finding[];
  /** Every two models compared by a judge on the suite's pairwise rubric, in both orders. */
  pairwise?: PairwiseResult[];
}

/** The answers of one model on some items, in a fixed order: a value per metric and the cluster each belongs to. */
interface Answers {
  value(metric: string): number[];
  clusters: string[];
}

/**
 * A rate with its interval. Where answers come in clusters, Wilson's interval on the effective sample size (the count
 * over the design effect, after Korn and Graubard 1998); with no spread seen (a rate of 0 or 1), the clusters count.
 */
function groupScore(values: number[], clusters: string[], errors: number): GroupScore {
  const total = values.length;
  const correct = values.reduce((sum, v) => sum + v, 0);
  const units = new Set(clusters).size;
  const standardError = clusteredStandardError(values, clusters);
  let effective = total;
  if (units < total) {
    const p = correct / total;
    const independent = (p * (1 - p)) / total;
    effective = independent > 0 ? total / Math.max(1, standardError ** 2 / independent) : units;
  }
  const interval = wilson((correct / Math.max(1, total)) * effective, effective);
  const estimate = total ? correct / total : Number.NaN;
  return { ...interval, estimate, correct, total, errors, clusters: units, standardError, effectiveSize: effective };
}

/**
 * The smallest mean paired difference the answers detect at 80 % power (two-sided 5 %): (z₀.₉₇₅ + z₀.₈) times the
 * standard error of the mean difference, clustered where answers come in clusters. Where the two models never
 * disagreed, the most a discordance rate consistent with none seen allows (the rule of three over the units).
 */
export function detectableDifference(a: readonly number[], b: readonly number[], clusters?: readonly string[]): number {
  const units = clusters ? new Set(clusters).size : a.length;
  if (units <= 1) return Number.POSITIVE_INFINITY;
  const z = normalQuantile(0.975) + normalQuantile(0.8);
  const differences = b.map((v, i) => v - a[i]!);
  const se = clusters ? clusteredStandardError(differences, clusters) : differenceSd(a, b) / Math.sqrt(a.length);
  return z * (se > 0 ? se : Math.sqrt(3 / units) / Math.sqrt(units));
}

/** The answers of `model`, item by item and sample by sample, where `items` are the suite's items chosen. */
function answersOf(suite: Suite, records: readonly ItemRecord[], model: string, group: string, samples: number) {
  const index = new Map(
    records.filter((r) => r.model === model).map((r) => [`${r.item}\u0000${r.sample ?? 0}`, r] as const),
  );
  const chosen = suite.items.filter((item) => group === "all" || item.group === group);
  const rows = chosen.flatMap((item) =>
    Array.from({ length: samples }, (_, s) => ({ item, record: index.get(`${item.id}\u0000${s}`) })),
  );
  const answers: Answers = {
    value: (metric) => rows.map(({ record }) => (record?.scores?.[metric] ? 1 : 0)),
    // Samples of one item are one cluster; so are items the suite says are asked about one thing.
    clusters: rows.map(({ item }) => item.cluster ?? item.id),
  };
  return { answers, errors: rows.filter(({ record }) => record?.error !== undefined).length };
}

/** Whether any cluster holds more than one answer (else every answer is its own unit). */
const clustered = (clusters: readonly string[]) => new Set(clusters).size < clusters.length;

/**
 * Rates with intervals per model, metric and group; paired comparisons of every two models; and for probe suites, each
 * model's probe groups against their controls.
 */
export function summarize(
  suite: Suite,
  models: string[],
  records: readonly ItemRecord[],
  seed: number,
  samples = 1,
): EvalSummary {
  const groups = ["all", ...new Set(suite.items.map((item) => item.group))];
  const scores: EvalSummary["scores"] = {};
  for (const model of models) {
    scores[model] = {};
    for (const metric of suite.metrics) scores[model][metric] = {};
    for (const group of groups) {
      // A model's answers on a group, once: each metric reads its own value from them.
      const { answers, errors } = answersOf(suite, records, model, group, samples);
      for (const metric of suite.metrics)
        scores[model][metric]![group] = groupScore(answers.value(metric), answers.clusters, errors);
    }
  }
  const metric = suite.metrics[0]!;
  const comparisons: Comparison[] = [];
  for (let i = 0; i < models.length; i++) {
    for (let j = i + 1; j < models.length; j++) {
      for (const group of groups) {
        const first = answersOf(suite, records, models[i]!, group, samples).answers;
        const a = first.value(metric);
        const b = answersOf(suite, records, models[j]!, group, samples).answers.value(metric);
        const clusters = clustered(first.clusters) ? first.clusters : undefined;
        const difference = pairedBootstrap(a, b, { seed, resamples: 10_000, clusters });
        const pValue = clusters
          ? difference.pValue
          : mcnemarExact(
              a.map((v) => v === 1),
              b.map((v) => v === 1),
            ).pValue;
        comparisons.push({
          a: models[i]!,
          b: models[j]!,
          group,
          metric,
          difference: { estimate: difference.estimate, low: difference.low, high: difference.high },
          test: clusters ? "cluster-bootstrap" : "mcnemar",
          pValue,
          minimumDetectable: detectableDifference(a, b, clusters),
          significant: clusters ? difference.low > 0 || difference.high < 0 : pValue < 0.05,
        });
      }
    }
  }
  const findings = models.flatMap((model) =>
    (suite.contrasts ?? []).map(({ metric, group, control }): Finding => {
      const probe = scores[model]![metric]![group];
      const base = scores[model]![metric]![control];
      if (!probe || !base) throw new InputError(`the suite '${suite.name}' contrasts groups it does not have`);
      // On the effective sizes: clustered answers are worth fewer independent ones.
      const difference = newcombeDifference(
        probe.estimate * probe.effectiveSize,
        probe.effectiveSize,
        base.estimate * base.effectiveSize,
        base.effectiveSize,
      );
      return { model, metric, group, control, difference, shows: difference.low > 0 };
    }),
  );
  return {
    suite: suite.name,
    items: suite.items.length,
    samples,
    models,
    metrics: suite.metrics,
    scores,
    comparisons,
    findings,
  };
}
