import { createHash, randomBytes } from "node:crypto";
import { newId } from "../../core/ids.ts";
import { sql, type Transaction } from "kysely";
import { AvocadoError, InputError } from "../../core/errors.ts";
import { accounts, grantMovement, holdAmount, InsufficientCreditError, reserveMovement, settleMovement, type LedgerMovement, type ReserveRequest, type SettleUsage } from "./ledger.ts";
import type { WalCheckpointer } from "./checkpointer.ts";
import { SqliteLedger } from "./sqlite-ledger.ts";
import { openDatabase, type Database, type Db, type StoreKind } from "./database.ts";

export { accounts, InsufficientCreditError };

export type ApiKeyRow = Database["api_keys"];

export interface KeyLimits {
  rpm?: number | null;
  tpm?: number | null;
  concurrency?: number | null;
}

export interface NewKey {
  org: string;
  name: string;
  scopes?: string[] | null;
  plan?: string;
  limits?: KeyLimits;
  expiresAt?: number | null;
}

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

const hashKey = (key: string) => createHash("sha256").update(key).digest("hex");
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/**
 * Keys, the double-entry credit ledger, reservations and usage, on SQLite or
 * PostgreSQL. Every money movement is one transaction whose entries sum to
 * zero; reserve and settle are each one database transaction, and settle is
 * idempotent (a retry, or a recovery racing a live settle, never charges twice).
 */
export class Store {
  private constructor(
    readonly db: Db,
    readonly kind: StoreKind,
    /** On SQLite, the ledger's writes (grant, reserve, settle) as synchronous prepared statements. */
    private readonly sqliteLedger: SqliteLedger | undefined,
    private readonly checkpointer: WalCheckpointer | undefined,
  ) {}

  static async open(url: string): Promise<Store> {
    const { db, kind, sqlite, checkpointer } = await openDatabase(url);
    return new Store(db, kind, sqlite ? new SqliteLedger(sqlite) : undefined, checkpointer);
  }

  async close(): Promise<void> {
    await this.checkpointer?.close();
    await this.db.destroy();
  }

  // ---- orgs and keys -------------------------------------------------------

  async ensureOrg(name: string): Promise<string> {
    const existing = await this.db.selectFrom("orgs").select("id").where("name", "=", name).executeTakeFirst();
    if (existing) return existing.id;
    const id = newId("org");
    await this.db.insertInto("orgs").values({ id, name, created_at: Date.now() }).onConflict((c) => c.column("name").doNothing()).execute();
    return (await this.db.selectFrom("orgs").select("id").where("name", "=", name).executeTakeFirstOrThrow()).id;
  }

  async orgByName(name: string): Promise<{ id: string; name: string } | undefined> {
    return this.db.selectFrom("orgs").select(["id", "name"]).where("name", "=", name).executeTakeFirst();
  }

  /** Creates a key; the secret is returned once and only its hash is stored. */
  async createKey(spec: NewKey, rotatedFrom: string | null = null): Promise<{ key: string; row: ApiKeyRow }> {
    const orgId = await this.ensureOrg(spec.org);
    const secret = randomBytes(24).toString("base64url");
    const key = `avo_${secret}`;
    const row: ApiKeyRow = {
      id: newId("key"),
      org_id: orgId,
      name: spec.name,
      prefix: key.slice(0, 12),
      hash: hashKey(key),
      scopes: spec.scopes ? JSON.stringify(spec.scopes) : null,
      plan: spec.plan ?? "default",
      rpm: spec.limits?.rpm ?? null,
      tpm: spec.limits?.tpm ?? null,
      concurrency: spec.limits?.concurrency ?? null,
      expires_at: spec.expiresAt ?? null,
      revoked_at: null,
      created_at: Date.now(),
      rotated_from: rotatedFrom,
    };
    await this.db.insertInto("api_keys").values(row).execute();
    return { key, row };
  }

  async keyBySecret(key: string): Promise<ApiKeyRow | undefined> {
    return this.db.selectFrom("api_keys").selectAll().where("hash", "=", hashKey(key)).executeTakeFirst();
  }

