import { resolve } from "node:path";
import type { Command } from "commander";
import { writeFileAtomic } from "../../core/atomic-write.ts";
import { InputError } from "../../core/errors.ts";
import { invoice, invoiceText, labelledUsage, usageCsv } from "../../serve/billing.ts";
import { usageChartSvg } from "../../serve/usage-chart.ts";
import { commandContext, type GlobalOptions } from "../context.ts";
import { openConfiguredStore } from "../store.ts";

const DAY = /^\d{4}-\d{2}-\d{2}$/;

export function registerBilling(program: Command): void {
  const billing = program.command("billing").description("prepaid credit, usage export and invoices of the paid API");
  billing
    .command("credit")
    .description("add prepaid credit to an organisation (idempotent by --idempotency-key)")
    .requiredOption("--org <name>")
    .requiredOption("--amount <micros>", "integer micro-units")
    .requiredOption("--idempotency-key <key>", "a payment id: the same key never credits twice")
    .option("--memo <text>", "memo", "credit")
    .option("--store <url>", "override the configured store")
    .action(
      async (
        options: { org: string; amount: string; idempotencyKey: string; memo: string; store?: string },
        command: Command,
      ) => {
        const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
        const amount = Number(options.amount);
        if (!Number.isSafeInteger(amount) || amount <= 0)
          throw new InputError(`--amount must be a positive integer of micro-units (found ${options.amount})`);
        const store = await openConfiguredStore(context, options.store);
        try {
          const applied = await store.grant(options.org, amount, options.idempotencyKey, options.memo);
          const balance = await store.balance((await store.orgByName(options.org))!.id);
          context.print(
            `${applied ? "credited" : "already credited (same idempotency key)"}; ${options.org} has ${balance.available} micro-units available, ${balance.held} held`,
            { applied, ...balance },
          );
        } finally {
          await store.close();
        }
      },
    );
  billing
    .command("usage")
    .description("usage by org, key, model and day, as CSV (default) or JSON")
    .option("--org <name>")
    .option("--from <YYYY-MM-DD>")
    .option("--to <YYYY-MM-DD>")
    .option("--format <csv|json>", "output format", "csv")
    .option("--svg <file>", "also draw it: spend per day, stacked by model or key (an SVG)")
    .option("--by <model|key>", "what the chart's bars are stacked by", "model")
    .option("--store <url>", "override the configured store")
    .action(
      async (
        options: { org?: string; from?: string; to?: string; format: string; svg?: string; by: string; store?: string },
        command: Command,
      ) => {
        const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
        for (const [name, value] of [
          ["--from", options.from],
          ["--to", options.to],
        ] as const)
          if (value !== undefined && !DAY.test(value)) throw new InputError(`${name} must be YYYY-MM-DD`);
        if (options.format !== "csv" && options.format !== "json") throw new InputError("--format must be csv or json");
        if (options.by !== "model" && options.by !== "key") throw new InputError("--by must be model or key");
        const store = await openConfiguredStore(context, options.store);
        try {
          const rows = await labelledUsage(store, options);
          let chart: string | undefined;
          if (options.svg) {
            chart = resolve(options.svg);
            const title = `Usage of the paid API${options.org ? ` — org ${options.org}` : ""}`;
            await writeFileAtomic(chart, usageChartSvg(rows, { title, by: options.by }));
            // Beside the data on stdout, not in it.
            if (!context.json) process.stderr.write(`usage chart: ${chart}\n`);
          }
          if (options.format === "json" || context.json)
            context.print(JSON.stringify(rows, null, 2), { usage: rows, ...(chart ? { chart } : {}) });
          else process.stdout.write(usageCsv(rows));
        } finally {
          await store.close();
        }
      },
    );
  billing
    .command("invoice")
    .description("an organisation's invoice for a month: line items per model and key, and totals (reproducible)")
    .requiredOption("--org <name>")
    .requiredOption("--month <YYYY-MM>")
    .option("--store <url>", "override the configured store")
    .action(async (options: { org: string; month: string; store?: string }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(options.month)) throw new InputError("--month must be YYYY-MM");
      const store = await openConfiguredStore(context, options.store);
      try {
        if (!(await store.orgByName(options.org))) throw new InputError(`no org '${options.org}'`);
        const bill = await invoice(store, options.org, options.month);
        context.print(invoiceText(bill), { invoice: bill });
      } finally {
        await store.close();
      }
    });
}
