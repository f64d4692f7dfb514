import type SQLite from "better-sqlite3";
import { accounts, assertBalanced, chargeMovement, chargeOf, grantMovement, holdAmount, InsufficientCreditError, holdRow, settledRow, type LedgerMovement, type ReserveRequest, type SettleUsage } from "./ledger.ts";

/** An operation decided now, committed with the rest of its turn of the event loop. */
export interface Pending<T> {
  value: T;
  /** Resolves once the operation is committed; rejects if its batch could not be (then it never happened). */
  durable: Promise<void>;
}

/**
 * The longest a lazy operation waits for its commit. A lazy hold is one whose
 * request sends nothing before its settlement: it usually commits with that
 * settlement, one commit per request instead of two.
 */
const LAZY_COMMIT_MS = 2;

interface Waiter {
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * The ledger's writes on SQLite: prepared statements, executed at once, in one
 * write transaction per turn of the event loop (group commit).
 *
 * Executing at once means a caller knows its answer (a hold, a refusal, a
 * settlement) synchronously, and can start its work while the commit is still
 * to come: it waits for `durable` only before anything leaves the process.
 * The same movements as the Kysely path (and the same conformance suite),
 * at a few microseconds each.
 */
export class SqliteLedger {
  private readonly statements;
  /** The waiters of the open write transaction, or undefined when none is open. */
  private waiters: Waiter[] | undefined;
  /** How the open transaction's commit is scheduled: at the end of this turn, or after LAZY_COMMIT_MS. */
  private scheduled: "turn" | "timer" | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Holds this process has taken and not yet settled: with none left, a settlement commits at once (nobody to batch with). */
  private readonly inFlight = new Set<string>();

