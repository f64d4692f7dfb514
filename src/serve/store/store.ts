import { sql } from "kysely";
import { InputError } from "../../core/errors.ts";
import type { Logger } from "../../core/logger.ts";
import { openDatabase, type Database, type StoreKind } from "./database.ts";
import { KeyStore, type ApiKeyRow, type KeyLimits, type NewKey } from "./key-store.ts";
import {
  accounts,
  CreditCeilingError,
  InsufficientCreditError,
  MAX_ISSUED,
  type Hold,
  type Ledger,
  type ReserveOptions,
  type ReserveRequest,
  type SettleUsage,
} from "./ledger.ts";
import { PostgresLedger } from "./postgres-ledger.ts";
import { SqliteLedger } from "./sqlite-ledger.ts";

export {
  accounts,
  CreditCeilingError,
  InsufficientCreditError,
  MAX_ISSUED,
  type ApiKeyRow,
  type Hold,
  type KeyLimits,
  type NewKey,
};

export interface UsageRow {
  org_id: string;
  key_id: string;
  model: string;
  day: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost: number;
}

/**
 * Keys, the double-entry credit ledger, holds and usage, on SQLite or
 * PostgreSQL. Every money movement is one transaction whose entries sum to
 * zero; reserve and settle are each one database transaction, and settle is
 * idempotent (a retry, or a recovery racing a live settle, never charges twice).
 */
export class Store extends KeyStore {
  private constructor(
    private readonly ledger: Ledger,
    readonly kind: StoreKind,
  ) {
    super(ledger);
  }

  /**
   * Opens a store: the schema migrated to the current version, and the ledger
   * of its backend. On a SQLite file, the journals of processes that died
   * before committing their ledger's last batch are applied first. `journal`
   * (a long-running server on SQLite): the ledger's operations become durable
   * in a journal and its tables commit in batches (see `SqliteLedgerWriter`).
   */
  static async open(
    url: string,
    options: { journal?: boolean | { commitMs: number }; logger?: Logger; statementTimeoutMs?: number } = {},
  ): Promise<Store> {
    const { db, kind, sqlite, checkpointer } = await openDatabase(url, options.logger, {
      statementTimeoutMs: options.statementTimeoutMs,
    });
    if (!sqlite) return new Store(new PostgresLedger(db), kind);
    try {
      return new Store(
        SqliteLedger.open(db, sqlite, url.slice("sqlite:".length), checkpointer, { journal: options.journal }),
        kind,
      );
    } catch (error) {
      await checkpointer?.close();
      await db.destroy();
      throw error;
    }
  }

  close(): Promise<void> {
    return this.ledger.close();
  }

  /**
   * Whether the ledger can write now: on SQLite, false once its tables failed
   * and could not be rebuilt (the next process applies its journal); on
   * PostgreSQL, whether the database answers within `timeoutMs`.
   */
  ledgerAvailable(timeoutMs = 1_000): Promise<boolean> {
    return this.ledger.available(timeoutMs);
  }

  // ---- the ledger ----------------------------------------------------------

  /** Adds prepaid credit (a top-up, a free-tier grant); idempotent by key. */
  async grant(orgName: string, amount: number, idempotencyKey: string, memo = "credit"): Promise<boolean> {
    if (!Number.isSafeInteger(amount) || amount <= 0)
      throw new InputError(`a credit must be a positive integer of micro-units (found ${amount})`);
    const orgId = await this.ensureOrg(orgName);
    return this.ledger.grant(orgId, amount, idempotencyKey, memo);
  }

  /** An org's spendable credit, and the part of its credit held for requests in flight. */
  async balance(orgId: string): Promise<{ available: number; held: number }> {
    const row = await this.db
      .selectFrom("balances")
      .select(["amount", "held"])
      .where("account", "=", accounts.credit(orgId))
      .executeTakeFirst();
    return { available: (row?.amount ?? 0) - (row?.held ?? 0), held: row?.held ?? 0 };
  }

  /**
   * Holds up to `amount` of the org's credit for a request before it runs.
   * With `minimum`, holds what is available if that is at least `minimum`
   * (a stream then stops where the credit ends). Idempotent by request id
   * (unless the caller says the id is `fresh`; see `ReserveOptions`).
   * Nothing may reach the client before the hold's `durable` has resolved.
   */
  reserve(request: ReserveRequest, options: ReserveOptions = {}): Promise<Hold> {
    return this.ledger.reserve(request, options);
  }

  /**
   * Ends a request: charges `cost` (at most what was held) to revenue, releases
   * the hold, and records the usage — all in one transaction. A second settle
   * of the same request does nothing and returns false.
   */
  settle(requestId: string, usage: SettleUsage): Promise<boolean> {
    return this.ledger.settle(requestId, usage);
  }

