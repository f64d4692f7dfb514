import type SQLite from "better-sqlite3";
import { AvocadoError } from "../../core/errors.ts";
import { newId } from "../../core/ids.ts";
import { accounts, grantMovement, holdAmount, InsufficientCreditError, reserveMovement, settleMovement, type LedgerMovement, type ReserveRequest, type SettleUsage } from "./ledger.ts";

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/**
 * The ledger's writes on SQLite as prepared statements in synchronous
 * better-sqlite3 transactions: the same movements as the Kysely path (and the
 * same conformance suite), at tens of microseconds each, which is what lets one
 * process serve thousands of metered requests a second. On SQLite every ledger
 * write goes through here, so no Kysely transaction is ever open around them.
 */
export class SqliteLedger {
  private readonly statements;
  private readonly grantTransaction: (orgId: string, amount: number, idempotencyKey: string, memo: string) => boolean;
  private readonly reserveTransaction: (request: ReserveRequest) => number;
  private readonly settleTransaction: (requestId: string, usage: SettleUsage) => boolean;
  /** One outer transaction around a batch; each operation inside is a savepoint of its own. */
  private readonly batchTransaction: (run: () => void) => void;
  private queue: { run: () => unknown; resolve: (value: never) => void; reject: (error: unknown) => void }[] = [];

  constructor(private readonly db: SQLite.Database) {
    this.statements = {
      insertTransaction: db.prepare("insert or ignore into ledger_transactions (id, kind, idempotency_key, org_id, request_id, memo, created_at) values (?, ?, ?, ?, ?, ?, ?)"),
      openBalance: db.prepare("insert into balances (account, org_id, amount) values (?, ?, ?)"),
      credit: db.prepare("update balances set amount = amount + ? where account = ?"),
      debitGuarded: db.prepare("update balances set amount = amount - ? where account = ? and amount >= ?"),
      balance: db.prepare<[string], { amount: number }>("select amount from balances where account = ?"),
      insertEntry: db.prepare("insert into ledger_entries (transaction_id, account, amount, created_at) values (?, ?, ?, ?)"),
      reservation: db.prepare<[string], { request_id: string; org_id: string; key_id: string; model: string; amount: number; created_at: number }>(
        "select request_id, org_id, key_id, model, amount, created_at from reservations where request_id = ?",
      ),
      insertReservation: db.prepare("insert into reservations (request_id, org_id, key_id, model, amount, status, charged, created_at, settled_at, instance) values (?, ?, ?, ?, ?, 'open', null, ?, null, ?)"),
      claim: db.prepare("update reservations set status = 'settled', settled_at = ?, charged = ? where request_id = ? and status = 'open'"),
      insertUsage: db.prepare(
        "insert into usage_records (request_id, org_id, key_id, model, prompt_tokens, completion_tokens, cost, outcome, created_at, day, prompt_simhash, logprobs, temperature) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ),
    };
    this.batchTransaction = db.transaction((run: () => void) => run());
    this.grantTransaction = db.transaction((orgId: string, amount: number, idempotencyKey: string, memo: string) =>
      this.post(grantMovement(orgId, amount, idempotencyKey, memo)),
    );
    this.reserveTransaction = db.transaction((request: ReserveRequest): number => {
      const existing = this.statements.reservation.get(request.requestId);
      if (existing) return existing.amount;
      const amount = holdAmount(request, request.minimum !== undefined ? (this.statements.balance.get(accounts.available(request.orgId))?.amount ?? 0) : 0);
      this.statements.insertReservation.run(request.requestId, request.orgId, request.keyId, request.model, amount, Date.now(), request.instance);
      this.post(reserveMovement(request, amount));
      return amount;
    });
    this.settleTransaction = db.transaction((requestId: string, usage: SettleUsage): boolean => {
      const reservation = this.statements.reservation.get(requestId);
      if (!reservation) return false;
      const now = Date.now();
      const { charged, movement } = settleMovement(reservation, usage);
      if (this.statements.claim.run(now, charged, requestId).changes === 0) return false;
      this.post(movement);
      this.statements.insertUsage.run(
        requestId,
        reservation.org_id,
        reservation.key_id,
        reservation.model,
        usage.promptTokens,
        usage.completionTokens,
        charged,
        usage.outcome,
        now,
        day(reservation.created_at),
        usage.signals?.promptSimhash ?? null,
        usage.signals?.logprobs ?? -1,
        usage.signals?.temperature ?? null,
      );
      return true;
    });
  }

  grant(orgId: string, amount: number, idempotencyKey: string, memo: string): Promise<boolean> {
    return this.schedule(() => this.grantTransaction(orgId, amount, idempotencyKey, memo));
  }

  reserve(request: ReserveRequest): Promise<number> {
    return this.schedule(() => this.reserveTransaction(request));
  }

  settle(requestId: string, usage: SettleUsage): Promise<boolean> {
    return this.schedule(() => this.settleTransaction(requestId, usage));
  }

  /**
   * Group commit: the operations that arrive in the same turn of the event loop
   * run in one database transaction (each in its own savepoint, so one refusal
   * rolls back only itself), and every caller hears back only after the commit.
   */
  private schedule<T>(run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (value: never) => void, reject });
      if (this.queue.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      this.batchTransaction(() => {
        for (const operation of batch) {
          try {
            outcomes.push({ ok: true, value: operation.run() });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
      });
    } catch (error) {
      for (const operation of batch) operation.reject(error);
      return;
    }
    batch.forEach((operation, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) operation.resolve(outcome.value as never);
      else operation.reject(outcome.error);
    });
  }

  private post(movement: LedgerMovement): boolean {
    const total = movement.entries.reduce((sum, e) => sum + e.amount, 0);
    if (total !== 0) throw new AvocadoError("ledger_unbalanced", `ledger transaction '${movement.kind}' does not balance (${total})`);
    const now = Date.now();
    const id = newId("txn");
    if (this.statements.insertTransaction.run(id, movement.kind, movement.idempotencyKey, movement.orgId, movement.requestId, movement.memo, now).changes === 0) return false;
    for (const entry of movement.entries) {
      if (entry.amount === 0) continue;
      if (entry.guard && entry.amount < 0) {
        if (this.statements.debitGuarded.run(-entry.amount, entry.account, -entry.amount).changes === 0) {
          throw new InsufficientCreditError(-entry.amount, this.statements.balance.get(entry.account)?.amount ?? 0);
        }
      } else if (this.statements.credit.run(entry.amount, entry.account).changes === 0) {
        // First movement of this account: its balance row starts here (a missing row is a zero balance).
        this.statements.openBalance.run(entry.account, movement.orgId, entry.amount);
      }
      this.statements.insertEntry.run(id, entry.account, entry.amount, now);
    }
    return true;
  }
}
