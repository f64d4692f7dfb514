// The operator's dashboard: everything comes from the admin API with the admin token, kept in `token` only.
import { call, el, micros } from "/web/common.js";

let token = "";
let timer;
let extractionAt = 0;
const charts = {};
const $ = (id) => document.getElementById(id);

function table(id, head, rows) {
  $(id).replaceChildren(
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        head.map(([text, num]) => el("th", num ? { class: "num" } : {}, text)),
      ),
    ),
    el("tbody", {}, rows),
  );
}

const cell = (value, attributes = {}) => el("td", attributes, value);
const num = (value) => cell(value, { class: "num" });

function lineChart(id, datasets) {
  if (charts[id]) return charts[id];
  charts[id] = new window.Chart($(id), {
    type: "line",
    data: { labels: [], datasets: datasets.map((d) => ({ ...d, data: [], tension: 0.25, pointRadius: 2 })) },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: { y: { beginAtZero: true }, y1: { beginAtZero: true, position: "right", display: datasets.length > 1 } },
    },
  });
  return charts[id];
}

async function refreshUsage() {
  const live = await call("/admin/usage/live?minutes=60", token);
  // Every minute of the hour, those without requests at zero.
  const byMinute = new Map(live.data.map((row) => [row.at, row]));
  const labels = [];
  const series = { requests: [], tokens: [], revenue: [] };
  const first = live.since - (live.since % live.bucketMs);
  for (let at = first; at <= Date.now(); at += live.bucketMs) {
    const row = byMinute.get(at) ?? { requests: 0, tokens: 0, revenue: 0 };
    labels.push(new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    for (const name of Object.keys(series)) series[name].push(row[name]);
  }
  const traffic = lineChart("traffic-chart", [
    { label: "requests", borderColor: "#3f7d3a", yAxisID: "y" },
    { label: "tokens", borderColor: "#8a6d1f", yAxisID: "y1" },
  ]);
  traffic.data.labels = labels;
  traffic.data.datasets[0].data = series.requests;
  traffic.data.datasets[1].data = series.tokens;
  traffic.update();
  const revenue = lineChart("revenue-chart", [{ label: "revenue", borderColor: "#2d5f8a", fill: true }]);
  revenue.data.labels = labels;
  revenue.data.datasets[0].data = series.revenue;
  revenue.update();
  return live.data.reduce(
    (sum, row) => ({ requests: sum.requests + row.requests, revenue: sum.revenue + row.revenue }),
    {
      requests: 0,
      revenue: 0,
    },
  );
}

function renderModels(models) {
  table(
    "models",
    [["model"], ["source"], ["price in / out per million", true], ["release"], [""]],
    models.map((m) =>
      el(
        "tr",
        {},
        cell(m.name),
        cell(m.source),
        num(`${micros(m.price.inputPerMillion)} / ${micros(m.price.outputPerMillion)}`),
        cell(
          !m.release
            ? "upstream"
            : m.release.verdict === "pass"
              ? el("span", { class: "pass" }, "gate passed")
              : m.release.verdict === "no-card"
                ? el("span", { class: "muted" }, "no card (not a student)")
                : el("span", { class: "fail", title: m.release.reason }, `${m.release.verdict}`),
        ),
        cell(el("button", { class: "secondary", onclick: () => showModel(m.name) }, "card, evals, licences")),
      ),
    ),
  );
}

async function showModel(name) {
  const detail = await call(`/admin/models/${encodeURIComponent(name)}`, token);
  const parts = [el("h2", {}, `${name}`)];
  if (detail.gate)
    parts.push(
      el(
        "p",
        {},
        el(
          "span",
          { class: detail.gate.pass ? "pass" : "fail" },
          detail.gate.pass ? "release gate passed" : "release gate failed",
        ),
        ` (margin ${detail.gate.margin})`,
      ),
      ...detail.gate.failures.map((f) => el("div", { class: "muted" }, f)),
    );
  for (const [index, summary] of detail.evals.entries()) {
    const metric = summary.metrics[0];
    const groups = Object.keys(summary.scores[summary.models[0]]?.[metric] ?? {});
    const id = `eval-chart-${index}`;
    parts.push(
      el("h2", {}, `${summary.suite}: ${metric} per group (${summary.items} items), with 95% intervals in the table`),
    );
    parts.push(el("div", { class: "chart" }, el("canvas", { id })));
    parts.push(
      el(
        "table",
        {},
        el(
          "tr",
          {},
          el("th", {}, "model"),
          groups.map((g) => el("th", { class: "num" }, g)),
        ),
        summary.models.map((model) =>
          el(
            "tr",
            {},
            cell(model),
            groups.map((g) => {
              const s = summary.scores[model][metric][g];
              return num(
                `${(100 * s.estimate).toFixed(1)}% [${(100 * s.low).toFixed(0)}, ${(100 * s.high).toFixed(0)}]`,
              );
            }),
          ),
        ),
      ),
    );
    parts.push(el("p", { class: "muted" }, `full report: ${summary.report} in the model's folder`));
    setTimeout(() => {
      const colours = ["#3f7d3a", "#8a6d1f", "#2d5f8a", "#9b3d6b", "#5d6b5f"];
      new window.Chart($(id), {
        type: "bar",
        data: {
          labels: groups,
          datasets: summary.models.map((model, i) => ({
            label: model,
            backgroundColor: colours[i % colours.length],
            data: groups.map((g) => 100 * summary.scores[model][metric][g].estimate),
          })),
        },
        options: { animation: false, maintainAspectRatio: false, scales: { y: { beginAtZero: true, max: 100 } } },
      });
    });
  }
  if (detail.licences)
    parts.push(
      el("h2", {}, "Licences inherited"),
      el("pre", { class: "card" }, JSON.stringify(detail.licences, null, 2)),
    );
  if (detail.card) parts.push(el("h2", {}, "Model card"), el("pre", { class: "card" }, detail.card));
  if (parts.length === 1)
    parts.push(el("p", { class: "muted" }, "no card, evals or licences beside this model's file"));
  $("model-detail").replaceChildren(...parts);
}

function renderOrgs(orgs) {
  table(
    "orgs",
    [["org"], ["keys", true], ["available", true], ["held", true]],
    orgs.map((o) => el("tr", {}, cell(o.name), num(o.keys), num(micros(o.available)), num(micros(o.held)))),
  );
}

async function renderKeys() {
  const { data } = await call("/admin/keys", token);
  table(
    "keys",
    [["key"], ["org"], ["name"], ["state"], [""]],
    data.map((k) =>
      el(
        "tr",
        {},
        cell(`${k.prefix}…`),
        cell(k.org),
        cell(k.name),
        cell(k.revoked_at ? el("span", { class: "muted" }, "revoked") : "live"),
        cell(
          k.revoked_at
            ? ""
            : [
                el("button", { class: "secondary", onclick: () => keyAction(k.id, "rotate", k.org) }, "rotate"),
                " ",
                el("button", { class: "danger", onclick: () => keyAction(k.id, "revoke", k.org) }, "revoke"),
              ],
        ),
      ),
    ),
  );
}

function showNewKey(created, org) {
  // Shown once, as the API says; it leaves the page with the next key or a reload.
  $("new-key").replaceChildren(
    el("p", { class: "muted" }, `New key for ${org} (shown once; copy it now):`),
    el("div", { class: "secret", id: "new-key-value" }, created.key),
  );
  $("new-key").classList.remove("hidden");
}

async function keyAction(id, action, org) {
  $("key-error").textContent = "";
  try {
    const result = await call(`/admin/keys/${encodeURIComponent(id)}/${action}`, token, { method: "POST", body: "{}" });
    if (action === "rotate") showNewKey(result, org);
    await refresh();
  } catch (error) {
    $("key-error").textContent = error.message;
  }
}

async function renderExtraction() {
  const report = await call("/admin/extraction", token);
  $("extraction-note").textContent = `score 0–100 over ${report.days} days; flagged at ≥ ${report.threshold}`;
  table(
    "extraction",
    [["key"], ["org"], ["requests", true], ["score", true], [""]],
    report.data.map((r) =>
      el(
        "tr",
        {},
        cell(`${r.prefix}…`),
        cell(r.org),
        num(r.requests),
        num(r.score),
        cell(r.flagged ? el("span", { class: "flag" }, "FLAGGED") : ""),
      ),
    ),
  );
}

async function refresh() {
  const overview = await call("/admin/overview", token);
  renderModels(overview.models);
  renderOrgs(overview.orgs);
  table(
    "limits",
    [["limit"], ["hits", true]],
    Object.entries(overview.limitHits).map(([name, hits]) => el("tr", {}, cell(name), num(hits))),
  );
  const hour = await refreshUsage();
  const credit = overview.orgs.reduce((sum, o) => sum + o.available, 0);
  const stat = (label, value, id) => el("div", { class: "stat", id }, el("b", {}, value), label);
  $("stats").replaceChildren(
    stat("requests, last hour", hour.requests, "stat-requests"),
    stat("revenue, last hour", micros(hour.revenue), "stat-revenue"),
    stat("credit available, all orgs", micros(credit), "stat-credit"),
    stat("organisations", overview.orgs.length, "stat-orgs"),
    stat("live keys", overview.liveKeys, "stat-keys"),
  );
  await renderKeys();
  // The extraction score reads up to 20,000 requests a key: once a minute, not on every refresh.
  if (Date.now() - extractionAt >= 60_000) {
    extractionAt = Date.now();
    await renderExtraction();
  }
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  token = $("token").value;
  $("token").value = "";
  try {
    await refresh();
    $("login").classList.add("hidden");
    $("app").classList.remove("hidden");
    $("logout").classList.remove("hidden");
    $("login-error").textContent = "";
    timer = setInterval(() => refresh().catch((error) => console.warn(error.message)), 5000);
  } catch (error) {
    token = "";
    $("login-error").textContent = error.status === 401 ? "wrong admin token" : error.message;
  }
});

$("logout").addEventListener("click", () => {
  token = "";
  extractionAt = 0; // the next log-in reads the scores afresh
  clearInterval(timer);
  location.reload();
});

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  $("key-error").textContent = "";
  const spec = { org: form.get("org"), name: form.get("name") };
  if (form.get("rpm")) spec.rpm = Number(form.get("rpm"));
  try {
    showNewKey(await call("/admin/keys", token, { method: "POST", body: JSON.stringify(spec) }), spec.org);
    await refresh();
  } catch (error) {
    $("key-error").textContent = error.message;
  }
});

$("credit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  $("credit-error").textContent = "";
  // One id per grant as typed: a double click or a retried request credits once.
  const body = {
    org: form.get("org"),
    amount: Number(form.get("amount")),
    idempotencyKey: `dashboard-${crypto.randomUUID()}`,
    memo: "dashboard",
  };
  const button = event.submitter;
  button.disabled = true;
  try {
    await call("/admin/credits", token, { method: "POST", body: JSON.stringify(body) });
    event.target.reset();
    await refresh();
  } catch (error) {
    $("credit-error").textContent = error.message;
  } finally {
    button.disabled = false;
  }
});