  constructor(private readonly db: SQLite.Database) {
    this.statements = {
      begin: db.prepare("begin immediate"),
      commit: db.prepare("commit"),
      rollback: db.prepare("rollback"),
      insertTransaction: db.prepare("insert into ledger_transactions (id, kind, org_id, request_id, memo, created_at) values (?, ?, ?, ?, ?, ?) on conflict do nothing"),
      insertEntry: db.prepare("insert into ledger_entries (transaction_id, account, amount) values (?, ?, ?)"),
      insertTwoEntries: db.prepare("insert into ledger_entries (transaction_id, account, amount) values (?, ?, ?), (?, ?, ?)"),
      credit: db.prepare("update balances set amount = amount + ? where account = ?"),
      openBalance: db.prepare("insert into balances (account, org_id, amount, held) values (?, ?, ?, 0)"),
      available: db.prepare<[string], { available: number }>("select amount - held as available from balances where account = ?"),
      takeHold: db.prepare("update balances set held = held + ? where account = ? and amount - held >= ?"),
      releaseHold: db.prepare("update balances set held = held - ? where account = ?"),
      hold: db.prepare<[string], { request_id: string; org_id: string; key_id: string; model: string; amount: number; created_at: number }>(
        "select request_id, org_id, key_id, model, amount, created_at from holds where request_id = ?",
      ),
      settled: db.prepare<[string], { held: number }>("select held from requests where request_id = ?"),
      insertHold: db.prepare("insert into holds (request_id, org_id, key_id, model, amount, created_at, instance) values (@request_id, @org_id, @key_id, @model, @amount, @created_at, @instance)"),
      deleteHold: db.prepare("delete from holds where request_id = ?"),
      insertRequest: db.prepare(
        "insert into requests (request_id, org_id, key_id, model, held, charged, prompt_tokens, completion_tokens, outcome, created_at, settled_at, day, prompt_simhash, logprobs, temperature) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      /** Releases a hold and takes its charge from the same row in one statement. */
      releaseAndDebit: db.prepare("update balances set held = held - ?, amount = amount - ? where account = ?"),
    };
  }

  grant(orgId: string, amount: number, idempotencyKey: string, memo: string): Pending<boolean> {
    return this.run(false, () => this.post(grantMovement(orgId, amount, idempotencyKey, memo)));
  }

  /** Holds credit for a request (idempotent by request id); throws InsufficientCreditError at once. */
  reserve(request: ReserveRequest, options: { lazy?: boolean } = {}): Pending<number> {
    return this.run(options.lazy === true, () => {
      const existing = this.statements.hold.get(request.requestId)?.amount ?? this.statements.settled.get(request.requestId)?.held;
      if (existing !== undefined) return existing;
      const account = accounts.credit(request.orgId);
      const amount = holdAmount(request, this.statements.available.get(account)?.available ?? 0);
      if (this.statements.takeHold.run(amount, account, amount).changes === 0) throw new InsufficientCreditError(amount, 0);
      this.statements.insertHold.run(holdRow(request, amount, Date.now()));
      this.inFlight.add(request.requestId);
      return amount;
    });
  }

  /** Ends a hold: charges its cost (at most the hold), releases the rest, records the usage. False if already settled or unknown. */
  settle(requestId: string, usage: SettleUsage): Pending<boolean> {
    const pending = this.settleInBatch(requestId, usage);
    // The last request in flight has no one to share a commit with: waiting for the end of the turn would only add latency.
    if (this.inFlight.size === 0) this.flush();
    return pending;
  }

  private settleInBatch(requestId: string, usage: SettleUsage): Pending<boolean> {
    return this.run(false, () => {
      const hold = this.statements.hold.get(requestId);
      if (!hold) return false;
      const charged = chargeOf(hold.amount, usage);
      const now = Date.now();
      this.statements.deleteHold.run(requestId);
      this.inFlight.delete(requestId);
      const r = settledRow(hold, charged, usage, now);
      this.statements.insertRequest.run(r.request_id, r.org_id, r.key_id, r.model, r.held, r.charged, r.prompt_tokens, r.completion_tokens, r.outcome, r.created_at, r.settled_at, r.day, r.prompt_simhash, r.logprobs, r.temperature);
      // The hold's release and the charge's debit are one update of the org's row; `post` then applies the rest.
      this.statements.releaseAndDebit.run(hold.amount, charged, accounts.credit(hold.org_id));
      if (charged > 0) this.post(chargeMovement(hold, charged, usage), accounts.credit(hold.org_id));
      return true;
    });
  }

  /** Commits the open write transaction now (before a statement that must not join it, and at close). */
  flush(): void {
    const waiters = this.waiters;
    this.unschedule();
    if (!waiters) return;
    try {
      this.statements.commit.run();
    } catch (error) {
      this.abort(error);
      return;
    }
    this.waiters = undefined;
    for (const waiter of waiters) waiter.resolve();
  }

  /**
   * Runs an operation in the open batch. Operations refuse (insufficient
   * credit, a used idempotency key) before they write anything, so a refusal
   * touches nothing; any other failure may have written part of an operation,
   * so the whole batch is rolled back and every operation in it fails.
   */
  private run<T>(lazy: boolean, operation: () => T): Pending<T> {
    if (!this.waiters) {
      this.statements.begin.run();
      this.waiters = [];
    }
    if (!lazy && this.scheduled !== "turn") {
      clearTimeout(this.timer);
      this.scheduled = "turn";
      setImmediate(() => this.flush());
    } else if (!this.scheduled) {
      this.scheduled = "timer";
      this.timer = setTimeout(() => this.flush(), LAZY_COMMIT_MS);
    }
    let value: T;
    try {
      value = operation();
    } catch (error) {
      if (!(error instanceof InsufficientCreditError)) this.abort(error);
      throw error;
    }
    const waiters = this.waiters!;
    const durable = new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }));
    // A caller that failed for another reason may never look at it: that is not an unhandled rejection.
    durable.catch(() => undefined);
    return { value, durable };
  }

  private unschedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.scheduled = undefined;
  }

  private abort(error: unknown): void {
    const waiters = this.waiters ?? [];
    this.waiters = undefined;
    this.unschedule();
    // The batch's holds are gone; which they were is not kept, so forget them all (the set only decides when to commit).
    this.inFlight.clear();
    if (this.db.inTransaction) this.statements.rollback.run();
    for (const waiter of waiters) waiter.reject(error);
  }

  /** Records a balanced movement and applies it to the balances, except to `applied` (an account the caller has already updated). */
  private post(movement: LedgerMovement, applied?: string): boolean {
    assertBalanced(movement);
    if (this.statements.insertTransaction.run(movement.id, movement.kind, movement.orgId, movement.requestId, movement.memo, Date.now()).changes === 0) return false;
    for (const entry of movement.entries) {
      if (entry.account === applied) continue;
      // First movement of an account: its balance row starts here (a missing row is a zero balance).
      if (this.statements.credit.run(entry.amount, entry.account).changes === 0) this.statements.openBalance.run(entry.account, entry.account.startsWith("org:") ? movement.orgId : null, entry.amount);
    }
    const [first, second] = movement.entries;
    if (movement.entries.length === 2) this.statements.insertTwoEntries.run(movement.id, first!.account, first!.amount, movement.id, second!.account, second!.amount);
    else for (const entry of movement.entries) this.statements.insertEntry.run(movement.id, entry.account, entry.amount);
    return true;
  }
}
