import { escapeXml } from "../core/svg.ts";

/** Draws a loss curve as a standalone SVG (no dependencies, opens in any browser). */
export function lossCurveSvg(title: string, points: readonly (readonly [number, number])[]): string {
  const width = 720;
  const height = 360;
  const margin = { left: 60, right: 20, top: 40, bottom: 44 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const steps = points.map(([s]) => s);
  const losses = points.map(([, l]) => l).filter(Number.isFinite);
  const minStep = Math.min(...steps, 0);
  const maxStep = Math.max(...steps, 1);
  const minLoss = Math.min(...losses, 0);
  const maxLoss = Math.max(...losses, 1e-9);
  const x = (s: number) => margin.left + ((s - minStep) / (maxStep - minStep || 1)) * plotWidth;
  const y = (l: number) => margin.top + (1 - (l - minLoss) / (maxLoss - minLoss || 1)) * plotHeight;
  const path = points
    .filter(([, l]) => Number.isFinite(l))
    .map(([s, l], i) => `${i === 0 ? "M" : "L"}${x(s).toFixed(1)},${y(l).toFixed(1)}`)
    .join(" ");
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const loss = minLoss + f * (maxLoss - minLoss);
    const step = Math.round(minStep + f * (maxStep - minStep));
    return (
      `<line x1="${margin.left}" x2="${width - margin.right}" y1="${y(loss)}" y2="${y(loss)}" stroke="#eee"/>` +
      `<text x="${margin.left - 6}" y="${y(loss) + 4}" text-anchor="end">${loss.toFixed(2)}</text>` +
      `<text x="${x(step)}" y="${height - margin.bottom + 18}" text-anchor="middle">${step}</text>`
    );
  });
  const escaped = escapeXml(title);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${width / 2}" y="24" text-anchor="middle" font-size="15">${escaped}</text>
${ticks.join("\n")}
<line x1="${margin.left}" x2="${margin.left}" y1="${margin.top}" y2="${height - margin.bottom}" stroke="#333"/>
<line x1="${margin.left}" x2="${width - margin.right}" y1="${height - margin.bottom}" y2="${height - margin.bottom}" stroke="#333"/>
<path d="${path}" fill="none" stroke="#2a7ab0" stroke-width="2"/>
<text x="${width / 2}" y="${height - 8}" text-anchor="middle">step</text>
<text x="16" y="${height / 2}" text-anchor="middle" transform="rotate(-90 16 ${height / 2})">training loss</text>
</svg>
`;
}
