import type SQLite from "better-sqlite3";
import { AvocadoError } from "../../core/errors.ts";
import { journalLine, type JournalRecord, type LedgerJournal } from "./ledger-journal.ts";
import { accounts, assertBalanced, chargeMovement, chargeOf, checkCeiling, CreditCeilingError, grantMovement, holdAmount, InsufficientCreditError, holdRow, settledRow, type LedgerMovement, type ReserveOptions, type ReserveRequest, type SettleUsage } from "./ledger.ts";

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

/** With a journal: how long operations decided in memory wait for their rows' commit, and how many operations (or journal bytes) a batch takes at most. */
const JOURNAL_COMMIT_MS = 20;
const JOURNAL_COMMIT_OPS = 2_000;
const JOURNAL_COMMIT_BYTES = 4 << 20;

/**
 * Journal mode: every so many commits, the ledger restarts the WAL between two
 * batches. The checkpointer thread copies the WAL into the database but can
 * rarely reset it: that needs a moment when it has copied every frame and no
 * transaction is open, and a server under load commits dozens of times a
 * second. Without it the WAL grew without bound (8 MB a second under load),
 * and with it every page lookup. The restart waits
 * for the checkpointer to have just caught up (then it copies one batch's
 * frames, not a fraction of a second's), but not beyond twice as many commits.
 */
const WAL_RESTART_COMMITS = 250;

/**
 * Journal mode: this many settlements decided in memory are written and committed at once (a slice), so a commit never writes thousands.
 * 256 rather than 64: 6–7 % less CPU per request under load (fewer commits, each rewriting the same hot pages), p99 no worse.
 */
const DRAIN_SETTLEMENTS = 256;

/** Journal mode: how soon a commit that found another process writing tries again. */
const BUSY_RETRY_MS = 5;

const RESOLVED = Promise.resolve();

/** Journal mode: a hold of this process, until its settlement's rows are written. */
interface LiveHold {
  row: ReturnType<typeof holdRow>;
  /** Whether its `holds` row is in the tables (a batch went out while it ran). */
  written: boolean;
  settlement: { usage: SettleUsage; charged: number; at: number } | undefined;
}

