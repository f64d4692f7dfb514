import { sql, type Transaction } from "kysely";
import type { Database, Db } from "./database.ts";
import { assertBalanced, refundMovement, type LedgerMovement } from "./ledger.ts";

/**
 * One balanced ledger transaction (entries sum to zero), applied to the
 * balances in the same database transaction. Returns false when its id (the
 * idempotency key) was already used: nothing happens twice.
 */
export async function postMovement(trx: Transaction<Database>, movement: LedgerMovement): Promise<boolean> {
  assertBalanced(movement);
  const inserted = await trx
    .insertInto("ledger_transactions")
    .values({
      id: movement.id,
      kind: movement.kind,
      org_id: movement.orgId,
      request_id: movement.requestId,
      memo: movement.memo,
      created_at: Date.now(),
    })
    .onConflict((c) => c.column("id").doNothing())
    .executeTakeFirst();
  if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) return false;
  for (const entry of movement.entries) {
    await trx
      .insertInto("balances")
      .values({
        account: entry.account,
        org_id: entry.account.startsWith("org:") ? movement.orgId : null,
        amount: entry.amount,
        held: 0,
      })
      .onConflict((c) => c.column("account").doUpdateSet({ amount: sql`balances.amount + ${entry.amount}` }))
      .execute();
    await trx
      .insertInto("ledger_entries")
      .values({ transaction_id: movement.id, account: entry.account, amount: entry.amount })
      .execute();
  }
  return true;
}

/** The refund of a settled request's charge, in one Kysely transaction (both backends: it is rare). */
export async function voidChargeIn(db: Db, requestId: string, outcome: string): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .selectFrom("requests")
      .select(["request_id", "org_id", "charged"])
      .where("request_id", "=", requestId)
      .executeTakeFirst();
    if (!row || row.charged <= 0) return 0;
    // Guarded on the amount read: of two voids racing, one changes the row and the other finds nothing to give back.
    const changed = await trx
      .updateTable("requests")
      .set({ charged: 0, outcome })
      .where("request_id", "=", requestId)
      .where("charged", "=", row.charged)
      .executeTakeFirst();
    if (Number(changed.numUpdatedRows) === 0) return 0;
    await postMovement(
      trx,
      refundMovement(row, row.charged, `${outcome}: the answer was withheld, its charge given back`),
    );
    return row.charged;
  });
}
