import { randomBytes } from "node:crypto";
import type SQLite from "better-sqlite3";
import { AvocadoError } from "../../core/errors.ts";
import { accounts, InsufficientCreditError, type LedgerMovement, type ReserveRequest, type SettleUsage } from "./ledger.ts";

const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString("base64url")}`;
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
  readonly grant: (orgId: string, amount: number, idempotencyKey: string, memo: string) => boolean;
  readonly reserve: (request: ReserveRequest) => number;
  readonly settle: (requestId: string, usage: SettleUsage) => boolean;

  constructor(private readonly db: SQLite.Database) {
    this.statements = {
      insertTransaction: db.prepare("insert or ignore into ledger_transactions (id, kind, idempotency_key, org_id, request_id, memo, created_at) values (?, ?, ?, ?, ?, ?, ?)"),
      ensureBalance: db.prepare("insert or ignore into balances (account, org_id, amount) values (?, ?, 0)"),
      credit: db.prepare("update balances set amount = amount + ? where account = ?"),
      debitGuarded: db.prepare("update balances set amount = amount - ? where account = ? and amount >= ?"),
      balance: db.prepare<[string], { amount: number }>("select amount from balances where account = ?"),
      insertEntry: db.prepare("insert into ledger_entries (transaction_id, account, amount, created_at) values (?, ?, ?, ?)"),
      reservation: db.prepare<[string], { request_id: string; org_id: string; key_id: string; model: string; amount: number; created_at: number }>(
        "select request_id, org_id, key_id, model, amount, created_at from reservations where request_id = ?",
      ),
      insertReservation: db.prepare("insert into reservations (request_id, org_id, key_id, model, amount, status, charged, created_at, settled_at, instance) values (?, ?, ?, ?, ?, 'open', null, ?, null, ?)"),
      claim: db.prepare("update reservations set status = 'settled', settled_at = ?, charged = ? where request_id = ? and status = 'open'"),
      insertUsage: db.prepare("insert into usage_records (request_id, org_id, key_id, model, prompt_tokens, completion_tokens, cost, outcome, created_at, day) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
    };
    this.grant = db.transaction((orgId: string, amount: number, idempotencyKey: string, memo: string) =>
      this.post({ kind: "grant", idempotencyKey: `grant:${idempotencyKey}`, orgId, requestId: null, memo, entries: [{ account: accounts.issued, amount: -amount }, { account: accounts.available(orgId), amount }] }),
    );
    this.reserve = db.transaction((request: ReserveRequest): number => {
      const existing = this.statements.reservation.get(request.requestId);
      if (existing) return existing.amount;
      let amount = request.amount;
      if (request.minimum !== undefined) {
        const available = this.statements.balance.get(accounts.available(request.orgId))?.amount ?? 0;
        amount = Math.min(amount, Math.max(available, 0));
        if (amount < request.minimum) throw new InsufficientCreditError(request.minimum, available);
      }
      this.statements.insertReservation.run(request.requestId, request.orgId, request.keyId, request.model, amount, Date.now(), request.instance);
      this.post({
        kind: "reserve",
        idempotencyKey: `reserve:${request.requestId}`,
        orgId: request.orgId,
        requestId: request.requestId,
        memo: `hold for ${request.model}`,
        entries: [
          { account: accounts.available(request.orgId), amount: -amount, guard: true },
          { account: accounts.reserved(request.orgId), amount },
        ],
      });
      return amount;
    });
    this.settle = db.transaction((requestId: string, usage: SettleUsage): boolean => {
      const reservation = this.statements.reservation.get(requestId);
      if (!reservation) return false;
      const now = Date.now();
      const charged = Math.min(Math.max(0, Math.round(usage.cost)), reservation.amount);
      if (this.statements.claim.run(now, charged, requestId).changes === 0) return false;
      this.post({
        kind: "settle",
        idempotencyKey: `settle:${requestId}`,
        orgId: reservation.org_id,
        requestId,
        memo: `${reservation.model}: ${usage.promptTokens} prompt + ${usage.completionTokens} completion tokens (${usage.outcome})`,
        entries: [
          { account: accounts.reserved(reservation.org_id), amount: -reservation.amount, guard: true },
          { account: accounts.revenue, amount: charged },
          { account: accounts.available(reservation.org_id), amount: reservation.amount - charged },
        ],
      });
      this.statements.insertUsage.run(requestId, reservation.org_id, reservation.key_id, reservation.model, usage.promptTokens, usage.completionTokens, charged, usage.outcome, now, day(reservation.created_at));
      return true;
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
      this.statements.ensureBalance.run(entry.account, movement.orgId);
      if (entry.guard && entry.amount < 0) {
        if (this.statements.debitGuarded.run(-entry.amount, entry.account, -entry.amount).changes === 0) {
          throw new InsufficientCreditError(-entry.amount, this.statements.balance.get(entry.account)?.amount ?? 0);
        }
      } else this.statements.credit.run(entry.amount, entry.account);
      this.statements.insertEntry.run(id, entry.account, entry.amount, now);
    }
    return true;
  }
}