  /**
   * Gives back what a settled request was charged, and records it as charged nothing with outcome `outcome`:
   * for an answer withheld from its client, who was told nothing was charged, whose settlement had landed after
   * all (on PostgreSQL, a commit whose acknowledgement was lost with the connection). Once: returns the amount
   * given back, 0 when the request was charged nothing (or was given back already) or is unknown.
   */
  voidCharge(requestId: string, outcome: string): Promise<number> {
    return this.ledger.voidCharge(requestId, outcome);
  }

  /** Holds of requests in flight, of one instance or all, older than `olderThanMs`. */
  async openHolds(options: { instance?: string; olderThanMs?: number } = {}): Promise<Database["holds"][]> {
    let query = this.db.selectFrom("holds").selectAll();
    if (options.instance) query = query.where("instance", "=", options.instance);
    if (options.olderThanMs !== undefined) query = query.where("created_at", "<", Date.now() - options.olderThanMs);
    return query.execute();
  }

  /**
   * The ledger's invariants: every transaction balances, every balance equals
   * the sum of its entries, no org's available credit is negative, the credit
   * held equals the holds of requests in flight, and every settled request's charge
   * is exactly one charge transaction (so revenue is the metered usage).
   */
  async audit(): Promise<{ ok: boolean; problems: string[]; entries: number }> {
    const problems: string[] = [];
    const queries = {
      unbalanced: this.db
        .selectFrom("ledger_entries")
        .select(["transaction_id", sql<number>`cast(sum(amount) as bigint)`.as("total")])
        .groupBy("transaction_id")
        .having(sql`sum(amount)`, "!=", 0)
        .compile(),
      sums: this.db
        .selectFrom("ledger_entries")
        .select(["account", sql<number>`cast(sum(amount) as bigint)`.as("total")])
        .groupBy("account")
        .compile(),
      balances: this.db.selectFrom("balances").selectAll().compile(),
      open: this.db
        .selectFrom("holds")
        .select(["org_id", sql<number>`cast(sum(amount) as bigint)`.as("total")])
        .groupBy("org_id")
        .compile(),
      // A request's charge, less what was given back of it, is what its revenue entries say.
      mismatched: this.db
        .selectFrom("requests")
        .leftJoin("ledger_entries", (join) =>
          join
            .on((eb) =>
              eb.or([
                eb("ledger_entries.transaction_id", "=", sql<string>`'charge:' || requests.request_id`),
                eb("ledger_entries.transaction_id", "=", sql<string>`'refund:' || requests.request_id`),
              ]),
            )
            .on("ledger_entries.account", "=", accounts.revenue),
        )
        .select([
          "requests.request_id",
          "requests.charged",
          sql<number | null>`sum(ledger_entries.amount)`.as("amount"),
        ])
        .groupBy(["requests.request_id", "requests.charged"])
        .having(sql`coalesce(sum(ledger_entries.amount), 0)`, "!=", sql`requests.charged`)
        .limit(20)
        .compile(),
      entries: this.db
        .selectFrom("ledger_entries")
        .select(sql<number>`count(*)`.as("n"))
        .compile(),
    };
    // All on one state of the ledger: a commit landing between two of these reads (the server's, under load) would show
    // a balance that disagrees with its entries.
    const rows = await this.ledger.snapshot(queries);
    for (const row of rows.unbalanced) problems.push(`transaction ${row.transaction_id} sums to ${row.total}`);
    const sums = new Map(rows.sums.map((s) => [s.account, Number(s.total)]));
    const balances = rows.balances;
    const open = new Map(rows.open.map((o) => [accounts.credit(o.org_id), Number(o.total)]));
    for (const balance of balances) {
      const total = sums.get(balance.account) ?? 0;
      if (total !== balance.amount) problems.push(`${balance.account}: balance ${balance.amount}, entries ${total}`);
      if (balance.account.startsWith("org:") && balance.amount - balance.held < 0)
        problems.push(`${balance.account}: available credit is negative (${balance.amount - balance.held})`);
      if ((open.get(balance.account) ?? 0) !== balance.held)
        problems.push(`${balance.account}: ${balance.held} held, open requests hold ${open.get(balance.account) ?? 0}`);
    }
    for (const [account, held] of open)
      if (!balances.some((b) => b.account === account))
        problems.push(`${account}: open requests hold ${held} on no balance`);
    for (const row of rows.mismatched)
      problems.push(`request ${row.request_id}: charged ${row.charged}, revenue entry ${row.amount ?? "none"}`);
    return { ok: problems.length === 0, problems, entries: Number(rows.entries[0]?.n ?? 0) };
  }