/** The ledger cannot write (its tables failed to commit and could not be rebuilt from its journal); the journal is applied by the next process. */
export class LedgerUnavailableError extends AvocadoError {
  constructor(cause: unknown) {
    super("ledger_unavailable", `the credit ledger cannot write: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

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
 *
 * With a journal (a long-running server), an operation is durable once its
 * line is in the journal: one `write` per turn instead of a commit. A hold
 * and its settlement are then decided in memory, with no transaction open:
 * the credit available is the committed balance plus what this process's
 * unwritten operations do to it. That is the whole truth because this is the
 * only server of the file (`Store.open` refuses a second one) and other
 * processes (the CLI) only add credit and change keys. The rows are written
 * and committed together (`drain` + commit, in one synchronous step: every
 * JOURNAL_COMMIT_MS, every DRAIN_SETTLEMENTS settlements, before any read):
 * a hold settled before that never gets a `holds` row, and each balance is
 * updated once per commit. The write lock is held only for that step, so the
 * CLI can write between two commits; a commit that finds the CLI writing does
 * not wait but tries again BUSY_RETRY_MS later. After each commit the journal
 * is emptied. If a batch must be rolled back (an operation failed halfway, a
 * commit failed), the journal's operations are applied again, so what was
 * durable stays so; a process killed before its commit leaves the journal to
 * the next one (`Store.open` replays it).
 */
export class SqliteLedger {
  private readonly statements;
  /** The waiters of the open write transaction, or undefined when none is open. */
  private waiters: Waiter[] | undefined;
  /** How the open transaction's commit is scheduled: at the end of this turn, or after LAZY_COMMIT_MS. */
  private scheduled: "turn" | "timer" | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Without a journal: holds this process has taken and not yet settled; with none left, a settlement commits at once (nobody to batch with). */
  private readonly inFlight = new Set<string>();
  /**
   * Journal mode: this process's holds, decided in memory and journaled; their
   * rows reach the tables when the batch is written (`drain`). A hold stays
   * here until its settlement is written, so that settlement is decided in
   * memory too, whichever batch the hold's own row went out with.
   */
  private readonly live = new Map<string, LiveHold>();
  /** Journal mode: holds in `live` not settled yet (with none left, a settlement's line is written at once: nobody to share the write with). */
  private unsettled = 0;
  /** Journal mode: settlements in `live` whose rows are not written yet. */
  private settledUnwritten = 0;
  /** Journal mode: what the operations in `live` not yet written do to each balance (amount and held), applied with them. */
  private readonly overlay = new Map<string, { orgId: string | null; amount: number; held: number }>();
  /**
   * Journal mode: the committed credit available per account, as read since
   * this process last wrote its rows (its own operations since are in `overlay`).
   * Other processes only add credit (grants), so a value read before one of
   * theirs is too low, never too high: it decides a hold only when it covers it.
   */
  private readonly committed = new Map<string, number>();
  /** Journal mode: lines of operations not yet written (this turn's, and lazy ones), and who waits for them. */
  private lines = "";
  private lineWaiters: Waiter[] = [];
  private lazyTimer: NodeJS.Timeout | undefined;
  private turnScheduled = false;
  private sliceScheduled = false;
  /** Operations in the open batch (journal mode). */
  private batchOps = 0;
  /** Commits since the WAL was last restarted (journal mode). */
  private commits = 0;
  /** Whether the checkpointer has caught up since the last commit (journal mode). */
  private caughtUp = false;
  /** Set when the tables could not be rebuilt after a failure: every operation then fails. */
  private broken: LedgerUnavailableError | undefined;

  constructor(
    private readonly db: SQLite.Database,
    private readonly journal?: LedgerJournal,
    /** With a journal: how long a batch of the tables stays open before it commits. */
    private readonly commitMs = JOURNAL_COMMIT_MS,
  ) {
    this.statements = {
      begin: db.prepare("begin immediate"),
      commit: db.prepare("commit"),
      rollback: db.prepare("rollback"),
      insertTransaction: db.prepare("insert into ledger_transactions (id, kind, org_id, request_id, memo, created_at) values (?, ?, ?, ?, ?, ?) on conflict do nothing"),
      insertEntry: db.prepare("insert into ledger_entries (transaction_id, account, amount) values (?, ?, ?)"),
      insertTwoEntries: db.prepare("insert into ledger_entries (transaction_id, account, amount) values (?, ?, ?), (?, ?, ?)"),
      credit: db.prepare("update balances set amount = amount + ? where account = ?"),
      openBalance: db.prepare("insert into balances (account, org_id, amount, held) values (?, ?, ?, 0)"),
      shift: db.prepare("update balances set amount = amount + ?, held = held + ? where account = ?"),
      openShifted: db.prepare("insert into balances (account, org_id, amount, held) values (?, ?, ?, ?)"),
      balanceOf: db.prepare<[string], { amount: number }>("select amount from balances where account = ?"),
      transactionExists: db.prepare<[string], { one: number }>("select 1 as one from ledger_transactions where id = ?"),
      available: db.prepare<[string], { available: number }>("select amount - held as available from balances where account = ?"),
      takeHold: db.prepare("update balances set held = held + ? where account = ? and amount - held >= ?"),
      /** A hold decided before (replayed from the journal): taken as it was. */
      retakeHold: db.prepare("update balances set held = held + ? where account = ?"),
      hold: db.prepare<[string], { request_id: string; org_id: string; key_id: string; model: string; amount: number; created_at: number }>(
        "select request_id, org_id, key_id, model, amount, created_at from holds where request_id = ?",
      ),
      /** A request's hold, open or settled, in one statement. */
      existing: db.prepare<[string, string], { amount: number }>("select amount from holds where request_id = ? union all select held from requests where request_id = ?"),
      insertHold: db.prepare("insert into holds (request_id, org_id, key_id, model, amount, created_at, instance) values (@request_id, @org_id, @key_id, @model, @amount, @created_at, @instance)"),
      deleteHold: db.prepare("delete from holds where request_id = ?"),
      insertRequest: db.prepare(
        "insert into requests (request_id, org_id, key_id, model, held, charged, prompt_tokens, completion_tokens, outcome, created_at, settled_at, day, prompt_simhash, logprobs, temperature) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      /** Releases a hold and takes its charge from the same row in one statement. */
      releaseAndDebit: db.prepare("update balances set held = held - ?, amount = amount - ? where account = ?"),
    };
  }

  /** False once the ledger cannot write (its tables failed and could not be rebuilt from its journal): every operation then fails. */
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

  /** Holds credit for a request (idempotent by request id, unless `fresh`: see `ReserveOptions`); throws InsufficientCreditError at once. */
  reserve(request: ReserveRequest, options: ReserveOptions = {}): Pending<number> {
    if (this.journal) return this.run(options.lazy === true, () => this.reserveLive(request, options.fresh === true), false);
    return this.run(options.lazy === true, () => {
      const existing = options.fresh ? undefined : this.statements.existing.get(request.requestId, request.requestId)?.amount;
      if (existing !== undefined) return { value: existing, record: undefined };
      const account = accounts.credit(request.orgId);
      const amount = holdAmount(request, this.statements.available.get(account)?.available ?? 0);
      if (this.statements.takeHold.run(amount, account, amount).changes === 0) throw new InsufficientCreditError(amount, 0);
      const row = holdRow(request, amount, Date.now());
      this.statements.insertHold.run(row);
      this.inFlight.add(request.requestId);
      return { value: amount, record: { t: "hold", ...row } };
    });
  }

  /** Journal mode: a hold decided on the committed balance plus what this process's unwritten operations do to it; its row is written by the next commit. */
  private reserveLive(request: ReserveRequest, fresh: boolean): { value: number; record: JournalRecord | undefined } {
    const live = this.live.get(request.requestId);
    if (live) return { value: live.row.amount, record: undefined };
    // A read of the tables (a WAL read transaction) that a fresh id cannot need.
    const existing = fresh ? undefined : this.statements.existing.get(request.requestId, request.requestId)?.amount;
    if (existing !== undefined) return { value: existing, record: undefined };
    const account = accounts.credit(request.orgId);
    const pending = this.overlay.get(account);
    const unwritten = pending ? pending.amount - pending.held : 0;
    // A value read earlier may miss credit granted since (never the other way): it is used only when it covers the whole hold.
    let committed = this.committed.get(account);
    if (committed === undefined || committed + unwritten < request.amount) {
      committed = this.statements.available.get(account)?.available ?? 0;
      this.committed.set(account, committed);
    }
    const amount = holdAmount(request, committed + unwritten);
    const row = holdRow(request, amount, Date.now());
    this.live.set(request.requestId, { row, written: false, settlement: undefined });
    this.unsettled++;
    this.shift(account, request.orgId, 0, amount);
    // Field by field, in the row's order (the same journal line as a spread, without the copy).
    return { value: amount, record: { t: "hold", request_id: row.request_id, org_id: row.org_id, key_id: row.key_id, model: row.model, amount: row.amount, created_at: row.created_at, instance: row.instance } };
  }

  /** Ends a hold: charges its cost (at most the hold), releases the rest, records the usage. False if already settled or unknown. */
  settle(requestId: string, usage: SettleUsage): Pending<boolean> {
    const record: JournalRecord = { t: "settle", requestId, usage, at: Date.now() };
    const live = this.live.get(requestId);
    if (live) {
      // A hold this process took: decided in memory, durable in the journal; its rows are written by the next commit.
      return this.run(
        false,
        () => {
          if (live.settlement) return { value: false, record: undefined };
          const charged = chargeOf(live.row.amount, usage);
          live.settlement = { usage, charged, at: record.at };
          this.unsettled--;
          this.settledUnwritten++;
          this.shift(accounts.credit(live.row.org_id), live.row.org_id, -charged, -live.row.amount);
          if (charged > 0) this.shift(accounts.revenue, null, charged, 0);
          // Written and committed in slices, so a commit never has thousands to write at once.
          if (this.settledUnwritten >= DRAIN_SETTLEMENTS && !this.sliceScheduled) {
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
    // The last request in flight has no one to share a commit with: waiting for the end of the turn would only add latency.
    if (!this.journal && this.inFlight.size === 0) this.flush();
    return pending;
  }

  /** Journal mode: what an unwritten operation does to a balance (written by `drain`, before the next commit). */
  private shift(account: string, orgId: string | null, amount: number, held: number): void {
    const delta = this.overlay.get(account);
    if (delta) {
      delta.amount += amount;
      delta.held += held;
    } else this.overlay.set(account, { orgId, amount, held });
  }

  /**
   * Journal mode: writes the rows of the operations decided in memory so far
   * (before anything reads the tables, and before the batch commits). A hold
   * settled within the batch never gets a `holds` row, and each balance is
   * updated once for all of them.
   */
  drain(): void {
    if (this.overlay.size === 0) return;
    this.begin();
    try {
      for (const [requestId, live] of this.live) {
        const settlement = live.settlement;
        if (!settlement) {
          if (!live.written) {
            this.statements.insertHold.run(live.row);
            live.written = true;
          }
          continue;
        }
        if (live.written && this.statements.deleteHold.run(requestId).changes === 0) throw new Error(`the hold of ${requestId} was settled by another process`);
        this.insertSettled(settledRow(live.row, settlement.charged, settlement.usage, settlement.at));
        if (settlement.charged > 0) {
          const movement = chargeMovement(live.row, settlement.charged, settlement.usage);
          if (!this.record(movement, settlement.at)) throw new Error(`the charge of ${requestId} was already recorded`);
        }
        this.live.delete(requestId);
      }
      for (const [account, delta] of this.overlay) {
        if (delta.amount === 0 && delta.held === 0) continue;
        if (this.statements.shift.run(delta.amount, delta.held, account).changes === 0) this.statements.openShifted.run(account, delta.orgId, delta.amount, delta.held);
      }
      this.overlay.clear();
      this.committed.clear();
      this.settledUnwritten = 0;
    } catch (error) {
      this.abort(error);
    }
  }

  private readonly writeSlice = () => {
    this.sliceScheduled = false;
    this.flush(false);
  };

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
        this.inFlight.delete(record.requestId);
        this.insertSettled(settledRow(hold, charged, record.usage, record.at));
        // The hold's release and the charge's debit are one update of the org's row; `post` then applies the rest.
        this.statements.releaseAndDebit.run(hold.amount, charged, accounts.credit(hold.org_id));
        if (charged > 0) this.post(chargeMovement(hold, charged, record.usage), accounts.credit(hold.org_id), record.at);
        return true;
      }
    }
  }

  /** A settled request's `requests` row (its primary key makes a second settlement fail). */
  private insertSettled(r: ReturnType<typeof settledRow>): void {
    this.statements.insertRequest.run(r.request_id, r.org_id, r.key_id, r.model, r.held, r.charged, r.prompt_tokens, r.completion_tokens, r.outcome, r.created_at, r.settled_at, r.day, r.prompt_simhash, r.logprobs, r.temperature);
  }

  /** Applies a dead process's journal in one transaction (already applied operations are skipped); how many took effect. */
  replay(records: JournalRecord[]): number {
    this.flush();
    return this.db.transaction(() => records.filter((record) => this.apply(record)).length).immediate();
  }

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
    if (!wait && !this.waiters && this.overlay.size > 0 && !this.tryBegin()) {
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
    const caughtUp = this.caughtUp;
    this.caughtUp = false;
    if (++this.commits >= (caughtUp ? WAL_RESTART_COMMITS : 2 * WAL_RESTART_COMMITS)) this.restartWal();
  }

  private readonly flushSoon = () => this.flush(false);

  /** Opens the batch's write transaction if none is open (waiting, up to busy_timeout, for another writer to finish). */
  private begin(): void {
    if (this.waiters) return;
    this.statements.begin.run();
    this.waiters = [];
  }

  /** Opens the batch's write transaction without waiting: false if another process holds the write lock. */
  private tryBegin(): boolean {
    try {
      this.withoutWaiting(() => this.begin());
      return true;
    } catch (error) {
      if ((error as { code?: string }).code === "SQLITE_BUSY") return false;
      throw error;
    }
  }

  /** Runs statements that fail at once, rather than wait, when another connection holds a lock they need. */
  private withoutWaiting<T>(statements: () => T): T {
    const timeout = this.db.pragma("busy_timeout", { simple: true }) as number;
    this.db.pragma("busy_timeout = 0");
    try {
      return statements();
    } finally {
      this.db.pragma(`busy_timeout = ${timeout}`);
    }
  }

  /** The checkpointer has copied every frame of the WAL it saw (the next commit is a good moment to restart it). */
  readonly checkpointCaughtUp = () => {
    this.caughtUp = true;
  };

  /**
   * Journal mode, between two batches: checkpoints what the checkpointer has
   * not yet copied (a fraction of a second's worth) and restarts the WAL, so the
   * next batch writes it from the start. It does not wait: if a reader or the
   * checkpointer is busy, it tries again a few commits later.
   */
  private restartWal(): void {
    try {
      const [result] = this.withoutWaiting(() => this.db.pragma("wal_checkpoint(RESTART)") as { busy: number }[]);
      // Busy (a reader, or the checkpointer itself): tried again some commits later.
      this.commits = result?.busy === 0 ? 0 : this.commits - 10;
    } catch {
      this.commits -= 10;
    }
  }

  /**
   * Runs an operation in the open batch. Operations refuse (insufficient
   * credit, a used idempotency key) before they write anything, so a refusal
   * touches nothing; any other failure may have written part of an operation,
   * so the batch is rolled back: without a journal every operation in it fails;
   * with one, the journal's operations are applied again and only this one fails.
   */
  private run<T>(lazy: boolean, operation: () => { value: T; record: JournalRecord | undefined }, onTables = true): Pending<T> {
    // An operation on the tables runs in the batch's write transaction, after every operation decided before it (a failure there rebuilds the batch).
    // One decided in memory (journal mode) needs no transaction: it reads the committed balance, and its rows are written by the next commit.
    if (onTables) {
      this.drain();
      this.committed.clear();
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
    else if (this.unsettled - (record?.t === "hold" ? 1 : 0) <= 0) this.writeLines();
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
    // The batch's holds are gone; which they were is not kept, so forget them all (the set only decides when to commit).
    this.inFlight.clear();
    // What was decided in memory is in the journal (the rebuild writes it to the tables) or was never durable; holds still open settle on the tables from now on.
    this.live.clear();
    this.overlay.clear();
    this.committed.clear();
    this.unsettled = 0;
    this.settledUnwritten = 0;
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
      this.db.transaction(() => {
        for (const record of records) this.apply(record);
      }).immediate();
      this.journal!.reset();
    } catch (error) {
      if (this.db.inTransaction) this.statements.rollback.run();
      this.broken = new LedgerUnavailableError(error ?? cause);
    }
  }

  /**
   * Runs read queries on one state of the tables: this process's decided rows
   * written first, then every query in one transaction (a savepoint inside an
   * open batch), synchronously, so no commit, of this process or another,
   * lands between them.
   */
  read<T>(reads: (all: (query: { sql: string; parameters: readonly unknown[] }) => unknown[]) => T): T {
    this.drain();
    const all = (query: { sql: string; parameters: readonly unknown[] }) => this.db.prepare(query.sql).all(...query.parameters);
    return this.db.transaction(() => reads(all))();
  }

  /** Commits what is open and removes the journal (at close). */
  close(): void {
    this.flush();
    if (this.journal && !this.broken) this.journal.close();
  }

  /** Records a balanced movement and applies it to the balances, except to `applied` (an account the caller has already updated). */
  private post(movement: LedgerMovement, applied: string | undefined, at: number): boolean {
    if (!this.record(movement, at)) return false;
    for (const entry of movement.entries) {
      if (entry.account === applied) continue;
      // First movement of an account: its balance row starts here (a missing row is a zero balance).
      if (this.statements.credit.run(entry.amount, entry.account).changes === 0) this.statements.openBalance.run(entry.account, entry.account.startsWith("org:") ? movement.orgId : null, entry.amount);
    }
    return true;
  }

  /** Records a balanced movement's transaction and entries (not its balances); false if its id was already recorded. */
  private record(movement: LedgerMovement, at: number): boolean {
    assertBalanced(movement);
    if (this.statements.insertTransaction.run(movement.id, movement.kind, movement.orgId, movement.requestId, movement.memo, at).changes === 0) return false;
    const [first, second] = movement.entries;
    if (movement.entries.length === 2) this.statements.insertTwoEntries.run(movement.id, first!.account, first!.amount, movement.id, second!.account, second!.amount);
    else for (const entry of movement.entries) this.statements.insertEntry.run(movement.id, entry.account, entry.amount);
    return true;
  }
}
