import { sql, type CompiledQuery } from "kysely";
import type { Db } from "./database.ts";
import { postMovement, voidChargeIn } from "./ledger-sql.ts";
import {
  accounts,
  chargeMovement,
  chargeOf,
  checkCeiling,
  grantMovement,
  holdAmount,
  holdRow,
  InsufficientCreditError,
  settledRow,
  type Hold,
  type Ledger,
  type ReserveOptions,
  type ReserveRequest,
  type SettleUsage,
  type SnapshotRows,
} from "./ledger.ts";

/**
 * The ledger on PostgreSQL: each operation is one Kysely transaction, and
 * concurrent replicas are kept apart by row locks and guarded updates.
 */
export class PostgresLedger implements Ledger {
  constructor(private readonly db: Db) {}

  reads(): Db {
    return this.db;
  }

  writes(): Db {
    return this.db;
  }

  async grant(orgId: string, amount: number, idempotencyKey: string, memo: string): Promise<boolean> {
    const movement = grantMovement(orgId, amount, idempotencyKey, memo);
    return this.db.transaction().execute(async (trx) => {
      if (await trx.selectFrom("ledger_transactions").select("id").where("id", "=", movement.id).executeTakeFirst())
        return false;
      // Locked until the commit (the row made first if this is the first grant): two grants cannot both pass the
      // ceiling on the same total.
      await trx
        .insertInto("balances")
        .values({ account: accounts.issued, org_id: null, amount: 0, held: 0 })
        .onConflict((c) => c.column("account").doNothing())
        .execute();
      const issued = await trx
        .selectFrom("balances")
        .select("amount")
        .where("account", "=", accounts.issued)
        .forUpdate()
        .executeTakeFirst();
      checkCeiling(Number(issued?.amount ?? 0), amount);
      return postMovement(trx, movement);
    });
  }

  async reserve(request: ReserveRequest, options: ReserveOptions = {}): Promise<Hold> {
    const amount = await this.db.transaction().execute(async (trx) => {
      const existing = options.fresh
        ? undefined
        : ((
            await trx
              .selectFrom("holds")
              .select("amount")
              .where("request_id", "=", request.requestId)
              .executeTakeFirst()
          )?.amount ??
          (
            await trx
              .selectFrom("requests")
              .select("held")
              .where("request_id", "=", request.requestId)
              .executeTakeFirst()
          )?.held);
      if (existing !== undefined) return existing;
      const account = accounts.credit(request.orgId);
      const balance = await trx
        .selectFrom("balances")
        .select(["amount", "held"])
        .where("account", "=", account)
        .executeTakeFirst();
      const amount = holdAmount(request, (balance?.amount ?? 0) - (balance?.held ?? 0));
      // Guarded: a concurrent hold that got there first makes this one fail rather than overdraw.
      const taken = await trx
        .updateTable("balances")
        .set({ held: sql`held + ${amount}` })
        .where("account", "=", account)
        .where(sql`amount - held`, ">=", amount)
        .executeTakeFirst();
      if (Number(taken.numUpdatedRows) === 0) {
        const now = await trx
          .selectFrom("balances")
          .select(sql<number>`amount - held`.as("available"))
          .where("account", "=", account)
          .executeTakeFirst();
        throw new InsufficientCreditError(amount, Math.max(0, now?.available ?? 0));
      }
      await trx
        .insertInto("holds")
        .values(holdRow(request, amount, Date.now()))
        .execute();
      return amount;
    });
    return { amount, durable: Promise.resolve() };
  }

  async settle(requestId: string, usage: SettleUsage): Promise<boolean> {
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
      await trx
        .insertInto("requests")
        .values(settledRow(hold, charged, usage, Date.now()))
        .execute();
      if (charged > 0) await postMovement(trx, chargeMovement(hold, charged, usage));
      return true;
    });
  }

  voidCharge(requestId: string, outcome: string): Promise<number> {
    return voidChargeIn(this.db, requestId, outcome);
  }

  /** In one repeatable-read transaction. */
  async snapshot<Q extends Record<string, CompiledQuery>>(queries: Q): Promise<SnapshotRows<Q>> {
    return this.db
      .transaction()
      .setIsolationLevel("repeatable read")
      .execute(async (trx) => {
        const rows: Partial<SnapshotRows<Q>> = {};
        for (const name of Object.keys(queries) as (keyof Q)[])
          rows[name] = (await trx.executeQuery(queries[name]!)).rows as SnapshotRows<Q>[typeof name];
        return rows as SnapshotRows<Q>;
      });
  }

  /** Whether the database answers `select 1` within `timeoutMs`. */
  async available(timeoutMs: number): Promise<boolean> {
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

  async close(): Promise<void> {
    await this.db.destroy();
  }
}
