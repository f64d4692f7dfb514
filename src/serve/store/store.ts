import { sql, type CompiledQuery, type Transaction } from "kysely";
import { errorMessage, FileError, InputError } from "../../core/errors.ts";
import { accounts, assertBalanced, chargeMovement, chargeOf, checkCeiling, grantMovement, holdAmount, InsufficientCreditError, MAX_ISSUED, CreditCeilingError, holdRow, refundMovement, settledRow, type Hold, type LedgerMovement, type ReserveOptions, type ReserveRequest, type SettleUsage } from "./ledger.ts";
import type { WalCheckpointer } from "./checkpointer.ts";
import { deadJournals, LedgerJournal, otherServers, parseJournal, readDeadJournal, removeDeadJournal } from "./ledger-journal.ts";
import { SqliteLedger } from "./sqlite-ledger.ts";
import type { Logger } from "../../core/logger.ts";
import { KeyStore, type ApiKeyRow, type KeyLimits, type NewKey } from "./key-store.ts";
import { openDatabase, type Database, type Db, type StoreKind } from "./database.ts";

export { accounts, CreditCeilingError, InsufficientCreditError, MAX_ISSUED, type ApiKeyRow, type Hold, type KeyLimits, type NewKey };

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
 * Keys, the double-entry credit ledger, reservations and usage, on SQLite or
 * PostgreSQL. Every money movement is one transaction whose entries sum to
 * zero; reserve and settle are each one database transaction, and settle is
 * idempotent (a retry, or a recovery racing a live settle, never charges twice).
 */
export class Store extends KeyStore {
  private constructor(
    db: Db,
    readonly kind: StoreKind,
    /** On SQLite, the ledger's writes (grant, reserve, settle) as synchronous prepared statements. */
    private readonly sqliteLedger: SqliteLedger | undefined,
    private readonly checkpointer: WalCheckpointer | undefined,
  ) {
    super(db);
  }

  /**
   * Opens a store. On a SQLite file, the journals of processes that died
   * before committing their ledger's last batch are applied first. `journal`
   * (a long-running server on SQLite): the ledger's operations become durable
   * in a journal and its tables commit in batches (see `SqliteLedger`).
   */
  static async open(url: string, options: { journal?: boolean | { commitMs: number }; logger?: Logger; statementTimeoutMs?: number } = {}): Promise<Store> {
    const { db, kind, sqlite, checkpointer } = await openDatabase(url, options.logger, { statementTimeoutMs: options.statementTimeoutMs });
    const path = url.slice("sqlite:".length);
    const file = sqlite !== undefined && path !== "" && path !== ":memory:";
    let ledger: SqliteLedger | undefined;
    try {
      const dead = sqlite && file ? deadJournals(path) : [];
      const recovery = dead.length > 0 ? new SqliteLedger(sqlite!) : undefined;
      for (const journal of dead) {
        const text = readDeadJournal(journal);
        if (text === undefined) continue;
        try {
          recovery!.replay(parseJournal(text));
        } catch (error) {
          throw new FileError(journal, `the ledger journal of a stopped server cannot be applied (${errorMessage(error)}); it is kept, and nothing in it is lost`, { cause: error });
        }
        removeDeadJournal(journal);
      }
      let journal: LedgerJournal | undefined;
      try {
        journal = file && options.journal ? new LedgerJournal(path) : undefined;
      } catch (error) {
        throw new FileError(path, `cannot create the ledger journal beside the SQLite store (${errorMessage(error)})`, { cause: error });
      }
      // A server decides credit on the committed balance plus its own unwritten rows: a second server of the same file would not see the first's.
      const others = journal ? otherServers(path) : [];
      if (others.length > 0) {
        journal!.close();
        throw new InputError(`another server (pid ${others.join(", ")}) is serving ${path}: one server per SQLite file (replicas share a PostgreSQL store)`);
      }
      if (sqlite) ledger = new SqliteLedger(sqlite, journal, typeof options.journal === "object" ? options.journal.commitMs : undefined);
      if (ledger && journal) checkpointer?.onCaughtUp(ledger.checkpointCaughtUp);
    } catch (error) {
      await checkpointer?.close();
      await db.destroy();
      throw error;
    }
    return new Store(db, kind, ledger, checkpointer);
  }

  async close(): Promise<void> {
    this.sqliteLedger?.close();
    await this.checkpointer?.close();
    await this.db.destroy();
  }