  /** Per-request signals of one key since `since` (ms), newest first, at most `limit` rows. */
  async requestSignals(keyId: string, since: number, limit = 20_000) {
    return this.db
      .selectFrom("requests")
      .select(["created_at", "prompt_tokens", "completion_tokens", "prompt_simhash", "logprobs", "temperature"])
      .where("key_id", "=", keyId)
      .where("created_at", ">=", since)
      .orderBy("created_at", "desc")
      .limit(limit)
      .execute();
  }

  /** Every org with its credit (available and held) and how many keys it has, live or not. */
  async orgs(): Promise<{ id: string; name: string; available: number; held: number; keys: number }[]> {
    const rows = await this.db
      .selectFrom("orgs")
      .leftJoin("balances", (join) => join.on("balances.account", "=", sql<string>`'org:' || orgs.id || ':credit'`))
      .select([
        "orgs.id",
        "orgs.name",
        "balances.amount",
        "balances.held",
        (eb) =>
          eb
            .selectFrom("api_keys")
            .select(sql<number>`count(*)`.as("n"))
            .whereRef("api_keys.org_id", "=", "orgs.id")
            .as("keys"),
      ])
      .orderBy("orgs.name")
      .execute();
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      available: Number(r.amount ?? 0) - Number(r.held ?? 0),
      held: Number(r.held ?? 0),
      keys: Number(r.keys ?? 0),
    }));
  }

  /** One settled request, as its org may see it (what it was charged, from the ledger's own record). */
  async settledRequest(requestId: string) {
    const row = await this.db
      .selectFrom("requests")
      .select(["request_id", "org_id", "model", "prompt_tokens", "completion_tokens", "charged", "outcome"])
      .where("request_id", "=", requestId)
      .executeTakeFirst();
    // PostgreSQL's bigints arrive as strings.
    return row && { ...row, charged: Number(row.charged), prompt_tokens: Number(row.prompt_tokens) };
  }

  /** Requests, tokens and revenue since `since` (ms) in buckets of `bucketMs`: the dashboard's live charts. */
  async recentUsage(since: number, bucketMs: number) {
    // Inlined, not a parameter: PostgreSQL matches the grouped and the selected expression only if they are one text.
    if (!Number.isSafeInteger(bucketMs) || bucketMs <= 0) throw new InputError(`a bucket is a whole number of ms`);
    const bucket = sql<number>`cast(created_at / ${sql.lit(bucketMs)} as bigint)`;
    const rows = await this.db
      .selectFrom("requests")
      .select([
        bucket.as("bucket"),
        sql<number>`count(*)`.as("requests"),
        sql<number>`cast(sum(prompt_tokens + completion_tokens) as bigint)`.as("tokens"),
        sql<number>`cast(sum(charged) as bigint)`.as("revenue"),
      ])
      .where("created_at", ">=", since)
      .groupBy(bucket)
      .orderBy(bucket)
      .execute();
    return rows.map((r) => ({
      at: Number(r.bucket) * bucketMs,
      requests: Number(r.requests),
      tokens: Number(r.tokens),
      revenue: Number(r.revenue),
    }));
  }

  /** Usage grouped by org, key, model and day (UTC), optionally for one org and a day range [from, to]. */
  async usage(filter: { orgId?: string; from?: string; to?: string } = {}): Promise<UsageRow[]> {
    let query = this.db
      .selectFrom("requests")
      .select([
        "org_id",
        "key_id",
        "model",
        "day",
        sql<number>`count(*)`.as("requests"),
        sql<number>`cast(sum(prompt_tokens) as bigint)`.as("prompt_tokens"),
        sql<number>`cast(sum(completion_tokens) as bigint)`.as("completion_tokens"),
        sql<number>`cast(sum(charged) as bigint)`.as("cost"),
      ])
      .groupBy(["org_id", "key_id", "model", "day"])
      .orderBy("day")
      .orderBy("org_id")
      .orderBy("key_id")
      .orderBy("model");
    // Through the org's keys: requests are indexed by key and time.
    if (filter.orgId)
      query = query.where(
        "key_id",
        "in",
        this.db.selectFrom("api_keys").select("id").where("org_id", "=", filter.orgId),
      );
    if (filter.from) query = query.where("day", ">=", filter.from);
    if (filter.to) query = query.where("day", "<=", filter.to);
    return (await query.execute()).map((r) => ({
      ...r,
      requests: Number(r.requests),
      prompt_tokens: Number(r.prompt_tokens),
      completion_tokens: Number(r.completion_tokens),
      cost: Number(r.cost),
    }));
  }
}
