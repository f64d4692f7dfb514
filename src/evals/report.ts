import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { EvalSummary } from "./summary.ts";

const require = createRequire(import.meta.url);

/** Chart.js's browser build, to inline: the reports fetch nothing. */
export function chartJsSource(): string {
  // The browser build beside the package's main file (its exports name no path to it).
  return readFileSync(join(dirname(require.resolve("chart.js")), "chart.umd.min.js"), "utf8");
}

/** Text safe inside HTML (and inside a <script> holding JSON: no `</script>` can close it early). */
export const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
const percent = (value: number) => (Number.isFinite(value) ? `${(100 * value).toFixed(1)}%` : "–");

/**
 * The eval's report: one self-contained HTML file (Chart.js inlined, no network), drawn from `summary.json`:
 * per metric, each model's score per group with its 95 % interval; the paired differences with theirs; and the
 * numbers as tables.
 */
export function renderReport(summary: EvalSummary): string {
  const chartJs = chartJsSource();
  const groups = Object.keys(summary.scores[summary.models[0]!]?.[summary.metrics[0]!] ?? {});
  const rows = summary.metrics.flatMap((metric) =>
    summary.models.map(
      (model) =>
        `<tr><td>${escapeHtml(metric)}</td><td>${escapeHtml(model)}</td>${groups
          .map((group) => {
            const s = summary.scores[model]![metric]![group]!;
            return `<td>${percent(s.estimate)} <small>[${percent(s.low)}, ${percent(s.high)}]${s.errors ? `, ${s.errors} errors` : ""}</small></td>`;
          })
          .join("")}</tr>`,
    ),
  );
  const comparisons = summary.comparisons.map(
    (c) =>
      `<tr${c.significant ? ' class="significant"' : ""}><td>${escapeHtml(c.b)} − ${escapeHtml(c.a)}</td><td>${escapeHtml(c.group)}</td><td>${percent(c.difference.estimate)} <small>[${percent(c.difference.low)}, ${percent(c.difference.high)}]</small></td><td>${c.pValue.toPrecision(2)} <small>${c.test}</small></td><td>${percent(c.minimumDetectable)}</td></tr>`,
  );
  const findings = summary.findings.map(
    (f) =>
      `<tr${f.shows ? ' class="significant"' : ""}><td>${escapeHtml(f.model)}</td><td>${escapeHtml(f.metric)}</td><td>${escapeHtml(f.group)} − ${escapeHtml(f.control)}</td><td>${percent(f.difference.estimate)} <small>[${percent(f.difference.low)}, ${percent(f.difference.high)}]</small></td><td>${f.shows ? "shows" : "not shown"}</td></tr>`,
  );
  const pairwise = (summary.pairwise ?? []).map(
    (p) =>
      `<tr><td>${escapeHtml(p.b)} against ${escapeHtml(p.a)}</td><td>${p.winsB}</td><td>${p.winsA}</td><td>${p.ties} <small>(${p.inconsistent} from orders that disagreed)</small></td><td>${p.errors}</td><td>${percent(p.winRateB.estimate)} <small>[${percent(p.winRateB.low)}, ${percent(p.winRateB.high)}]</small></td></tr>`,
  );
  // The data the page draws, as JSON inside a script element: `<` escaped so that no text can end the element.
  const data = JSON.stringify({ summary, groups }).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Avocado eval: ${escapeHtml(summary.suite)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.chart { position: relative; height: 320px; max-width: 960px; }
table { border-collapse: collapse; margin-top: .5rem; } td, th { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; }
small { color: #666; } tr.significant td { background: #fff6d6; }
</style>
</head>
<body>
<h1>${escapeHtml(summary.suite)}: ${summary.items} items, ${summary.models.map(escape).join(", ")}</h1>
<p>Each bar is a 95 % interval (Wilson for scores, paired bootstrap for differences); the line or marker across it is
the estimate.
Highlighted comparisons differ significantly (exact McNemar, p &lt; 0.05; where answers come in clusters, samples of one
item or wordings of one question, the cluster bootstrap's interval excludes 0); "detectable" is the smallest
difference this many items detects at 80 % power.${summary.samples > 1 ? ` Each item was asked ${summary.samples} times, sampled.` : ""}</p>
${summary.metrics.map((metric, index) => `<h2>${escapeHtml(metric)} by group</h2><div class="chart"><canvas id="metric-${index}"></canvas></div>`).join("\n")}
${summary.comparisons.length > 0 ? `<h2>Paired differences (${escapeHtml(summary.metrics[0]!)})</h2><div class="chart"><canvas id="differences"></canvas></div>` : ""}
${findings.length > 0 ? `<h2>Behaviours: probe group against its control</h2><div class="chart"><canvas id="findings"></canvas></div>` : ""}
<h2>Scores</h2>
<table><tr><th>metric</th><th>model</th>${groups.map((g) => `<th>${escapeHtml(g)}</th>`).join("")}</tr>${rows.join("")}</table>
${comparisons.length > 0 ? `<h2>Comparisons</h2><table><tr><th>difference</th><th>group</th><th>estimate [95 %]</th><th>p</th><th>detectable</th></tr>${comparisons.join("")}</table>` : ""}
${findings.length > 0 ? `<h2>Findings</h2><p>A behaviour shows where the rate on the probe group is above the control group's at the lower end of its 95 % interval (Newcombe).</p><table><tr><th>model</th><th>metric</th><th>groups</th><th>difference [95 %]</th><th></th></tr>${findings.join("")}</table>` : ""}
${pairwise.length > 0 ? `<h2>Judged pairs</h2><p>Each pair judged in both orders; a win counts only when both orders agree.</p><table><tr><th>pair</th><th>wins</th><th>losses</th><th>ties</th><th>errors</th><th>win rate [95 %]</th></tr>${pairwise.join("")}</table>` : ""}
<script>${chartJs}</script>
<script type="application/json" id="data">${data}</script>
<script>
const { summary, groups } = JSON.parse(document.getElementById("data").textContent);
const colours = ["#2f6fb0", "#d9822b", "#3a9a5b", "#a43d8e", "#7a7a7a"];
const interval = (s) => [s.low, s.high];
// The estimate, drawn as a line across its interval's bar (points would not follow the bars' grouping).
const estimateLines = {
  id: "estimates",
  afterDatasetsDraw(chart) {
    const { ctx, scales } = chart;
    chart.data.datasets.forEach((dataset, d) => {
      if (!dataset.estimates) return;
      chart.getDatasetMeta(d).data.forEach((bar, i) => {
        const y = scales.y.getPixelForValue(dataset.estimates[i]);
        ctx.save();
        ctx.strokeStyle = dataset.borderColor;
        ctx.lineWidth = 3;
        ctx.beginPath();
        ctx.moveTo(bar.x - bar.width / 2, y);
        ctx.lineTo(bar.x + bar.width / 2, y);
        ctx.stroke();
        ctx.restore();
      });
    });
  },
};
summary.metrics.forEach((metric, index) => {
  const datasets = summary.models.map((model, m) => ({
    type: "bar",
    label: model,
    data: groups.map((g) => interval(summary.scores[model][metric][g])),
    estimates: groups.map((g) => summary.scores[model][metric][g].estimate),
    backgroundColor: colours[m % colours.length] + "55",
    borderColor: colours[m % colours.length],
    borderWidth: 1,
  }));
  new Chart(document.getElementById("metric-" + index), { data: { labels: groups, datasets }, plugins: [estimateLines], options: { maintainAspectRatio: false, animation: false, scales: { y: { min: 0, max: 1 } } } });
});
const differences = document.getElementById("differences");
if (differences) {
  const shown = summary.comparisons;
  const labels = shown.map((c) => c.b + " − " + c.a + " · " + c.group);
  new Chart(differences, {
    data: {
      labels,
      datasets: [
        { type: "bar", label: "95 % interval", data: shown.map((c) => [c.difference.low, c.difference.high]), backgroundColor: shown.map((c) => (c.significant ? "#d9822b88" : "#7a7a7a55")) },
        { type: "line", label: "estimate", data: shown.map((c) => c.difference.estimate), showLine: false, pointStyle: "rectRot", pointRadius: 5, borderColor: "#222", backgroundColor: "#222" },
      ],
    },
    options: { indexAxis: "y", maintainAspectRatio: false, animation: false, scales: { x: { min: -1, max: 1 } } },
  });
}
const findings = document.getElementById("findings");
if (findings) {
  const shown = summary.findings;
  new Chart(findings, {
    data: {
      labels: shown.map((f) => f.model + " · " + f.metric + " · " + f.group + " − " + f.control),
      datasets: [
        { type: "bar", label: "95 % interval", data: shown.map((f) => [f.difference.low, f.difference.high]), backgroundColor: shown.map((f) => (f.shows ? "#d9822b88" : "#7a7a7a55")) },
        { type: "line", label: "estimate", data: shown.map((f) => f.difference.estimate), showLine: false, pointStyle: "rectRot", pointRadius: 5, borderColor: "#222", backgroundColor: "#222" },
      ],
    },
    options: { indexAxis: "y", maintainAspectRatio: false, animation: false, scales: { x: { min: -1, max: 1 } } },
  });
}
document.body.dataset.drawn = "true";
</script>
</body>
</html>
`;
}
