import type SQLite from "better-sqlite3";
import { journalLine, type JournalRecord, type LedgerJournal } from "./ledger-journal.ts";
import {
  accounts,
  checkCeiling,
  LedgerUnavailableError,
  type Pending,
  CreditCeilingError,
  grantMovement,
  holdAmount,
  InsufficientCreditError,
  holdRow,
  type ReserveOptions,
  type ReserveRequest,
  type SettleUsage,
} from "./ledger.ts";
import { LiveHolds } from "./sqlite-ledger-live.ts";
import { LedgerTables } from "./sqlite-ledger-tables.ts";
import {
  RESOLVED,
  type Waiter,
  BUSY_RETRY_MS,
  DRAIN_SETTLEMENTS,
  JOURNAL_COMMIT_BYTES,
  JOURNAL_COMMIT_MS,
  JOURNAL_COMMIT_OPS,
  LAZY_COMMIT_MS,
} from "./sqlite-ledger-batches.ts";
import { WalRestarter, withoutWaiting } from "./wal-restarter.ts";

/**
 * The ledger's writes on SQLite: prepared statements, executed at once, in one write transaction per turn of the
 * event loop (group commit). A caller knows its answer (a hold, a refusal, a settlement) synchronously and starts its
 * work while the commit is to come; it waits for `durable` only before anything leaves the process.
 *
 * With a journal (a long-running server), an operation is durable once its line is in the journal. Holds and their
 * settlements are then decided in memory (the committed balance plus this process's unwritten operations: the whole
 * truth, as this is the only server of the file and other processes only add credit), and their rows written and
 * committed in one synchronous step every JOURNAL_COMMIT_MS, every DRAIN_SETTLEMENTS settlements, and before any read;
 * a commit that finds the CLI writing tries again BUSY_RETRY_MS later. A batch that must roll back is rebuilt from the
 * journal; a process killed before its commit leaves the journal to the next `Store.open`. See docs/serve.md.
 */
export class SqliteLedgerWriter {
  private readonly statements;
  /** The waiters of the open write transaction, or undefined when none is open. */
  private waiters: Waiter[] | undefined;
  /** How the open transaction's commit is scheduled: at the end of this turn, or after LAZY_COMMIT_MS. */
  private scheduled: "turn" | "timer" | undefined;
  private timer: NodeJS.Timeout | undefined;
  /**
   * Without a journal: holds this process has taken and not yet settled; with none left, a settlement commits at once
   * (nobody to batch with).
   */
  private readonly inFlight = new Set<string>();
  private readonly tables: LedgerTables;
  /** Journal mode: this process's holds and settlements decided in memory, and what they do to the balances. */
  private readonly holds: LiveHolds;
  /** Journal mode: lines of operations not yet written (this turn's, and lazy ones), and who waits for them. */
  private lines = "";
  private lineWaiters: Waiter[] = [];
  private lazyTimer: NodeJS.Timeout | undefined;
  private turnScheduled = false;
  private sliceScheduled = false;
  /** Operations in the open batch (journal mode). */
  private batchOps = 0;
  /** Journal mode: restarts the WAL between two batches, every so many commits. */
  private readonly wal: WalRestarter;
  /** Set when the tables could not be rebuilt after a failure: every operation then fails. */
  private broken: LedgerUnavailableError | undefined;

  constructor(
    private readonly db: SQLite.Database,
    private readonly journal?: LedgerJournal,
    /** With a journal: how long a batch of the tables stays open before it commits. */
    private readonly commitMs = JOURNAL_COMMIT_MS,
  ) {
    this.tables = new LedgerTables(db);
    this.statements = this.tables.statements;
    this.holds = new LiveHolds(this.tables);
    this.wal = new WalRestarter(db);
  }

  /** The checkpointer has copied every frame of the WAL it saw (the next commit is a good moment to restart it). */
  readonly checkpointCaughtUp = () => this.wal.caughtUp();

  /**
   * False once the ledger cannot write (its tables failed and could not be rebuilt from its journal): every operation
   * then fails.
   */
  get available(): boolean {
    return this.broken === undefined;
  }

  /** Adds credit (idempotent by key); throws CreditCeilingError at once, writing nothing, past MAX_ISSUED. */
  grant(orgId: string, amount: number, idempotencyKey: string, memo: string): Pending<boolean> {
    return this.run(false, () => {
      const record: JournalRecord = { t: "grant", orgId, amount, key: idempotencyKey, memo, at: Date.now() };
      const movement = grantMovement(orgId, amount, idempotencyKey, memo);
      if (this.statements.transactionExists.get(movement.id)) return { value: false, record: undefined };
      // Grants are written to the tables at once (never in memory), so the issued account's row is current.
      checkCeiling(this.statements.balanceOf.get(accounts.issued)?.amount ?? 0, amount);
      return { value: this.apply(record), record };
    });
  }