  async keyById(id: string): Promise<ApiKeyRow | undefined> {
    return this.db.selectFrom("api_keys").selectAll().where((w) => w.or([w("id", "=", id), w("prefix", "=", id)])).executeTakeFirst();
  }

  async listKeys(orgName?: string): Promise<(ApiKeyRow & { org: string })[]> {
    let query = this.db.selectFrom("api_keys").innerJoin("orgs", "orgs.id", "api_keys.org_id").selectAll("api_keys").select("orgs.name as org");
    if (orgName) query = query.where("orgs.name", "=", orgName);
    return query.orderBy("api_keys.created_at").execute();
  }

  async revokeKey(id: string, at = Date.now()): Promise<ApiKeyRow> {
    const row = await this.keyById(id);
    if (!row) throw new InputError(`no key '${id}'`);
    if (row.revoked_at === null) await this.db.updateTable("api_keys").set({ revoked_at: at }).where("id", "=", row.id).execute();
    return { ...row, revoked_at: row.revoked_at ?? at };
  }

  /** A new key with the same org, scopes and limits; the old one stops working after `graceMs`. */
  async rotateKey(id: string, graceMs = 0): Promise<{ key: string; row: ApiKeyRow }> {
    const old = await this.keyById(id);
    if (!old) throw new InputError(`no key '${id}'`);
    if (old.revoked_at !== null) throw new InputError(`key '${old.prefix}…' is revoked`);
    const org = await this.db.selectFrom("orgs").select("name").where("id", "=", old.org_id).executeTakeFirstOrThrow();
    const created = await this.createKey(
      { org: org.name, name: old.name, scopes: old.scopes ? (JSON.parse(old.scopes) as string[]) : null, plan: old.plan, limits: old, expiresAt: old.expires_at },
      old.id,
    );
    await this.revokeKey(old.id, Date.now() + graceMs);
    return created;
  }

  // ---- the ledger ----------------------------------------------------------

  /**
   * One balanced ledger transaction (entries sum to zero), applied to the
   * balances in the same database transaction. `guard` accounts may not go
   * below zero: the update is conditional, so concurrent debits cannot overspend.
   * Returns false when the idempotency key was already used (nothing happens twice).
   */
  private async post(trx: Transaction<Database>, movement: LedgerMovement): Promise<boolean> {
    const total = movement.entries.reduce((sum, e) => sum + e.amount, 0);
    if (total !== 0) throw new AvocadoError("ledger_unbalanced", `ledger transaction '${movement.kind}' does not balance (${total})`);
    const now = Date.now();
    const transactionId = newId("txn");
    const inserted = await trx
      .insertInto("ledger_transactions")
      .values({ id: transactionId, kind: movement.kind, idempotency_key: movement.idempotencyKey, org_id: movement.orgId, request_id: movement.requestId, memo: movement.memo, created_at: now })
      .onConflict((c) => c.column("idempotency_key").doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) return false;
    for (const entry of movement.entries) {
      if (entry.amount === 0) continue;
      await trx.insertInto("balances").values({ account: entry.account, org_id: movement.orgId, amount: 0 }).onConflict((c) => c.column("account").doNothing()).execute();
      let update = trx
        .updateTable("balances")
        .set({ amount: sql`amount + ${entry.amount}` })
        .where("account", "=", entry.account);
      if (entry.guard && entry.amount < 0) update = update.where("amount", ">=", -entry.amount);
      const result = await update.executeTakeFirst();
      if (Number(result.numUpdatedRows) === 0) {
        const available = await trx.selectFrom("balances").select("amount").where("account", "=", entry.account).executeTakeFirst();
        throw new InsufficientCreditError(-entry.amount, available?.amount ?? 0);
      }
      await trx.insertInto("ledger_entries").values({ transaction_id: transactionId, account: entry.account, amount: entry.amount, created_at: now }).execute();
    }
    return true;
  }

