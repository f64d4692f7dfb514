import {
  closeSync,
  ftruncateSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { ownerAlive, ownerTag } from "../../core/process-owner.ts";
import type { holdRow, SettleUsage } from "./ledger.ts";

/** One ledger operation as the journal keeps it: everything needed to apply it again, decisions included. */
export type JournalRecord =
  | { t: "grant"; orgId: string; amount: number; key: string; memo: string; at: number }
  | ({ t: "hold" } & ReturnType<typeof holdRow>)
  | { t: "settle"; requestId: string; usage: SettleUsage; at: number };

const JOURNAL_SUFFIX = ".journal";
const prefixOf = (databasePath: string) => `${basename(databasePath)}-ledger.`;

/**
 * The SQLite ledger's write-ahead journal: one line per operation, written
 * (one `write`, into the page cache) before the operation counts as durable.
 * The ledger's tables then commit in batches, and after each commit the
 * journal is emptied. A process killed between the two leaves a journal behind;
 * the next process to open the store applies it again (`Store.open`, `deadJournals`):
 * every operation is idempotent by its key (grant key, request id), so what
 * was already committed is skipped and nothing happens twice.
 *
 * Like SQLite's WAL with `synchronous = NORMAL`, the journal survives the
 * process being killed at any point, not the machine losing power (no fsync).
 * A record cut short by such a loss is the last line and is ignored.
 */
export class LedgerJournal {
  private readonly fd: number;
  private position = 0;
  readonly path: string;

  constructor(databasePath: string) {
    this.path = join(
      dirname(databasePath),
      `${prefixOf(databasePath)}${ownerTag()}.${Math.random().toString(36).slice(2, 8)}${JOURNAL_SUFFIX}`,
    );
    this.fd = openSync(this.path, "w");
  }

  /**
   * Writes records; they are durable when this returns. On a failed write nothing of it counts (the file is cut back).
   */
  append(records: string): void {
    const buffer = Buffer.from(records);
    try {
      const written = writeSync(this.fd, buffer, 0, buffer.length, this.position);
      if (written !== buffer.length)
        throw new Error(`short write to the ledger journal (${written} of ${buffer.length} bytes)`);
    } catch (error) {
      try {
        ftruncateSync(this.fd, this.position);
      } catch {
        // The next replay stops at the first line that does not parse.
      }
      throw error;
    }
    this.position += buffer.length;
  }

  /** The records written since the last reset (what the open batch holds). */
  records(): JournalRecord[] {
    return parseJournal(readFileSync(this.path, "utf8"));
  }

  get size(): number {
    return this.position;
  }

  /** Empties the journal: everything in it is committed. */
  reset(): void {
    if (this.position === 0) return;
    ftruncateSync(this.fd, 0);
    this.position = 0;
  }

  /** Closes and removes the journal (its records must be committed). */
  close(): void {
    closeSync(this.fd);
    unlinkSync(this.path);
  }
}

export const journalLine = (record: JournalRecord) => `${JSON.stringify(record)}\n`;

/** The journal's records; a last line cut short (a power loss mid-write) is dropped. */
export function parseJournal(text: string): JournalRecord[] {
  const records: JournalRecord[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    try {
      records.push(JSON.parse(line) as JournalRecord);
    } catch {
      break;
    }
  }
  return records;
}

/** The journals beside a database: each file's path and its owner's tag (boot, pid, start time). */
function journalsBeside(databasePath: string): { path: string; owner: string }[] {
  const prefix = prefixOf(databasePath);
  let names: string[];
  try {
    names = readdirSync(dirname(databasePath));
  } catch {
    return [];
  }
  return names
    .filter((name) => name.startsWith(prefix) && name.endsWith(JOURNAL_SUFFIX))
    .map((name) => ({
      path: join(dirname(databasePath), name),
      owner: name.slice(prefix.length, -JOURNAL_SUFFIX.length).split(".").slice(0, 3).join("."),
    }));
}

/**
 * The pids of other running processes that keep a journal beside this database: other servers of the same SQLite file.
 */
export function otherServers(databasePath: string): number[] {
  return journalsBeside(databasePath)
    .map((journal) => ({ pid: Number(journal.owner.split(".")[1]), owner: journal.owner }))
    .filter((journal) => journal.pid !== process.pid && ownerAlive(journal.owner))
    .map((journal) => journal.pid);
}

/** Journals left by processes that are no longer running, oldest first. */
export function deadJournals(databasePath: string): string[] {
  return (
    journalsBeside(databasePath)
      .filter((journal) => !ownerAlive(journal.owner))
      .map((journal) => ({ path: journal.path, modified: statSync(journal.path, { throwIfNoEntry: false })?.mtimeMs }))
      // One another process has just replayed and removed is gone.
      .filter((journal) => journal.modified !== undefined)
      .sort((a, b) => a.modified! - b.modified!)
      .map((journal) => journal.path)
  );
}

/** A dead journal's text, or undefined when another process opening the store has replayed and removed it meanwhile. */
export function readDeadJournal(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** Removes a replayed journal (already gone if another process replayed it too: the replay was idempotent). */
export function removeDeadJournal(path: string): void {
  rmSync(path, { force: true });
}