  /**
   * Holds credit for a request (idempotent by request id, unless `fresh`: see `ReserveOptions`); throws
   * InsufficientCreditError at once.
   */
  reserve(request: ReserveRequest, options: ReserveOptions = {}): Pending<number> {
    if (this.journal)
      return this.run(options.lazy === true, () => this.holds.reserve(request, options.fresh === true), false);
    return this.run(options.lazy === true, () => {
      const existing = options.fresh
        ? undefined
        : this.statements.existing.get(request.requestId, request.requestId)?.amount;
      if (existing !== undefined) return { value: existing, record: undefined };
      const account = accounts.credit(request.orgId);
      const amount = holdAmount(request, this.statements.available.get(account)?.available ?? 0);
      if (this.statements.takeHold.run(amount, account, amount).changes === 0)
        throw new InsufficientCreditError(amount, 0);
      const row = holdRow(request, amount, Date.now());
      this.statements.insertHold.run(row);
      this.inFlight.add(request.requestId);
      return { value: amount, record: { t: "hold", ...row } };
    });
  }

  /**
   * Ends a hold: charges its cost (at most the hold), releases the rest, records the usage. False if already settled or
   * unknown.
   */
  settle(requestId: string, usage: SettleUsage): Pending<boolean> {
    const record: JournalRecord = { t: "settle", requestId, usage, at: Date.now() };
    const live = this.holds.get(requestId);
    if (live) {
      // A hold this process took: decided in memory, durable in the journal; its rows are written by the next commit.
      return this.run(
        false,
        () => {
          if (!this.holds.settle(live, usage, record.at)) return { value: false, record: undefined };
          // Written and committed in slices, so a commit never has thousands to write at once.
          if (this.holds.settledUnwritten >= DRAIN_SETTLEMENTS && !this.sliceScheduled) {
            this.sliceScheduled = true;
            setImmediate(this.writeSlice);
          }
          return { value: true, record };
        },
        false,
      );
    }
    const pending = this.run(false, () => {
      const value = this.apply(record);
      return { value, record: value ? record : undefined };
    });
    // The last request in flight has no one to share a commit with: waiting for the end of the turn would only add
    // latency.
    if (!this.journal && this.inFlight.size === 0) this.flush();
    return pending;
  }

  /**
   * Journal mode: writes the rows of the operations decided in memory so far
   * (before anything reads the tables, and before the batch commits).
   */
  drain(): void {
    if (!this.holds.pending) return;
    this.begin();
    try {
      this.holds.write();
    } catch (error) {
      this.abort(error);
    }
  }

  /**
   * Applies one operation whose decisions are made (the live path after its checks, or a replay of the journal): false
   * when it had already happened.
   */
  apply(record: JournalRecord): boolean {
    const applied = this.tables.apply(record);
    if (record.t === "settle") this.inFlight.delete(record.requestId);
    return applied;
  }

  private readonly writeSlice = () => {
    this.sliceScheduled = false;
    this.flush(false);
  };

  /**
   * Commits the open write transaction now (before a statement that must not
   * join it, before a read, at close), with the rows of what was decided in
   * memory. `wait = false` (the batch's timer, a slice under load): if another
   * process holds the write lock (a CLI crediting an org), it does not wait
   * for it but tries again a few milliseconds later; the journal keeps what
   * was decided meanwhile durable.
   */
  flush(wait = true): void {
    this.writeLines();
    if (!wait && !this.waiters && this.holds.pending && !this.tryBegin()) {
      this.unschedule();
      this.scheduled = "timer";
      this.timer = setTimeout(this.flushSoon, BUSY_RETRY_MS);
      return;
    }
    this.drain();
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
    this.batchOps = 0;
    for (const waiter of waiters) waiter.resolve();
    if (!this.journal) return;
    // Everything in the journal is in the tables now. (Killed before this: the replay skips what is committed.)
    try {
      this.journal.reset();
    } catch {
      // The journal keeps its committed lines (a replay skips them) and grows until a later reset succeeds.
    }
    this.wal.committed();
  }

  private readonly flushSoon = () => this.flush(false);

  /**
   * Opens the batch's write transaction if none is open (waiting, up to busy_timeout, for another writer to finish).
   */
  private begin(): void {
    if (this.waiters) return;
    this.statements.begin.run();
    this.waiters = [];
  }

  /** Opens the batch's write transaction without waiting: false if another process holds the write lock. */
  private tryBegin(): boolean {
    try {
      withoutWaiting(this.db, () => this.begin());
      return true;
    } catch (error) {
      if ((error as { code?: string }).code === "SQLITE_BUSY") return false;
      throw error;
    }
  }