  /** Adds prepaid credit (a top-up, a free-tier grant); idempotent by key. */
  async grant(orgName: string, amount: number, idempotencyKey: string, memo = "credit"): Promise<boolean> {
    if (!Number.isSafeInteger(amount) || amount <= 0) throw new InputError(`a credit must be a positive integer of micro-units (found ${amount})`);
    const orgId = await this.ensureOrg(orgName);
    if (this.sqliteLedger) return this.sqliteLedger.grant(orgId, amount, idempotencyKey, memo);
    return this.db.transaction().execute((trx) =>
      this.post(trx, grantMovement(orgId, amount, idempotencyKey, memo)),
    );
  }

  async balance(orgId: string): Promise<{ available: number; reserved: number }> {
    const rows = await this.db.selectFrom("balances").select(["account", "amount"]).where("account", "in", [accounts.available(orgId), accounts.reserved(orgId)]).execute();
    const of = (account: string) => rows.find((r) => r.account === account)?.amount ?? 0;
    return { available: of(accounts.available(orgId)), reserved: of(accounts.reserved(orgId)) };
  }

  /**
   * Holds up to `amount` of the org's credit for a request before it runs.
   * With `partial`, holds what is available if that is at least `minimum`
   * (a stream then stops where the credit ends). Idempotent by request id.
   */
  async reserve(request: ReserveRequest): Promise<number> {
    if (this.sqliteLedger) return this.sqliteLedger.reserve(request);
    return this.db.transaction().execute(async (trx) => {
      const existing = await trx.selectFrom("reservations").select("amount").where("request_id", "=", request.requestId).executeTakeFirst();
      if (existing) return existing.amount;
      const available = request.minimum !== undefined ? ((await trx.selectFrom("balances").select("amount").where("account", "=", accounts.available(request.orgId)).executeTakeFirst())?.amount ?? 0) : 0;
      const amount = holdAmount(request, available);
      await trx
        .insertInto("reservations")
        .values({ request_id: request.requestId, org_id: request.orgId, key_id: request.keyId, model: request.model, amount, status: "open", charged: null, created_at: Date.now(), settled_at: null, instance: request.instance })
        .execute();
      await this.post(trx, reserveMovement(request, amount));
      return amount;
    });
  }

  /**
   * Ends a reservation: charges `cost` (at most what was held) to revenue,
   * returns the rest, and records the usage — all in one transaction. A second
   * settle of the same request does nothing and returns false.
   */
  async settle(requestId: string, usage: SettleUsage): Promise<boolean> {
    if (this.sqliteLedger) return this.sqliteLedger.settle(requestId, usage);
    return this.db.transaction().execute(async (trx) => {
      const now = Date.now();
      const claimed = await trx.updateTable("reservations").set({ status: "settled", settled_at: now }).where("request_id", "=", requestId).where("status", "=", "open").executeTakeFirst();
      if (Number(claimed.numUpdatedRows) === 0) return false;
      const reservation = await trx.selectFrom("reservations").selectAll().where("request_id", "=", requestId).executeTakeFirstOrThrow();
      const { charged, movement } = settleMovement(reservation, usage);
      await trx.updateTable("reservations").set({ charged }).where("request_id", "=", requestId).execute();
      await this.post(trx, movement);
      await trx
        .insertInto("usage_records")
        .values({
          request_id: requestId,
          org_id: reservation.org_id,
          key_id: reservation.key_id,
          model: reservation.model,
          prompt_tokens: usage.promptTokens,
          completion_tokens: usage.completionTokens,
          cost: charged,
          outcome: usage.outcome,
          created_at: now,
          day: day(reservation.created_at),
          prompt_simhash: usage.signals?.promptSimhash ?? null,
          logprobs: usage.signals?.logprobs ?? -1,
          temperature: usage.signals?.temperature ?? null,
        })
        .execute();
      return true;
    });
  }

