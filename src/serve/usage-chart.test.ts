import { describe, expect, it } from "vitest";
import type { UsageRow } from "./store/store.ts";
import { usageChartSvg } from "./usage-chart.ts";

const row = (day: string, model: string, cost: number, key = "k1"): UsageRow & { key_prefix: string } => ({
  org_id: "org_1",
  key_id: key,
  key_prefix: `avo_${key}`,
  model,
  day,
  requests: 2,
  prompt_tokens: 10,
  completion_tokens: 5,
  cost,
});

const bars = (svg: string) =>
  [
    ...svg.matchAll(
      /<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" fill="(#[0-9a-f]+)"><title>([^<]+)<\/title>/g,
    ),
  ].map((m) => ({ height: Number(m[2]), fill: m[3], title: m[4] }));

describe("usage chart", () => {
  it("stacks each day's spend by model, in proportion, with the period's totals, the same bytes for the same rows", () => {
    const rows = [
      row("2026-11-01", "avocado-small", 2_000_000),
      row("2026-11-01", "avocado-large", 6_000_000),
      row("2026-11-02", "avocado-large", 3_000_000),
    ];
    const svg = usageChartSvg(rows, { title: "Usage <acme>", by: "model" });
    expect(svg).toBe(usageChartSvg([...rows].reverse(), { title: "Usage <acme>", by: "model" }));
    expect(svg).toContain("Usage &lt;acme&gt;");
    expect(svg).toContain("2026-11-01 to 2026-11-02: 6 requests, 45 tokens, 11 spent (by model)");
    const drawn = bars(svg);
    expect(drawn.map((b) => b.title)).toEqual([
      "2026-11-01 avocado-large: 6",
      "2026-11-01 avocado-small: 2",
      "2026-11-02 avocado-large: 3",
    ]);
    // Heights are proportional to spend; a model keeps its colour from day to day.
    expect(drawn[0]!.height / drawn[1]!.height).toBeCloseTo(3, 1);
    expect(drawn[0]!.height / drawn[2]!.height).toBeCloseTo(2, 1);
    expect(drawn[0]!.fill).toBe(drawn[2]!.fill);
    expect(drawn[0]!.fill).not.toBe(drawn[1]!.fill);
  });

  it("stacks by key when asked, and draws the smallest of many series together as 'other'", () => {
    const rows = Array.from({ length: 10 }, (_, i) => row("2026-11-03", "m", (i + 1) * 1_000, `key${i}`));
    const svg = usageChartSvg(rows, { title: "by key", by: "key" });
    const titles = bars(svg).map((b) => b.title);
    expect(titles).toHaveLength(8);
    expect(titles[0]).toBe("2026-11-03 avo_key9: 0.01");
    expect(titles.at(-1)).toBe(`2026-11-03 other: ${(1_000 + 2_000 + 3_000) / 1_000_000}`);
  });

  it("keeps a day without usage as a gap on the time axis", () => {
    const svg = usageChartSvg([row("2026-11-30", "m", 1_000_000), row("2026-12-02", "m", 1_000_000)], {
      title: "gap",
      by: "model",
    });
    expect([...svg.matchAll(/text-anchor="middle">(\d\d-\d\d)<\/text>/g)].map((m) => m[1])).toEqual([
      "11-30",
      "12-01",
      "12-02",
    ]);
    expect(bars(svg)).toHaveLength(2);
  });

  it("draws an empty period without failing", () => {
    const empty = usageChartSvg([], { title: "nothing", by: "model" });
    expect(empty).toContain("no usage: 0 requests");
    // Readable ticks, not 2e-7.
    expect(empty).not.toMatch(/e-\d/);
    expect(empty).toContain(">0.01</text>");
  });
});
