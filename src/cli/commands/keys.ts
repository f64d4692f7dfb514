import type { Command } from "commander";
import { InputError } from "../../core/errors.ts";
import { checkPlan, createKeyWithFreeTier, publicKey } from "../../serve/admin.ts";
import { extractionReport } from "../../serve/extraction.ts";
import { commandContext, type GlobalOptions } from "../context.ts";
import { positiveInteger } from "../options.ts";
import { openConfiguredStore } from "../store.ts";

const integer = (value: string | undefined, option: string): number | null =>
  value === undefined ? null : positiveInteger(value, option);

export function registerKeys(program: Command): void {
  const keys = program
    .command("keys")
    .description("API keys of the paid API: create, list, revoke, rotate (shown once, stored hashed)");
  keys
    .command("create")
    .description(
      "a new key for an organisation (created if new; serve.freeTierMicros granted once per org): printed once, only its hash is kept",
    )
    .requiredOption("--org <name>", "the organisation the key bills to")
    .option("--name <name>", "a label", "key")
    .option("--models <list>", "comma-separated models the key may use (default: all)")
    .option("--plan <plan>", "plan from avocado.yaml serve.plans", "default")
    .option("--rpm <n>", "requests per minute (default: the plan's)")
    .option("--tpm <n>", "tokens per minute (default: the plan's)")
    .option("--concurrency <n>", "requests in flight (default: the plan's)")
    .option("--expires-days <n>", "expire after this many days")
    .option("--store <url>", "override the configured store")
    .action(
      async (
        options: {
          org: string;
          name: string;
          models?: string;
          plan: string;
          rpm?: string;
          tpm?: string;
          concurrency?: string;
          expiresDays?: string;
          store?: string;
        },
        command: Command,
      ) => {
        const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
        checkPlan(context.config.serve.plans, options.plan);
        const days = integer(options.expiresDays, "--expires-days");
        const store = await openConfiguredStore(context, options.store);
        try {
          const { key, row } = await createKeyWithFreeTier(store, context.config.serve.freeTierMicros, {
            org: options.org,
            name: options.name,
            scopes: options.models
              ? options.models
                  .split(",")
                  .map((m) => m.trim())
                  .filter(Boolean)
              : null,
            plan: options.plan,
            limits: {
              rpm: integer(options.rpm, "--rpm"),
              tpm: integer(options.tpm, "--tpm"),
              concurrency: integer(options.concurrency, "--concurrency"),
            },
            expiresAt: days ? Date.now() + days * 86_400_000 : null,
          });
          context.print(
            `${key}\n\nThis is the only time the key is shown. Prefix for reference: ${row.prefix}… (id ${row.id})`,
            { key, ...publicKey(row) },
          );
        } finally {
          await store.close();
        }
      },
    );
  keys
    .command("list")
    .description("keys with their prefix, org, models, plan, limits, expiry and revocation (never the secret)")
    .option("--org <name>", "only this organisation's keys")
    .option("--store <url>", "override the configured store")
    .action(async (options: { org?: string; store?: string }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const store = await openConfiguredStore(context, options.store);
      try {
        const rows = (await store.listKeys(options.org)).map(publicKey);
        const status = (k: ReturnType<typeof publicKey>) =>
          k.revoked_at !== null && k.revoked_at <= Date.now()
            ? "revoked"
            : k.expires_at !== null && k.expires_at <= Date.now()
              ? "expired"
              : "active";
        const text = rows
          .map(
            (k) =>
              `${`${k.prefix}…`.padEnd(16)} ${String(k.org).padEnd(14)} ${k.name.padEnd(14)} ${k.plan.padEnd(10)} ${status(k).padEnd(8)} models: ${k.scopes?.join(",") ?? "all"}`,
          )
          .join("\n");
        context.print(text || "no keys", { keys: rows });
      } finally {
        await store.close();
      }
    });
  keys
    .command("revoke <id>")
    .description("revoke a key by id or prefix (servers refuse it within a second)")
    .option("--store <url>", "override the configured store")
    .action(async (id: string, options: { store?: string }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const store = await openConfiguredStore(context, options.store);
      try {
        const row = await store.revokeKey(id);
        context.print(`revoked ${row.prefix}…`, publicKey(row));
      } finally {
        await store.close();
      }
    });
  keys
    .command("rotate <id>")
    .description("a new key with the same org, models and limits; the old one is revoked (after --grace-seconds)")
    .option("--grace-seconds <n>", "keep the old key working this long", "0")
    .option("--store <url>", "override the configured store")
    .action(async (id: string, options: { graceSeconds: string; store?: string }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const grace = Number(options.graceSeconds);
      if (!Number.isInteger(grace) || grace < 0) throw new InputError("--grace-seconds must be a non-negative integer");
      const store = await openConfiguredStore(context, options.store);
      try {
        const { key, row } = await store.rotateKey(id, grace * 1000);
        context.print(`${key}\n\nThis is the only time the key is shown. It replaces ${row.rotated_from}.`, {
          key,
          ...publicKey(row),
        });
      } finally {
        await store.close();
      }
    });
  keys
    .command("audit")
    .description(
      "per-key extraction signals (volume, logprob use, prompt coverage, templating) and the documented 0–100 score",
    )
    .option("--org <name>", "only this organisation's keys")
    .option("--days <n>", "window in days (default: serve.extraction.windowDays)")
    .option("--store <url>", "override the configured store")
    .action(async (options: { org?: string; days?: string; store?: string }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const days = options.days !== undefined ? Number(options.days) : context.config.serve.extraction.windowDays;
      if (!(days > 0)) throw new InputError(`--days must be a positive number (found ${options.days})`);
      const threshold = context.config.serve.extraction.threshold;
      const store = await openConfiguredStore(context, options.store);
      try {
        const since = Date.now() - days * 86_400_000;
        const reports = [];
        for (const key of await store.listKeys(options.org)) {
          const report = extractionReport(await store.requestSignals(key.id, since), days);
          reports.push({
            key: `${key.prefix}…`,
            id: key.id,
            org: key.org,
            flagged: report.score >= threshold,
            ...report,
          });
        }
        reports.sort((a, b) => b.score - a.score);
        const part = (value: number) => value.toFixed(1).padStart(5);
        const lines = reports.map(
          (r) =>
            `${r.key.padEnd(16)} ${String(r.org).padEnd(12)} ${String(r.requests).padStart(8)} ${String(r.score).padStart(5)} ${part(r.parts.volume)} ${part(r.parts.logprobs)} ${part(r.parts.coverage)} ${part(r.parts.templating)}${r.flagged ? "  FLAGGED" : ""}`,
        );
        context.print(
          [
            `window ${days} days; flagged at score ≥ ${threshold} (the score's four parts: README, 'avocado keys audit')`,
            `${"key".padEnd(16)} ${"org".padEnd(12)} ${"requests".padStart(8)} ${"score".padStart(5)} ${"vol".padStart(5)} ${"lp".padStart(5)} ${"cover".padStart(5)} ${"tmpl".padStart(5)}`,
            ...lines,
          ].join("\n"),
          { threshold, days, keys: reports },
        );
      } finally {
        await store.close();
      }
    });
}
