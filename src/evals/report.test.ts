import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { writeFileAtomic } from "../core/atomic-write.ts";
import { PROJECT_ROOT } from "../core/paths.ts";
import { SeededRandom } from "../core/random.ts";
import type { ItemRecord } from "./run.ts";
import { summarize } from "./summary.ts";
import { renderReport } from "./report.ts";
import type { Suite } from "./suite.ts";

/** A summary of three models on a two-group suite, one of them clearly better on one group (a finding). */
function summary() {
  const random = new SeededRandom(5);
  const suite: Suite = {
    name: "report-check",
    items: Array.from({ length: 120 }, (_, i) => ({
      id: `r/${i}`,
      group: i % 2 ? "units" : "logic",
      messages: [],
      reference: "",
    })),
    maxTokens: 1,
    metrics: ["correct"],
    score: () => ({ correct: false }),
    // As a probe suite would: is a model's rate on one group above its rate on a control group?
    contrasts: [{ metric: "correct", group: "units", control: "logic" }],
  };
  const records: ItemRecord[] = [];
  for (const [model, rate] of [
    ["a", 0.4],
    ["b", 0.45],
    ["c", 0.8],
  ] as const) {
    for (const item of suite.items) {
      records.push({
        model,
        item: item.id,
        group: item.group,
        scores: { correct: random.next() < (item.group === "units" ? rate : 0.5) },
      });
    }
  }
  return summarize(suite, ["a", "b", "c"], records, 1);
}

describe("the eval report in Debian's Chromium", () => {
  const folder = join(PROJECT_ROOT, ".avocado", "test-scratch", `report-${process.pid}`);
  mkdirSync(folder, { recursive: true });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it("draws every chart with no console error, offline, and a screenshot is kept", async () => {
    const path = join(folder, "report.html");
    const drawn = summary();
    expect(drawn.findings.filter((f) => f.shows).map((f) => f.model)).toEqual(["c"]);
    await writeFileAtomic(path, renderReport(drawn));
    // Nothing to fetch: no script, style or image from elsewhere.
    expect(readFileSync(path, "utf8")).not.toMatch(/<(?:script|link|img)[^>]+(?:src|href)=/);
    const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
      const errors: string[] = [];
      page.on("console", (message) => {
        if (message.type() === "error") errors.push(message.text());
      });
      page.on("pageerror", (error) => errors.push(error.message));
      // Offline: any request the page makes fails the test.
      await page.route("**/*", (route) =>
        route.request().url().startsWith("file:") ? route.continue() : route.abort(),
      );
      await page.goto(`file://${path}`);
      await page.waitForSelector("body[data-drawn=true]");
      const painted = await page.$$eval("canvas", (canvases) =>
        canvases.map((canvas) => {
          const { data } = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height);
          let inked = 0;
          for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) inked++;
          return inked;
        }),
      );
      // Scores, paired differences, and probe findings.
      expect(painted).toHaveLength(3);
      for (const inked of painted) expect(inked).toBeGreaterThan(1_000);
      await page.screenshot({
        path: join(PROJECT_ROOT, ".avocado", "test-scratch", "eval-report.png"),
        fullPage: true,
      });
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