  /**
   * Whether the ledger can write now: on SQLite, false once its tables failed
   * and could not be rebuilt (the next process applies its journal); on
   * PostgreSQL, whether the database answers within `timeoutMs`.
   */
  async ledgerAvailable(timeoutMs = 1_000): Promise<boolean> {
    if (this.kind === "sqlite") return this.sqliteLedger?.available ?? true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const answered = sql`select 1`.execute(this.db).then(
      () => true,
      () => false,
    );
    try {
      return await Promise.race([answered, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** On SQLite, a read of the ledger's tables sees every operation decided so far (a server writes the rows it decided in memory first). */
  private readLedger(): void {
    this.sqliteLedger?.drain();
  }

  /** On SQLite, a write outside the ledger commits the ledger's open batch first, so it never joins (or rolls back with) that batch. */
  protected override writeOutsideLedger(): void {
    this.sqliteLedger?.flush();
  }

  // ---- the ledger ----------------------------------------------------------

  /**
   * One balanced ledger transaction (entries sum to zero), applied to the
   * balances in the same database transaction. Returns false when its id (the
   * idempotency key) was already used: nothing happens twice.
   */
  private async post(trx: Transaction<Database>, movement: LedgerMovement): Promise<boolean> {
    assertBalanced(movement);
    const inserted = await trx
      .insertInto("ledger_transactions")
      .values({ id: movement.id, kind: movement.kind, org_id: movement.orgId, request_id: movement.requestId, memo: movement.memo, created_at: Date.now() })
      .onConflict((c) => c.column("id").doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) return false;
    for (const entry of movement.entries) {
      await trx
        .insertInto("balances")
        .values({ account: entry.account, org_id: entry.account.startsWith("org:") ? movement.orgId : null, amount: entry.amount, held: 0 })
        .onConflict((c) => c.column("account").doUpdateSet({ amount: sql`balances.amount + ${entry.amount}` }))
        .execute();
      await trx.insertInto("ledger_entries").values({ transaction_id: movement.id, account: entry.account, amount: entry.amount }).execute();
    }
    return true;
  }

  /** Adds prepaid credit (a top-up, a free-tier grant); idempotent by key. */
  async grant(orgName: string, amount: number, idempotencyKey: string, memo = "credit"): Promise<boolean> {
    if (!Number.isSafeInteger(amount) || amount <= 0) throw new InputError(`a credit must be a positive integer of micro-units (found ${amount})`);
    const orgId = await this.ensureOrg(orgName);
    if (this.sqliteLedger) {
      const { value, durable } = this.sqliteLedger.grant(orgId, amount, idempotencyKey, memo);
      await durable;
      return value;
    }
    const movement = grantMovement(orgId, amount, idempotencyKey, memo);
    return this.db.transaction().execute(async (trx) => {
      if (await trx.selectFrom("ledger_transactions").select("id").where("id", "=", movement.id).executeTakeFirst()) return false;
      // Locked until the commit (the row made first if this is the first grant): two grants cannot both pass the ceiling on the same total.
      await trx.insertInto("balances").values({ account: accounts.issued, org_id: null, amount: 0, held: 0 }).onConflict((c) => c.column("account").doNothing()).execute();
      const issued = await trx.selectFrom("balances").select("amount").where("account", "=", accounts.issued).forUpdate().executeTakeFirst();
      checkCeiling(Number(issued?.amount ?? 0), amount);
      return this.post(trx, movement);
    });
  }

  /** An org's spendable credit, and the part of its credit held for requests in flight. */
  async balance(orgId: string): Promise<{ available: number; reserved: number }> {
    this.readLedger();
    const row = await this.db.selectFrom("balances").select(["amount", "held"]).where("account", "=", accounts.credit(orgId)).executeTakeFirst();
    return { available: (row?.amount ?? 0) - (row?.held ?? 0), reserved: row?.held ?? 0 };
  }

  /**
   * Holds up to `amount` of the org's credit for a request before it runs.
   * With `minimum`, holds what is available if that is at least `minimum`
   * (a stream then stops where the credit ends). Idempotent by request id
   * (unless the caller says the id is `fresh`; see `ReserveOptions`).
   * Nothing may reach the client before the hold's `durable` has resolved.
   */
  async reserve(request: ReserveRequest, options: ReserveOptions = {}): Promise<Hold> {
    if (this.sqliteLedger) {
      const { value, durable } = this.sqliteLedger.reserve(request, options);
      return { amount: value, durable };
    }
    const amount = await this.db.transaction().execute(async (trx) => {
      const existing = options.fresh
        ? undefined
        : ((await trx.selectFrom("holds").select("amount").where("request_id", "=", request.requestId).executeTakeFirst())?.amount ??
          (await trx.selectFrom("requests").select("held").where("request_id", "=", request.requestId).executeTakeFirst())?.held);
      if (existing !== undefined) return existing;
      const account = accounts.credit(request.orgId);
      const balance = await trx.selectFrom("balances").select(["amount", "held"]).where("account", "=", account).executeTakeFirst();
      const amount = holdAmount(request, (balance?.amount ?? 0) - (balance?.held ?? 0));
      // Guarded: a concurrent hold that got there first makes this one fail rather than overdraw.
      const taken = await trx
        .updateTable("balances")
        .set({ held: sql`held + ${amount}` })
        .where("account", "=", account)
        .where(sql`amount - held`, ">=", amount)
        .executeTakeFirst();
      if (Number(taken.numUpdatedRows) === 0) {
        const now = await trx.selectFrom("balances").select(sql<number>`amount - held`.as("available")).where("account", "=", account).executeTakeFirst();
        throw new InsufficientCreditError(amount, Math.max(0, now?.available ?? 0));
      }
      await trx.insertInto("holds").values(holdRow(request, amount, Date.now())).execute();
      return amount;
    });
    return { amount, durable: Promise.resolve() };
  }

  /**
   * Ends a request: charges `cost` (at most what was held) to revenue, releases
   * the hold, and records the usage — all in one transaction. A second settle
   * of the same request does nothing and returns false.
   */
  async settle(requestId: string, usage: SettleUsage): Promise<boolean> {
    if (this.sqliteLedger) {
      const { value, durable } = this.sqliteLedger.settle(requestId, usage);
      await durable;
      return value;
    }
    return this.db.transaction().execute(async (trx) => {
      // Deleting the hold is the claim: of two settlements racing, one deletes it and the other finds nothing.
      const hold = await trx.deleteFrom("holds").where("request_id", "=", requestId).returningAll().executeTakeFirst();
      if (!hold) return false;
      const charged = chargeOf(hold.amount, usage);
      await trx
        .updateTable("balances")
        .set({ held: sql`held - ${hold.amount}` })
        .where("account", "=", accounts.credit(hold.org_id))
        .execute();
      await trx.insertInto("requests").values(settledRow(hold, charged, usage, Date.now())).execute();
      if (charged > 0) await this.post(trx, chargeMovement(hold, charged, usage));
      return true;
    });
  }

  /**
   * Gives back what a settled request was charged, and records it as charged nothing with outcome `outcome`:
   * for an answer withheld from its client, who was told nothing was charged, whose settlement had landed after
   * all (on PostgreSQL, a commit whose acknowledgement was lost with the connection). Once: returns the amount
   * given back, 0 when the request was charged nothing (or was given back already) or is unknown.
   */
  async voidCharge(requestId: string, outcome: string): Promise<number> {
    this.writeOutsideLedger();
    return this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom("requests").select(["request_id", "org_id", "charged"]).where("request_id", "=", requestId).executeTakeFirst();
      if (!row || row.charged <= 0) return 0;
      // Guarded on the amount read: of two voids racing, one changes the row and the other finds nothing to give back.
      const changed = await trx.updateTable("requests").set({ charged: 0, outcome }).where("request_id", "=", requestId).where("charged", "=", row.charged).executeTakeFirst();
      if (Number(changed.numUpdatedRows) === 0) return 0;
      await this.post(trx, refundMovement(row, row.charged, `${outcome}: the answer was withheld, its charge given back`));
      return row.charged;
    });
  }

  /** Holds of requests in flight, of one instance or all, older than `olderThanMs`. */
  async openReservations(options: { instance?: string; olderThanMs?: number } = {}): Promise<Database["holds"][]> {
    this.readLedger();
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
      unbalanced: this.db.selectFrom("ledger_entries").select(["transaction_id", sql<number>`cast(sum(amount) as bigint)`.as("total")]).groupBy("transaction_id").having(sql`sum(amount)`, "!=", 0).compile(),
      sums: this.db.selectFrom("ledger_entries").select(["account", sql<number>`cast(sum(amount) as bigint)`.as("total")]).groupBy("account").compile(),
      balances: this.db.selectFrom("balances").selectAll().compile(),
      open: this.db.selectFrom("holds").select(["org_id", sql<number>`cast(sum(amount) as bigint)`.as("total")]).groupBy("org_id").compile(),
      // A request's charge, less what was given back of it, is what its revenue entries say.
      mismatched: this.db
        .selectFrom("requests")
        .leftJoin("ledger_entries", (join) =>
          join
            .on((eb) => eb.or([eb("ledger_entries.transaction_id", "=", sql<string>`'charge:' || requests.request_id`), eb("ledger_entries.transaction_id", "=", sql<string>`'refund:' || requests.request_id`)]))
            .on("ledger_entries.account", "=", accounts.revenue),
        )
        .select(["requests.request_id", "requests.charged", sql<number | null>`sum(ledger_entries.amount)`.as("amount")])
        .groupBy(["requests.request_id", "requests.charged"])
        .having(sql`coalesce(sum(ledger_entries.amount), 0)`, "!=", sql`requests.charged`)
        .limit(20)
        .compile(),
      entries: this.db.selectFrom("ledger_entries").select(sql<number>`count(*)`.as("n")).compile(),
    };
    // All on one state of the ledger: a commit landing between two of these reads (the server's, under load) would show a balance that disagrees with its entries.
    const rows = await this.snapshot(queries);
    for (const row of rows.unbalanced) problems.push(`transaction ${row.transaction_id} sums to ${row.total}`);
    const sums = new Map(rows.sums.map((s) => [s.account, Number(s.total)]));
    const balances = rows.balances;
    const open = new Map(rows.open.map((o) => [accounts.credit(o.org_id), Number(o.total)]));
    for (const balance of balances) {
      const total = sums.get(balance.account) ?? 0;
      if (total !== balance.amount) problems.push(`${balance.account}: balance ${balance.amount}, entries ${total}`);
      if (balance.account.startsWith("org:") && balance.amount - balance.held < 0) problems.push(`${balance.account}: available credit is negative (${balance.amount - balance.held})`);
      if ((open.get(balance.account) ?? 0) !== balance.held) problems.push(`${balance.account}: ${balance.held} held, open requests hold ${open.get(balance.account) ?? 0}`);
    }
    for (const [account, held] of open) if (!balances.some((b) => b.account === account)) problems.push(`${account}: open requests hold ${held} on no balance`);
    for (const row of rows.mismatched) problems.push(`request ${row.request_id}: charged ${row.charged}, revenue entry ${row.amount ?? "none"}`);
    return { ok: problems.length === 0, problems, entries: Number(rows.entries[0]?.n ?? 0) };
  }

  /**
   * Runs read queries on one consistent state of the store: on SQLite in one
   * synchronous step, after this process's decided rows are written (no commit,
   * of this process or another, can land between them); on PostgreSQL in one
   * repeatable-read transaction.
   */
  private async snapshot<Q extends Record<string, CompiledQuery>>(queries: Q): Promise<{ [K in keyof Q]: Q[K] extends CompiledQuery<infer R> ? R[] : never }> {
    type Rows = { [K in keyof Q]: Q[K] extends CompiledQuery<infer R> ? R[] : never };
    const names = Object.keys(queries) as (keyof Q)[];
    if (this.sqliteLedger) return this.sqliteLedger.read((all) => Object.fromEntries(names.map((name) => [name, all(queries[name]!)])) as Rows);
    return this.db
      .transaction()
      .setIsolationLevel("repeatable read")
      .execute(async (trx) => {
        const rows: Partial<Rows> = {};
        for (const name of names) rows[name] = (await trx.executeQuery(queries[name]!)).rows as Rows[typeof name];
        return rows as Rows;
      });
  }

  /** Per-request signals of one key since `since` (ms), newest first, at most `limit` rows. */
  async requestSignals(keyId: string, since: number, limit = 20_000) {
    this.readLedger();
    return this.db
      .selectFrom("requests")
      .select(["created_at", "prompt_tokens", "completion_tokens", "prompt_simhash", "logprobs", "temperature"])
      .where("key_id", "=", keyId)
      .where("created_at", ">=", since)
      .orderBy("created_at", "desc")
      .limit(limit)
      .execute();
  }

  /** Usage grouped by org, key, model and day (UTC), optionally for one org and a day range [from, to]. */
  async usage(filter: { orgId?: string; from?: string; to?: string } = {}): Promise<UsageRow[]> {
    this.readLedger();
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
    if (filter.orgId) query = query.where("key_id", "in", this.db.selectFrom("api_keys").select("id").where("org_id", "=", filter.orgId));
    if (filter.from) query = query.where("day", ">=", filter.from);
    if (filter.to) query = query.where("day", "<=", filter.to);
    return (await query.execute()).map((r) => ({ ...r, requests: Number(r.requests), prompt_tokens: Number(r.prompt_tokens), completion_tokens: Number(r.completion_tokens), cost: Number(r.cost) }));
  }
}