  /**
   * Runs an operation in the open batch. Operations refuse (insufficient
   * credit, a used idempotency key) before they write anything, so a refusal
   * touches nothing; any other failure may have written part of an operation,
   * so the batch is rolled back: without a journal every operation in it fails;
   * with one, the journal's operations are applied again and only this one fails.
   */
  private run<T>(
    lazy: boolean,
    operation: () => { value: T; record: JournalRecord | undefined },
    onTables = true,
  ): Pending<T> {
    // An operation on the tables runs in the batch's write transaction, after every operation decided before it (a
    // failure there rebuilds the batch). One decided in memory (journal mode) needs no transaction: it reads the
    // committed balance, and its rows are written by the next commit.
    if (onTables) {
      this.drain();
      this.holds.forgetCommitted();
    }
    if (this.broken) throw this.broken;
    if (onTables || !this.journal) this.begin();
    if (this.journal) {
      if (!this.scheduled) {
        this.scheduled = "timer";
        this.timer = setTimeout(this.flushSoon, this.commitMs);
      }
    } else if (!lazy && this.scheduled !== "turn") {
      clearTimeout(this.timer);
      this.scheduled = "turn";
      setImmediate(() => this.flush());
    } else if (!this.scheduled) {
      this.scheduled = "timer";
      this.timer = setTimeout(() => this.flush(), LAZY_COMMIT_MS);
    }
    let result: { value: T; record: JournalRecord | undefined };
    try {
      result = operation();
    } catch (error) {
      // A refusal writes nothing: the batch stays as it was.
      if (!(error instanceof InsufficientCreditError || error instanceof CreditCeilingError)) this.abort(error);
      throw error;
    }
    if (this.journal) return { value: result.value, durable: this.journalize(result.record, lazy) };
    const waiters = this.waiters!;
    const durable = new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }));
    // A caller that failed for another reason may never look at it: that is not an unhandled rejection.
    durable.catch(() => undefined);
    return { value: result.value, durable };
  }

  /**
   * Journal mode: makes an applied operation durable. Its line is written
   * with the others of this turn of the event loop (one write for all), at
   * once when no other request is in flight (nobody to share the write with),
   * or, for a lazy operation, with the next write or within LAZY_COMMIT_MS.
   */
  private journalize(record: JournalRecord | undefined, lazy: boolean): Promise<void> {
    if (record) {
      this.lines += journalLine(record);
      this.batchOps++;
    }
    if (this.lines === "") return RESOLVED;
    const durable = new Promise<void>((resolve, reject) => this.lineWaiters.push({ resolve, reject }));
    durable.catch(() => undefined);
    if (lazy) this.lazyTimer ??= setTimeout(this.writeLinesSoon, LAZY_COMMIT_MS);
    else if (this.holds.unsettled - (record?.t === "hold" ? 1 : 0) <= 0) this.writeLines();
    else if (!this.turnScheduled) {
      this.turnScheduled = true;
      setImmediate(this.writeLinesSoon);
    }
    if (this.batchOps >= JOURNAL_COMMIT_OPS || this.journal!.size >= JOURNAL_COMMIT_BYTES) this.flush(false);
    return durable;
  }

  private readonly writeLinesSoon = () => this.writeLines();

  /** Writes the pending lines to the journal (one write): their operations are durable, or, if it fails, undone. */
  private writeLines(): void {
    clearTimeout(this.lazyTimer);
    this.lazyTimer = undefined;
    this.turnScheduled = false;
    if (!this.journal || this.lines === "") return;
    const lines = this.lines;
    const waiters = this.lineWaiters;
    this.lines = "";
    this.lineWaiters = [];
    try {
      this.journal.append(lines);
    } catch (error) {
      // Not in the journal: these operations did not happen (the batch is rebuilt without them).
      for (const waiter of waiters) waiter.reject(error);
      this.abort(error);
      return;
    }
    for (const waiter of waiters) waiter.resolve();
  }

  private unschedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.scheduled = undefined;
  }

  private abort(error: unknown): void {
    const waiters = this.waiters ?? [];
    this.waiters = undefined;
    this.batchOps = 0;
    this.unschedule();
    // The batch's holds are gone; which they were is not kept, so forget them all (the set only decides when to
    // commit).
    this.inFlight.clear();
    // What was decided in memory is in the journal (the rebuild writes it to the tables) or was never durable; holds
    // still open settle on the tables from now on.
    this.holds.clear();
    // Operations not yet in the journal go with the batch.
    clearTimeout(this.lazyTimer);
    this.lazyTimer = undefined;
    this.lines = "";
    for (const waiter of this.lineWaiters.splice(0)) waiter.reject(error);
    if (this.db.inTransaction) this.statements.rollback.run();
    for (const waiter of waiters) waiter.reject(error);
    if (this.journal) this.rebuild(error);
  }

  /** Journal mode, after a rollback: applies the journal's (durable) operations again, and commits them. */
  private rebuild(cause: unknown): void {
    try {
      const records = this.journal!.records();
      this.db
        .transaction(() => {
          for (const record of records) this.apply(record);
        })
        .immediate();
      this.journal!.reset();
    } catch (error) {
      if (this.db.inTransaction) this.statements.rollback.run();
      this.broken = new LedgerUnavailableError(error ?? cause);
    }
  }

  /** Commits what is open and removes the journal (at close). */
  close(): void {
    this.flush();
    if (this.journal && !this.broken) this.journal.close();
  }
}
