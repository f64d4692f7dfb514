import type SQLite from "better-sqlite3";
import type { CompiledQuery } from "kysely";
import { errorMessage, FileError, InputError } from "../../core/errors.ts";
import type { WalCheckpointer } from "./checkpointer.ts";
import type { Db } from "./database.ts";
import {
  deadJournals,
  LedgerJournal,
  otherServers,
  parseJournal,
  readDeadJournal,
  removeDeadJournal,
} from "./ledger-journal.ts";
import { voidChargeIn } from "./ledger-sql.ts";
import type { Hold, Ledger, ReserveOptions, ReserveRequest, SettleUsage, SnapshotRows } from "./ledger.ts";
import { LedgerTables } from "./sqlite-ledger-tables.ts";
import { SqliteLedgerWriter } from "./sqlite-ledger-writer.ts";

export interface SqliteLedgerOptions {
  /** A long-running server: operations durable in a journal, tables committed in batches (see `SqliteLedgerWriter`). */
  journal?: boolean | { commitMs: number };
}

/**
 * The ledger on a SQLite file: its operations are `SqliteLedgerWriter`'s
 * prepared statements, executed at once and group-committed. Reads drain the
 * rows decided in memory first, and other writes commit the open batch first,
 * so neither sees, joins or rolls back with a batch.
 */
export class SqliteLedger implements Ledger {
  private constructor(
    private readonly db: Db,
    private readonly sqlite: SQLite.Database,
    readonly writer: SqliteLedgerWriter,
    private readonly checkpointer: WalCheckpointer | undefined,
  ) {}

  /**
   * Applies the journals of processes that died before committing their last
   * batch, then opens the ledger. `path` is the file ("" or ":memory:" for
   * none: no journal then).
   */
  static open(
    db: Db,
    sqlite: SQLite.Database,
    path: string,
    checkpointer: WalCheckpointer | undefined,
    options: SqliteLedgerOptions = {},
  ): SqliteLedger {
    const file = path !== "" && path !== ":memory:";
    const dead = file ? deadJournals(path) : [];
    const tables = dead.length > 0 ? new LedgerTables(sqlite) : undefined;
    for (const journal of dead) {
      const text = readDeadJournal(journal);
      if (text === undefined) continue;
      try {
        // In one transaction; what was already applied (committed before the process died) is skipped.
        const records = parseJournal(text);
        sqlite.transaction(() => records.forEach((record) => tables!.apply(record))).immediate();
      } catch (error) {
        throw new FileError(
          journal,
          `the ledger journal of a stopped server cannot be applied (${errorMessage(error)}); it is kept, and nothing in it is lost`,
          { cause: error },
        );
      }
      removeDeadJournal(journal);
    }
    let journal: LedgerJournal | undefined;
    try {
      journal = file && options.journal ? new LedgerJournal(path) : undefined;
    } catch (error) {
      throw new FileError(path, `cannot create the ledger journal beside the SQLite store (${errorMessage(error)})`, {
        cause: error,
      });
    }
    // A server decides credit on the committed balance plus its own unwritten rows: a second server of the same file
    // would not see the first's.
    const others = journal ? otherServers(path) : [];
    if (others.length > 0) {
      journal!.close();
      throw new InputError(
        `another server (pid ${others.join(", ")}) is serving ${path}: one server per SQLite file (replicas share a PostgreSQL store)`,
      );
    }
    const writer = new SqliteLedgerWriter(
      sqlite,
      journal,
      typeof options.journal === "object" ? options.journal.commitMs : undefined,
    );
    if (journal) checkpointer?.onCaughtUp(writer.checkpointCaughtUp);
    return new SqliteLedger(db, sqlite, writer, checkpointer);
  }

  reads(): Db {
    this.writer.drain();
    return this.db;
  }

  writes(): Db {
    this.writer.flush();
    return this.db;
  }

  async grant(orgId: string, amount: number, idempotencyKey: string, memo: string): Promise<boolean> {
    const { value, durable } = this.writer.grant(orgId, amount, idempotencyKey, memo);
    await durable;
    return value;
  }

  async reserve(request: ReserveRequest, options: ReserveOptions = {}): Promise<Hold> {
    const { value, durable } = this.writer.reserve(request, options);
    return { amount: value, durable };
  }

  async settle(requestId: string, usage: SettleUsage): Promise<boolean> {
    const { value, durable } = this.writer.settle(requestId, usage);
    await durable;
    return value;
  }

  voidCharge(requestId: string, outcome: string): Promise<number> {
    return voidChargeIn(this.writes(), requestId, outcome);
  }

  /**
   * In one synchronous step, after this process's decided rows are written: every query in one transaction (a
   * savepoint inside an open batch), so no commit, of this process or another, lands between them.
   */
  async snapshot<Q extends Record<string, CompiledQuery>>(queries: Q): Promise<SnapshotRows<Q>> {
    this.writer.drain();
    const all = (query: CompiledQuery) => this.sqlite.prepare(query.sql).all(...query.parameters);
    const names = Object.keys(queries) as (keyof Q)[];
    return this.sqlite.transaction(
      () => Object.fromEntries(names.map((name) => [name, all(queries[name]!)])) as SnapshotRows<Q>,
    )();
  }

  /** False once its tables failed and could not be rebuilt (the next process applies its journal). */
  async available(): Promise<boolean> {
    return this.writer.available;
  }

  async close(): Promise<void> {
    this.writer.close();
    await this.checkpointer?.close();
    await this.db.destroy();
  }
}
