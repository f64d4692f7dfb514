import { describe, expect, it } from "vitest";
import { SeededRandom } from "../core/random.ts";
import {
  clusteredStandardError,
  differenceSd,
  mcnemarExact,
  minimumDetectableEffect,
  newcombeDifference,
  normalQuantile,
  pairedBootstrap,
  wilson,
} from "./stats.ts";

describe("eval statistics", () => {
  it("computes normal quantiles and Wilson intervals (checked against closed forms)", () => {
    expect(normalQuantile(0.975)).toBeCloseTo(1.959964, 6);
    expect(normalQuantile(0.8)).toBeCloseTo(0.841621, 6);
    expect(normalQuantile(0.001)).toBeCloseTo(-3.090232, 5);
    const interval = wilson(8, 10);
    expect(interval.estimate).toBe(0.8);
    expect(interval.low).toBeCloseTo(0.490162, 5);
    expect(interval.high).toBeCloseTo(0.943318, 5);
    // Near the edges it stays inside [0, 1] and is not degenerate.
    expect(wilson(0, 20).low).toBe(0);
    expect(wilson(0, 20).high).toBeGreaterThan(0.1);
    expect(wilson(20, 20).high).toBe(1);
  });

  it("gives Newcombe's hybrid score interval for two independent rates (his 1998 paper's worked examples)", () => {
    const cases: [number, number, number, number, number, number][] = [
      [56, 70, 48, 80, 0.0524, 0.3339],
      [9, 10, 3, 10, 0.1705, 0.809],
      [5, 56, 0, 29, -0.0381, 0.1926],
    ];
    for (const [x1, n1, x2, n2, low, high] of cases) {
      const interval = newcombeDifference(x1, n1, x2, n2);
      expect(interval.estimate).toBeCloseTo(x1 / n1 - x2 / n2, 10);
      expect(interval.low).toBeCloseTo(low, 4);
      expect(interval.high).toBeCloseTo(high, 4);
    }
  });

  it("runs the exact McNemar test on discordant pairs (binomial tail, in log space for large n)", () => {
    const a = [true, ...Array<boolean>(9).fill(false)];
    const b = [false, ...Array<boolean>(9).fill(true)];
    expect(mcnemarExact(a, b)).toMatchObject({ onlyA: 1, onlyB: 9 });
    expect(mcnemarExact(a, b).pValue).toBeCloseTo(0.021484375, 12);
    const many = (onlyA: number, onlyB: number) => [
      [...Array<boolean>(onlyA).fill(true), ...Array<boolean>(onlyB).fill(false)],
      [...Array<boolean>(onlyA).fill(false), ...Array<boolean>(onlyB).fill(true)],
    ];
    const [x, y] = many(40, 60);
    expect(mcnemarExact(x!, y!).pValue).toBeCloseTo(0.056888, 5);
    const [big, bigger] = many(5_000, 5_000);
    expect(mcnemarExact(big!, bigger!).pValue).toBe(1);
    expect(mcnemarExact([true, false], [true, false]).pValue).toBe(1);
  });

  it("bootstraps a paired difference: seeded, centred on it, and wider when items come in correlated clusters", () => {
    const random = new SeededRandom(7);
    // Model b is right 10 points more often than a on 1,000 items.
    const a: number[] = Array.from({ length: 1_000 }, () => (random.next() < 0.6 ? 1 : 0));
    const b = a.map((value) => (value === 0 && random.next() < 0.25 ? 1 : value));
    const result = pairedBootstrap(a, b, { resamples: 5_000, seed: 1 });
    expect(pairedBootstrap(a, b, { resamples: 5_000, seed: 1 })).toEqual(result);
    expect(result.estimate).toBeCloseTo((b.reduce((s, v) => s + v, 0) - a.reduce((s, v) => s + v, 0)) / 1_000, 10);
    expect(result.low).toBeGreaterThan(0);
    expect(result.high).toBeGreaterThan(result.estimate);
    expect(result.pValue).toBeLessThan(0.01);
    // Ten items a cluster, all moving together: fewer independent units, a wider interval.
    const clusters = a.map((_, i) => Math.floor(i / 10));
    const together = a.map((_, i) => b[Math.floor(i / 10) * 10]! - a[Math.floor(i / 10) * 10]!);
    const zeros = together.map(() => 0);
    const clustered = pairedBootstrap(zeros, together, { resamples: 5_000, seed: 1, clusters });
    const naive = pairedBootstrap(zeros, together, { resamples: 5_000, seed: 1 });
    expect(clustered.high - clustered.low).toBeGreaterThan(2 * (naive.high - naive.low));
  });

  it("gives clustered standard errors (the plain one for singleton clusters) and minimum detectable effects", () => {
    const values = [1, 0, 1, 1, 0, 0, 1, 0];
    const plain = clusteredStandardError(
      values,
      values.map((_, i) => i),
    );
    const mean = 0.5;
    expect(plain).toBeCloseTo(Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0)) / values.length, 12);
    expect(clusteredStandardError([1, 1, 0, 0], ["x", "x", "y", "y"])).toBeGreaterThan(
      clusteredStandardError([1, 1, 0, 0], [1, 2, 3, 4]),
    );
    // 300 right/wrong items a skill, 20 % of them discordant: a 10-point drop is detectable (MDE ≈ 0.072).
    expect(minimumDetectableEffect(300, Math.sqrt(0.2))).toBeCloseTo(0.0724, 3);
    expect(minimumDetectableEffect(60, Math.sqrt(0.2))).toBeGreaterThan(0.1);
    expect(differenceSd([0, 0, 1, 1], [1, 0, 1, 0])).toBeCloseTo(Math.sqrt(2 / 3), 12);
  });
});
