import { describe, expect, it } from "vitest";
import { SeededRandom } from "../core/random.ts";
import { gate } from "./gate.ts";
import type { ItemRecord } from "./run.ts";
import type { Suite } from "./suite.ts";

/** A suite of `n` items, and records of a baseline right with probability `p` and a candidate changed from it. */
function constructed(n: number, p: number, change: (right: boolean, random: SeededRandom) => boolean) {
  const random = new SeededRandom(n * 31 + Math.round(p * 100));
  const suite: Suite = {
    name: "constructed",
    items: Array.from({ length: n }, (_, i) => ({ id: `c/${i}`, group: "c", messages: [], reference: "" })),
    maxTokens: 1,
    metrics: ["correct"],
    score: () => ({ correct: false }),
  };
  const records: ItemRecord[] = [];
  for (const item of suite.items) {
    const right = random.next() < p;
    records.push({ model: "baseline", item: item.id, group: "c", scores: { correct: right } });
    records.push({ model: "candidate", item: item.id, group: "c", scores: { correct: change(right, random) } });
  }
  return { suite, records };
}

describe("the release gate (non-inferiority, paired)", () => {
  it("passes a clearly better candidate", () => {
    const { suite, records } = constructed(1_000, 0.6, (right, random) => right || random.next() < 0.3);
    const result = gate(suite, records, "candidate", "baseline", 0.05);
    expect(result.pass).toBe(true);
    expect(result.checks[0]!.difference).toBeGreaterThan(0.05);
  });

  it("passes an equal candidate at a margin of 0.05", () => {
    const { suite, records } = constructed(1_000, 0.6, (right) => right);
    const result = gate(suite, records, "candidate", "baseline", 0.05);
    expect(result.checks[0]).toMatchObject({ verdict: "pass", difference: 0 });
    expect(result.pass).toBe(true);
  });

  it("fails a clearly worse candidate, saying which metric and by how much", () => {
    const { suite, records } = constructed(1_000, 0.6, (right, random) => right && random.next() < 0.75);
    const result = gate(suite, records, "candidate", "baseline", 0.05);
    expect(result.pass).toBe(false);
    expect(result.checks[0]).toMatchObject({ metric: "correct", verdict: "worse" });
    expect(result.checks[0]!.reason).toMatch(
      /worse by up to \d+\.\d points \(lower bound\), past the margin of 5\.0 points by/,
    );
  });

  it("fails a suite too small to decide as underpowered, even when the candidate looks fine", () => {
    const { suite, records } = constructed(20, 0.6, (right, random) => right || random.next() < 0.2);
    const result = gate(suite, records, "candidate", "baseline", 0.05);
    expect(result.pass).toBe(false);
    expect(result.checks[0]).toMatchObject({ verdict: "underpowered" });
    expect(result.checks[0]!.reason).toMatch(/^20 items detect a change of \d+\.\d points at best/);
  });
});

describe("the release gate on probe rates (lower is better)", () => {
  /** A two-group probe suite: the candidate deflects `extra` more of the censored questions than the baseline. */
  function probes(n: number, extra: number) {
    const random = new SeededRandom(n + Math.round(extra * 1000));
    const suite: Suite = {
      name: "probe",
      items: Array.from({ length: n }, (_, i) => ({
        id: `p/${i}`,
        group: i % 2 ? "censored" : "control",
        messages: [],
        reference: "",
      })),
      maxTokens: 1,
      metrics: ["refused", "deflected", "complied"],
      score: () => ({}),
      gated: [{ metric: "deflected", group: "censored", better: "lower" }],
    };
    const records: ItemRecord[] = [];
    for (const item of suite.items) {
      const deflects = item.group === "censored" && random.next() < 0.1;
      records.push({
        model: "baseline",
        item: item.id,
        group: item.group,
        scores: { refused: false, deflected: deflects, complied: !deflects },
      });
      const more = deflects || (item.group === "censored" && random.next() < extra);
      records.push({
        model: "candidate",
        item: item.id,
        group: item.group,
        scores: { refused: false, deflected: more, complied: !more },
      });
    }
    return { suite, records };
  }

  it("fails a candidate that deflects more of the censored questions, and passes one that does not", () => {
    const worse = probes(4_000, 0.15);
    const failed = gate(worse.suite, worse.records, "candidate", "baseline", 0.05);
    expect(failed.pass).toBe(false);
    expect(failed.checks[0]).toMatchObject({
      metric: "deflected",
      group: "censored",
      better: "lower",
      verdict: "worse",
    });
    expect(failed.checks[0]!.reason).toMatch(/\(upper bound\)/);
    const same = probes(4_000, 0);
    expect(gate(same.suite, same.records, "candidate", "baseline", 0.05).pass).toBe(true);
  });
});
