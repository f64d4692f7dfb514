import { chartJsSource, escapeHtml } from "../evals/report.ts";
import type { DistillManifest } from "./outputs.ts";

const percent = (correct: number, total: number) => (total ? `${((100 * correct) / total).toFixed(1)}%` : "–");

/**
 * The distillation report: one self-contained HTML file (Chart.js inlined) drawn from the manifest: the funnel stage
 * by stage, each teacher's contribution, accuracy and cost, the selected set's accuracy beside each teacher's per tag,
 * what the probes filtered, and the licence obligations.
 */
export function renderDistillReport(manifest: DistillManifest): string {
  const tags = Object.keys(manifest.selectedAccuracy)
    .filter((tag) => tag !== "all")
    .concat("all");
  const accuracyRows = tags.map((tag) => {
    const cells = manifest.teachers.map((t) => {
      const a = t.accuracy[tag];
      return `<td>${a ? `${percent(a.correct, a.total)} <small>${a.correct}/${a.total}</small>` : "–"}</td>`;
    });
    const s = manifest.selectedAccuracy[tag] ?? { correct: 0, total: 0 };
    return `<tr><td>${escapeHtml(tag)}</td>${cells.join("")}<td><b>${percent(s.correct, s.total)}</b> <small>${s.correct}/${s.total}</small></td></tr>`;
  });
  const teacherRows = manifest.teachers.map(
    (t) =>
      `<tr><td>${escapeHtml(t.name)}</td><td>${escapeHtml(t.licence)}</td><td>${t.calls}</td><td>${t.errors}</td><td>${t.costMicros}</td><td>${t.budgetReached ? "reached" : ""}</td><td>${t.contributed}</td><td>${Object.entries(
        t.excluded,
      )
        .filter(([, n]) => n > 0)
        .map(([reason, n]) => `${escapeHtml(reason)} ${n}`)
        .join(", ")}</td></tr>`,
  );
  const probeRows = manifest.probes.findings.map(
    (f) =>
      `<tr><td>${escapeHtml(f.teacher)}</td><td>${escapeHtml(f.suite)}</td><td>${escapeHtml(f.metric)} on ${escapeHtml(f.group)}</td><td>${(100 * f.difference).toFixed(1)} points (≥ ${(100 * f.low).toFixed(1)})</td></tr>`,
  );
  const filteredRows = Object.entries(manifest.probes.filtered).map(
    ([tag, f]) => `<tr><td>${escapeHtml(tag)}</td><td>${f.removed}</td><td>${f.prompts}</td><td>${f.covered}</td></tr>`,
  );
  const licenceRows = manifest.licences.map(
    (l) =>
      `<tr><td>${escapeHtml(l.teacher)}</td><td>${escapeHtml(l.licence)}</td><td>${escapeHtml(l.obligations)}${l.notice ? ` <small>(${escapeHtml(l.notice)} written)</small>` : ""}</td></tr>`,
  );
  const data = JSON.stringify(manifest).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Avocado distillation</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.chart { position: relative; height: 300px; max-width: 960px; }
table { border-collapse: collapse; margin-top: .5rem; } td, th { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; }
small { color: #666; }
</style>
</head>
<body>
<h1>Distillation: ${manifest.records} records, ${manifest.preferences} preference pairs</h1>
<p>Config ${escapeHtml(manifest.configHash.slice(0, 16))}. Accuracy counts answers checked against a prompt's reference.</p>
<h2>Funnel</h2><div class="chart"><canvas id="funnel"></canvas></div>
<h2>Teachers: contribution and exclusions</h2><div class="chart"><canvas id="teachers"></canvas></div>
<table><tr><th>teacher</th><th>licence</th><th>calls</th><th>errors</th><th>cost (micro-units)</th><th>budget</th><th>records</th><th>excluded</th></tr>${teacherRows.join("")}</table>
<h2>Accuracy: each teacher's answers against the selected set</h2>
<table><tr><th>tag</th>${manifest.teachers.map((t) => `<th>${escapeHtml(t.name)}</th>`).join("")}<th>selected</th></tr>${accuracyRows.join("")}</table>
<h2>Probes</h2>
${probeRows.length ? `<table><tr><th>teacher</th><th>suite</th><th>behaviour shown</th><th>above control</th></tr>${probeRows.join("")}</table>` : "<p>No probe found a behaviour.</p>"}
${filteredRows.length ? `<p>Answers filtered by what the probes found, and whether another teacher's answer still covers the prompt:</p><table><tr><th>tag</th><th>answers removed</th><th>prompts</th><th>still covered</th></tr>${filteredRows.join("")}</table>` : ""}
<h2>Licence obligations</h2>
<table><tr><th>teacher</th><th>licence</th><th>what the student inherits</th></tr>${licenceRows.join("")}</table>
<script>${chartJsSource()}</script>
<script type="application/json" id="data">${data}</script>
<script>
const manifest = JSON.parse(document.getElementById("data").textContent);
const counts = manifest.stages.map((s) => s.out ?? s.records ?? s.prompts);
new Chart(document.getElementById("funnel"), {
  type: "bar",
  data: { labels: manifest.stages.map((s) => s.stage), datasets: [{ label: "prompts (records at the end)", data: counts, backgroundColor: "#2f6fb0aa" }] },
  options: { maintainAspectRatio: false, animation: false },
});
const reasons = [...new Set(manifest.teachers.flatMap((t) => Object.keys(t.excluded)))];
const colours = ["#3a9a5b", "#d9822b", "#a43d8e", "#7a7a7a", "#2f6fb0", "#c0392b", "#16a085", "#8e44ad", "#2c3e50", "#b8a12f"];
new Chart(document.getElementById("teachers"), {
  type: "bar",
  data: {
    labels: manifest.teachers.map((t) => t.name),
    datasets: [
      { label: "kept", data: manifest.teachers.map((t) => t.contributed), backgroundColor: colours[0] },
      ...reasons.map((reason, i) => ({ label: reason, data: manifest.teachers.map((t) => t.excluded[reason]), backgroundColor: colours[(i + 1) % colours.length] })),
    ],
  },
  options: { maintainAspectRatio: false, animation: false, scales: { x: { stacked: true }, y: { stacked: true } } },
});
document.body.dataset.drawn = "true";
</script>
</body>
</html>
`;
}
