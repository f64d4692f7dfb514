import type { JournalRecord } from "./ledger-journal.ts";
import {
  accounts,
  chargeMovement,
  chargeOf,
  holdAmount,
  holdRow,
  settledRow,
  type ReserveRequest,
  type SettleUsage,
} from "./ledger.ts";
import type { LedgerTables } from "./sqlite-ledger-tables.ts";

/** a hold of this process, until its settlement's rows are written. */
export interface LiveHold {
  row: ReturnType<typeof holdRow>;
  /** Whether its `holds` row is in the tables (a batch went out while it ran). */
  written: boolean;
  settlement: { usage: SettleUsage; charged: number; at: number } | undefined;
}

/**
 * Journal mode: the holds and settlements of this process, decided in memory
 * (the committed balance plus what this process's unwritten operations do to
 * it) and journaled by `SqliteLedgerWriter`; their rows reach the tables in one step
 * (`write`) when a batch commits. A hold settled before that never gets a
 * `holds` row, and each balance is updated once for all of them.
 */
export class LiveHolds {
  /**
   * This process's holds, decided in memory and journaled; their
   * rows reach the tables when the batch is written (`drain`). A hold stays
   * here until its settlement is written, so that settlement is decided in
   * memory too, whichever batch the hold's own row went out with.
   */
  private readonly live = new Map<string, LiveHold>();
  /**
   * holds in `live` not settled yet (with none left, a settlement's line is written at once: nobody to share the write
   * with).
   */
  unsettled = 0;
  /** settlements in `live` whose rows are not written yet. */
  settledUnwritten = 0;
  /** what the operations in `live` not yet written do to each balance (amount and held), applied with them. */
  private readonly overlay = new Map<string, { orgId: string | null; amount: number; held: number }>();
  /**
   * The committed credit available per account, as read since
   * this process last wrote its rows (its own operations since are in `overlay`).
   * Other processes only add credit (grants), so a value read before one of
   * theirs is too low, never too high: it decides a hold only when it covers it.
   */
  private readonly committed = new Map<string, number>();

  constructor(private readonly tables: LedgerTables) {}

  /** Whether operations decided in memory wait for their rows. */
  get pending(): boolean {
    return this.overlay.size > 0;
  }

  get(requestId: string): LiveHold | undefined {
    return this.live.get(requestId);
  }

  /**
   * a hold decided on the committed balance plus what this process's unwritten operations do to it; its row is written
   * by the next commit.
   */
  reserve(request: ReserveRequest, fresh: boolean): { value: number; record: JournalRecord | undefined } {
    const live = this.live.get(request.requestId);
    if (live) return { value: live.row.amount, record: undefined };
    // A read of the tables (a WAL read transaction) that a fresh id cannot need.
    const existing = fresh
      ? undefined
      : this.tables.statements.existing.get(request.requestId, request.requestId)?.amount;
    if (existing !== undefined) return { value: existing, record: undefined };
    const account = accounts.credit(request.orgId);
    const pending = this.overlay.get(account);
    const unwritten = pending ? pending.amount - pending.held : 0;
    // A value read earlier may miss credit granted since (never the other way): it is used only when it covers the
    // whole hold.
    let committed = this.committed.get(account);
    if (committed === undefined || committed + unwritten < request.amount) {
      committed = this.tables.statements.available.get(account)?.available ?? 0;
      this.committed.set(account, committed);
    }
    const amount = holdAmount(request, committed + unwritten);
    const row = holdRow(request, amount, Date.now());
    this.live.set(request.requestId, { row, written: false, settlement: undefined });
    this.unsettled++;
    this.shift(account, request.orgId, 0, amount);
    // Field by field, in the row's order (the same journal line as a spread, without the copy).
    return {
      value: amount,
      record: {
        t: "hold",
        request_id: row.request_id,
        org_id: row.org_id,
        key_id: row.key_id,
        model: row.model,
        amount: row.amount,
        created_at: row.created_at,
        instance: row.instance,
      },
    };
  }

  /**
   * Decides a hold's settlement: its charge (at most the hold) and released credit. False if it was settled already.
   */
  settle(live: LiveHold, usage: SettleUsage, at: number): boolean {
    if (live.settlement) return false;
    const charged = chargeOf(live.row.amount, usage);
    live.settlement = { usage, charged, at };
    this.unsettled--;
    this.settledUnwritten++;
    this.shift(accounts.credit(live.row.org_id), live.row.org_id, -charged, -live.row.amount);
    if (charged > 0) this.shift(accounts.revenue, null, charged, 0);
    return true;
  }

  /** Balances read before a write of the tables are read again after it. */
  forgetCommitted(): void {
    this.committed.clear();
  }

  /**
   * Writes the rows of what was decided in memory (inside the caller's open transaction; a throw leaves the batch to
   * roll back).
   */
  write(): void {
    for (const [requestId, live] of this.live) {
      const settlement = live.settlement;
      if (!settlement) {
        if (!live.written) {
          this.tables.statements.insertHold.run(live.row);
          live.written = true;
        }
        continue;
      }
      if (live.written && this.tables.statements.deleteHold.run(requestId).changes === 0)
        throw new Error(`the hold of ${requestId} was settled by another process`);
      this.tables.insertSettled(settledRow(live.row, settlement.charged, settlement.usage, settlement.at));
      if (settlement.charged > 0) {
        const movement = chargeMovement(live.row, settlement.charged, settlement.usage);
        if (!this.tables.record(movement, settlement.at))
          throw new Error(`the charge of ${requestId} was already recorded`);
      }
      this.live.delete(requestId);
    }
    for (const [account, delta] of this.overlay) {
      if (delta.amount === 0 && delta.held === 0) continue;
      if (this.tables.statements.shift.run(delta.amount, delta.held, account).changes === 0)
        this.tables.statements.openShifted.run(account, delta.orgId, delta.amount, delta.held);
    }
    this.overlay.clear();
    this.committed.clear();
    this.settledUnwritten = 0;
  }

  /** Forgets everything decided in memory (after a rollback: the journal rebuilds what was durable). */
  clear(): void {
    this.live.clear();
    this.overlay.clear();
    this.committed.clear();
    this.unsettled = 0;
    this.settledUnwritten = 0;
  }

  /** what an unwritten operation does to a balance (written by `drain`, before the next commit). */
  private shift(account: string, orgId: string | null, amount: number, held: number): void {
    const delta = this.overlay.get(account);
    if (delta) {
      delta.amount += amount;
      delta.held += held;
    } else this.overlay.set(account, { orgId, amount, held });
  }
}