  /** Reservations still open, of one instance or all, older than `olderThanMs`. */
  async openReservations(options: { instance?: string; olderThanMs?: number } = {}): Promise<Database["reservations"][]> {
    let query = this.db.selectFrom("reservations").selectAll().where("status", "=", "open");
    if (options.instance) query = query.where("instance", "=", options.instance);
    if (options.olderThanMs !== undefined) query = query.where("created_at", "<", Date.now() - options.olderThanMs);
    return query.execute();
  }

  /**
   * The ledger's invariants: every transaction balances, the entries sum to
   * zero, every balance equals the sum of its entries, no available balance is
   * negative, and reserved balances equal the open reservations.
   */
  async audit(): Promise<{ ok: boolean; problems: string[]; entries: number }> {
    const problems: string[] = [];
    const unbalanced = await this.db
      .selectFrom("ledger_entries")
      .select(["transaction_id", sql<number>`cast(sum(amount) as bigint)`.as("total")])
      .groupBy("transaction_id")
      .having(sql`sum(amount)`, "!=", 0)
      .execute();
    for (const row of unbalanced) problems.push(`transaction ${row.transaction_id} sums to ${row.total}`);
    const sums = await this.db.selectFrom("ledger_entries").select(["account", sql<number>`cast(sum(amount) as bigint)`.as("total")]).groupBy("account").execute();
    const balances = await this.db.selectFrom("balances").selectAll().execute();
    for (const balance of balances) {
      const total = sums.find((s) => s.account === balance.account)?.total ?? 0;
      if (Number(total) !== balance.amount) problems.push(`${balance.account}: balance ${balance.amount}, entries ${total}`);
      if (balance.account.endsWith(":available") && balance.amount < 0) problems.push(`${balance.account} is negative (${balance.amount})`);
    }
    const open = await this.db.selectFrom("reservations").select(["org_id", sql<number>`cast(sum(amount) as bigint)`.as("total")]).where("status", "=", "open").groupBy("org_id").execute();
    for (const balance of balances.filter((b) => b.account.endsWith(":reserved"))) {
      const expected = Number(open.find((o) => accounts.reserved(o.org_id) === balance.account)?.total ?? 0);
      if (expected !== balance.amount) problems.push(`${balance.account}: ${balance.amount} held, open reservations ${expected}`);
    }
    const entries = Number((await this.db.selectFrom("ledger_entries").select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow()).n);
    return { ok: problems.length === 0, problems, entries };
  }

  /** Per-request signals of one key since `since` (ms), newest first, at most `limit` rows. */
  async requestSignals(keyId: string, since: number, limit = 20_000) {
    return this.db
      .selectFrom("usage_records")
      .select(["created_at", "prompt_tokens", "completion_tokens", "prompt_simhash", "logprobs", "temperature"])
      .where("key_id", "=", keyId)
      .where("created_at", ">=", since)
      .orderBy("created_at", "desc")
      .limit(limit)
      .execute();
  }

  /** Usage grouped by org, key, model and day (UTC), optionally for one org and a day range [from, to]. */
  async usage(filter: { orgId?: string; from?: string; to?: string } = {}): Promise<UsageRow[]> {
    let query = this.db
      .selectFrom("usage_records")
      .select([
        "org_id",
        "key_id",
        "model",
        "day",
        sql<number>`count(*)`.as("requests"),
        sql<number>`cast(sum(prompt_tokens) as bigint)`.as("prompt_tokens"),
        sql<number>`cast(sum(completion_tokens) as bigint)`.as("completion_tokens"),
        sql<number>`cast(sum(cost) as bigint)`.as("cost"),
      ])
      .groupBy(["org_id", "key_id", "model", "day"])
      .orderBy("day")
      .orderBy("org_id")
      .orderBy("key_id")
      .orderBy("model");
    if (filter.orgId) query = query.where("org_id", "=", filter.orgId);
    if (filter.from) query = query.where("day", ">=", filter.from);
    if (filter.to) query = query.where("day", "<=", filter.to);
    return (await query.execute()).map((r) => ({ ...r, requests: Number(r.requests), prompt_tokens: Number(r.prompt_tokens), completion_tokens: Number(r.completion_tokens), cost: Number(r.cost) }));
  }
}
