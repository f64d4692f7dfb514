import type SQLite from "better-sqlite3";
import type { JournalRecord } from "./ledger-journal.ts";
import {
  accounts,
  assertBalanced,
  chargeMovement,
  chargeOf,
  grantMovement,
  settledRow,
  type LedgerMovement,
} from "./ledger.ts";

/** The ledger's prepared statements on one SQLite connection. */
function prepareStatements(db: SQLite.Database) {
  return {
    begin: db.prepare("begin immediate"),
    commit: db.prepare("commit"),
    rollback: db.prepare("rollback"),
    insertTransaction: db.prepare(
      "insert into ledger_transactions (id, kind, org_id, request_id, memo, created_at) values (?, ?, ?, ?, ?, ?) on conflict do nothing",
    ),
    insertEntry: db.prepare("insert into ledger_entries (transaction_id, account, amount) values (?, ?, ?)"),
    insertTwoEntries: db.prepare(
      "insert into ledger_entries (transaction_id, account, amount) values (?, ?, ?), (?, ?, ?)",
    ),
    credit: db.prepare("update balances set amount = amount + ? where account = ?"),
    openBalance: db.prepare("insert into balances (account, org_id, amount, held) values (?, ?, ?, 0)"),
    shift: db.prepare("update balances set amount = amount + ?, held = held + ? where account = ?"),
    openShifted: db.prepare("insert into balances (account, org_id, amount, held) values (?, ?, ?, ?)"),
    balanceOf: db.prepare<[string], { amount: number }>("select amount from balances where account = ?"),
    transactionExists: db.prepare<[string], { one: number }>("select 1 as one from ledger_transactions where id = ?"),
    available: db.prepare<[string], { available: number }>(
      "select amount - held as available from balances where account = ?",
    ),
    takeHold: db.prepare("update balances set held = held + ? where account = ? and amount - held >= ?"),
    /** A hold decided before (replayed from the journal): taken as it was. */
    retakeHold: db.prepare("update balances set held = held + ? where account = ?"),
    hold: db.prepare<
      [string],
      { request_id: string; org_id: string; key_id: string; model: string; amount: number; created_at: number }
    >("select request_id, org_id, key_id, model, amount, created_at from holds where request_id = ?"),
    /** A request's hold, open or settled, in one statement. */
    existing: db.prepare<[string, string], { amount: number }>(
      "select amount from holds where request_id = ? union all select held from requests where request_id = ?",
    ),
    insertHold: db.prepare(
      "insert into holds (request_id, org_id, key_id, model, amount, created_at, instance) values (@request_id, @org_id, @key_id, @model, @amount, @created_at, @instance)",
    ),
    deleteHold: db.prepare("delete from holds where request_id = ?"),
    insertRequest: db.prepare(
      "insert into requests (request_id, org_id, key_id, model, held, charged, prompt_tokens, completion_tokens, outcome, created_at, settled_at, day, prompt_simhash, logprobs, temperature) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    /** Releases a hold and takes its charge from the same row in one statement. */
    releaseAndDebit: db.prepare("update balances set held = held - ?, amount = amount - ? where account = ?"),
  };
}

/**
 * The ledger's rows on SQLite: how a balanced movement, or an operation of the
 * journal, becomes rows of the tables. No batching and no decisions in memory:
 * `SqliteLedgerWriter` runs these inside its batches.
 */
export class LedgerTables {
  readonly statements: ReturnType<typeof prepareStatements>;

  constructor(db: SQLite.Database) {
    this.statements = prepareStatements(db);
  }

  /**
   * Applies one operation whose decisions are made (the live path after its
   * checks, or a replay of the journal): false when it had already happened.
   */
  apply(record: JournalRecord): boolean {
    switch (record.t) {
      case "grant":
        return this.post(grantMovement(record.orgId, record.amount, record.key, record.memo), undefined, record.at);
      case "hold": {
        if (this.statements.existing.get(record.request_id, record.request_id)) return false;
        const { t: _t, ...row } = record;
        this.statements.retakeHold.run(row.amount, accounts.credit(row.org_id));
        this.statements.insertHold.run(row);
        return true;
      }
      case "settle": {
        const hold = this.statements.hold.get(record.requestId);
        if (!hold) return false;
        const charged = chargeOf(hold.amount, record.usage);
        this.statements.deleteHold.run(record.requestId);
        this.insertSettled(settledRow(hold, charged, record.usage, record.at));
        // The hold's release and the charge's debit are one update of the org's row; `post` then applies the rest.
        this.statements.releaseAndDebit.run(hold.amount, charged, accounts.credit(hold.org_id));
        if (charged > 0)
          this.post(chargeMovement(hold, charged, record.usage), accounts.credit(hold.org_id), record.at);
        return true;
      }
    }
  }

  /** A settled request's `requests` row (its primary key makes a second settlement fail). */
  insertSettled(r: ReturnType<typeof settledRow>): void {
    this.statements.insertRequest.run(
      r.request_id,
      r.org_id,
      r.key_id,
      r.model,
      r.held,
      r.charged,
      r.prompt_tokens,
      r.completion_tokens,
      r.outcome,
      r.created_at,
      r.settled_at,
      r.day,
      r.prompt_simhash,
      r.logprobs,
      r.temperature,
    );
  }

  /**
   * Records a balanced movement and applies it to the balances, except to `applied` (an account the caller has already
   * updated).
   */
  post(movement: LedgerMovement, applied: string | undefined, at: number): boolean {
    if (!this.record(movement, at)) return false;
    for (const entry of movement.entries) {
      if (entry.account === applied) continue;
      // First movement of an account: its balance row starts here (a missing row is a zero balance).
      if (this.statements.credit.run(entry.amount, entry.account).changes === 0)
        this.statements.openBalance.run(
          entry.account,
          entry.account.startsWith("org:") ? movement.orgId : null,
          entry.amount,
        );
    }
    return true;
  }

  /** Records a balanced movement's transaction and entries (not its balances); false if its id was already recorded. */
  record(movement: LedgerMovement, at: number): boolean {
    assertBalanced(movement);
    if (
      this.statements.insertTransaction.run(
        movement.id,
        movement.kind,
        movement.orgId,
        movement.requestId,
        movement.memo,
        at,
      ).changes === 0
    )
      return false;
    const [first, second] = movement.entries;
    if (movement.entries.length === 2)
      this.statements.insertTwoEntries.run(
        movement.id,
        first!.account,
        first!.amount,
        movement.id,
        second!.account,
        second!.amount,
      );
    else
      for (const entry of movement.entries) this.statements.insertEntry.run(movement.id, entry.account, entry.amount);
    return true;
  }
}
