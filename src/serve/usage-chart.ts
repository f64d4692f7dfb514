import { escapeXml } from "../core/svg.ts";
import type { UsageRow } from "./store/store.ts";

/** A colour per series, in a fixed order (colour-blind friendly: Okabe–Ito). */
const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"];
/** Beyond this many series the smallest are drawn together as "other". */
const MAX_SERIES = PALETTE.length - 1;

/** A round step for an axis from 0 to `max` in about five ticks (1, 2 or 5 × 10^n). */
function niceStep(max: number): number {
  const raw = max / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((f) => f * magnitude).find((step) => step >= raw)!;
}

/** Every day from the first to the last (a day without usage is a gap, not left out). */
function calendar(sorted: string[]): string[] {
  if (sorted.length < 2) return sorted;
  const days: string[] = [];
  for (
    let ms = Date.parse(`${sorted[0]}T00:00:00Z`), end = Date.parse(`${sorted.at(-1)}T00:00:00Z`);
    ms <= end;
    ms += 86_400_000
  )
    days.push(new Date(ms).toISOString().slice(0, 10));
  return days;
}

function amountLabel(micros: number): string {
  const units = micros / 1_000_000;
  return units >= 100
    ? units.toFixed(0)
    : units >= 1
      ? units.toFixed(2).replace(/\.?0+$/, "")
      : String(Number(units.toPrecision(2)));
}

/**
 * Usage drawn: spend per day as bars stacked by model (or by key), with the
 * day's total above each bar and the requests and tokens of the period in the
 * subtitle. A standalone SVG (opens in any browser); the same rows always
 * give the same bytes (no clock, sorted series and days).
 */
export function usageChartSvg(
  rows: readonly (UsageRow & { key_prefix?: string; org?: string })[],
  options: { title: string; by: "model" | "key" },
): string {
  const width = 820;
  const height = 420;
  const margin = { left: 72, right: 170, top: 64, bottom: 56 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const seriesOf = (row: (typeof rows)[number]) =>
    options.by === "model" ? row.model : (row.key_prefix ?? row.key_id);
  const days = calendar([...new Set(rows.map((r) => r.day))].sort());
  const totals = new Map<string, number>();
  for (const row of rows) totals.set(seriesOf(row), (totals.get(seriesOf(row)) ?? 0) + row.cost);
  // Largest first; the tail beyond the palette becomes "other".
  const ranked = [...totals].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([name]) => name);
  const kept = ranked.length > MAX_SERIES + 1 ? ranked.slice(0, MAX_SERIES) : ranked;
  const series = ranked.length > kept.length ? [...kept, "other"] : kept;
  const nameOf = (row: (typeof rows)[number]) => (kept.includes(seriesOf(row)) ? seriesOf(row) : "other");
  const cost = new Map<string, number>();
  for (const row of rows)
    cost.set(`${row.day}\u0000${nameOf(row)}`, (cost.get(`${row.day}\u0000${nameOf(row)}`) ?? 0) + row.cost);
  const dayTotal = (day: string) => series.reduce((sum, name) => sum + (cost.get(`${day}\u0000${name}`) ?? 0), 0);
  // At least a hundredth of a currency unit high, so a chart of (almost) nothing still has readable ticks.
  const maxTotal = Math.max(10_000, ...days.map(dayTotal));
  const step = niceStep(maxTotal);
  const top = Math.ceil(maxTotal / step) * step;
  const y = (micros: number) => margin.top + plotHeight - (micros / top) * plotHeight;
  const slot = plotWidth / Math.max(days.length, 1);
  const barWidth = Math.max(2, Math.min(48, slot * 0.7));
  const out: string[] = [];
  for (let value = 0; value <= top + step / 2; value += step) {
    out.push(
      `<line x1="${margin.left}" x2="${margin.left + plotWidth}" y1="${y(value).toFixed(1)}" y2="${y(value).toFixed(1)}" stroke="#e5e5e5"/>`,
    );
    out.push(
      `<text x="${margin.left - 8}" y="${(y(value) + 4).toFixed(1)}" text-anchor="end">${amountLabel(value)}</text>`,
    );
  }
  // Label at most ~12 days on the axis, evenly.
  const labelEvery = Math.max(1, Math.ceil(days.length / 12));
  days.forEach((day, index) => {
    const x = margin.left + slot * index + (slot - barWidth) / 2;
    let base = 0;
    series.forEach((name, s) => {
      const value = cost.get(`${day}\u0000${name}`) ?? 0;
      if (value === 0) return;
      out.push(
        `<rect x="${x.toFixed(1)}" y="${y(base + value).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${(y(base) - y(base + value)).toFixed(1)}" fill="${PALETTE[s]}"><title>${escapeXml(`${day} ${name}: ${amountLabel(value)}`)}</title></rect>`,
      );
      base += value;
    });
    if (days.length <= 31 && base > 0)
      out.push(
        `<text x="${(x + barWidth / 2).toFixed(1)}" y="${(y(base) - 4).toFixed(1)}" text-anchor="middle" font-size="10" fill="#555">${amountLabel(base)}</text>`,
      );
    if (index % labelEvery === 0)
      out.push(
        `<text x="${(x + barWidth / 2).toFixed(1)}" y="${height - margin.bottom + 18}" text-anchor="middle">${day.slice(5)}</text>`,
      );
  });
  series.forEach((name, s) => {
    const ly = margin.top + 8 + s * 20;
    out.push(`<rect x="${width - margin.right + 16}" y="${ly - 10}" width="12" height="12" fill="${PALETTE[s]}"/>`);
    out.push(
      `<text x="${width - margin.right + 34}" y="${ly}">${escapeXml(name.length > 20 ? `${name.slice(0, 19)}…` : name)}</text>`,
    );
  });
  const requests = rows.reduce((sum, r) => sum + r.requests, 0);
  const tokens = rows.reduce((sum, r) => sum + r.prompt_tokens + r.completion_tokens, 0);
  const spent = rows.reduce((sum, r) => sum + r.cost, 0);
  const period = days.length === 0 ? "no usage" : days.length === 1 ? days[0]! : `${days[0]} to ${days.at(-1)}`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${margin.left}" y="24" font-size="15">${escapeXml(options.title)}</text>
<text x="${margin.left}" y="44" fill="#555">${escapeXml(`${period}: ${requests} requests, ${tokens} tokens, ${amountLabel(spent)} spent (by ${options.by})`)}</text>
${out.join("\n")}
<line x1="${margin.left}" x2="${margin.left}" y1="${margin.top}" y2="${margin.top + plotHeight}" stroke="#333"/>
<line x1="${margin.left}" x2="${margin.left + plotWidth}" y1="${margin.top + plotHeight}" y2="${margin.top + plotHeight}" stroke="#333"/>
<text x="${margin.left + plotWidth / 2}" y="${height - 10}" text-anchor="middle">day (UTC)</text>
<text x="18" y="${margin.top + plotHeight / 2}" text-anchor="middle" transform="rotate(-90 18 ${margin.top + plotHeight / 2})">spend (currency units)</text>
</svg>
`;
}
