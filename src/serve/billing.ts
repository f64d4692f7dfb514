import type { Store, UsageRow } from "./store/store.ts";

export interface Invoice {
  org: string;
  month: string;
  currency: "micro-units";
  lines: {
    model: string;
    key: string;
    requests: number;
    promptTokens: number;
    completionTokens: number;
    amount: number;
  }[];
  totals: { requests: number; promptTokens: number; completionTokens: number; amount: number };
}

/** Usage as CSV (one row per day, org, key, model), sorted, so the same data always gives the same bytes. */
export function usageCsv(rows: readonly (UsageRow & { key_prefix?: string; org?: string })[]): string {
  const header = "day,org,key,model,requests,prompt_tokens,completion_tokens,cost_micros";
  const quote = (value: string) => (/[",\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value);
  const lines = rows.map((r) =>
    [
      r.day,
      r.org ?? r.org_id,
      r.key_prefix ?? r.key_id,
      r.model,
      r.requests,
      r.prompt_tokens,
      r.completion_tokens,
      r.cost,
    ]
      .map((v) => quote(String(v)))
      .join(","),
  );
  return `${[header, ...lines].join("\n")}\n`;
}

/** Usage rows with the org's name and the key's display prefix instead of ids. */
export async function labelledUsage(store: Store, filter: { org?: string; from?: string; to?: string }) {
  const org = filter.org ? await store.orgByName(filter.org) : undefined;
  if (filter.org && !org) return [];
  const rows = await store.usage({ orgId: org?.id, from: filter.from, to: filter.to });
  const keys = new Map((await store.listKeys()).map((k) => [k.id, k]));
  return rows.map((r) => ({
    ...r,
    key_prefix: keys.get(r.key_id)?.prefix ?? r.key_id,
    org: keys.get(r.key_id)?.org ?? r.org_id,
  }));
}

/**
 * One org's invoice for a calendar month (UTC): a line per model and key, and totals. Reproducible: no clock, sorted
 * lines.
 */
export async function invoice(store: Store, orgName: string, month: string): Promise<Invoice> {
  const [year, mon] = month.split("-").map(Number) as [number, number];
  const last = new Date(Date.UTC(year, mon, 0)).getUTCDate();
  const rows = await labelledUsage(store, {
    org: orgName,
    from: `${month}-01`,
    to: `${month}-${String(last).padStart(2, "0")}`,
  });
  const byLine = new Map<string, Invoice["lines"][number]>();
  for (const row of rows) {
    const id = `${row.model}\u0000${row.key_prefix}`;
    const line = byLine.get(id) ?? {
      model: row.model,
      key: row.key_prefix,
      requests: 0,
      promptTokens: 0,
      completionTokens: 0,
      amount: 0,
    };
    line.requests += row.requests;
    line.promptTokens += row.prompt_tokens;
    line.completionTokens += row.completion_tokens;
    line.amount += row.cost;
    byLine.set(id, line);
  }
  const lines = [...byLine.values()].sort((a, b) => a.model.localeCompare(b.model) || a.key.localeCompare(b.key));
  const totals = lines.reduce(
    (t, l) => ({
      requests: t.requests + l.requests,
      promptTokens: t.promptTokens + l.promptTokens,
      completionTokens: t.completionTokens + l.completionTokens,
      amount: t.amount + l.amount,
    }),
    {
      requests: 0,
      promptTokens: 0,
      completionTokens: 0,
      amount: 0,
    },
  );
  return { org: orgName, month, currency: "micro-units", lines, totals };
}

export function invoiceText(bill: Invoice): string {
  const money = (micros: number) => `${(micros / 1_000_000).toFixed(6)}`;
  const rows = bill.lines.map(
    (l) =>
      `${l.model.padEnd(20)} ${l.key.padEnd(14)} ${String(l.requests).padStart(9)} ${String(l.promptTokens).padStart(12)} ${String(l.completionTokens).padStart(12)} ${money(l.amount).padStart(14)}`,
  );
  return [
    `Invoice — org ${bill.org}, ${bill.month} (amounts in currency units; micro-units in --json)`,
    `${"model".padEnd(20)} ${"key".padEnd(14)} ${"requests".padStart(9)} ${"prompt tok".padStart(12)} ${"compl. tok".padStart(12)} ${"amount".padStart(14)}`,
    ...rows,
    `${"total".padEnd(35)} ${String(bill.totals.requests).padStart(9)} ${String(bill.totals.promptTokens).padStart(12)} ${String(bill.totals.completionTokens).padStart(12)} ${money(bill.totals.amount).padStart(14)}`,
  ].join("\n");
}
