import type SQLite from "better-sqlite3";

/**
 * Every so many commits, the ledger restarts the WAL between two batches. The
 * checkpointer thread copies the WAL into the database but can rarely reset
 * it: that needs a moment when it has copied every frame and no transaction is
 * open, and a server under load commits dozens of times a second. Without it
 * the WAL grew without bound (8 MB a second under load), and with it every page
 * lookup. The restart waits for the checkpointer to have just caught up (then
 * it copies one batch's frames, not a fraction of a second's), but not beyond
 * twice as many commits.
 */
const WAL_RESTART_COMMITS = 250;

/** Runs statements that fail at once, rather than wait, when another connection holds a lock they need. */
export function withoutWaiting<T>(db: SQLite.Database, statements: () => T): T {
  const timeout = db.pragma("busy_timeout", { simple: true }) as number;
  db.pragma("busy_timeout = 0");
  try {
    return statements();
  } finally {
    db.pragma(`busy_timeout = ${timeout}`);
  }
}

/** Restarts a busy writer's WAL between two of its batches (see WAL_RESTART_COMMITS). */
export class WalRestarter {
  /** Commits since the WAL was last restarted. */
  private commits = 0;
  /** Whether the checkpointer has caught up since the last commit. */
  private caughtUpSince = false;

  constructor(private readonly db: SQLite.Database) {}

  /** The checkpointer has copied every frame of the WAL it saw (the next commit is a good moment to restart it). */
  caughtUp(): void {
    this.caughtUpSince = true;
  }

  /** After a batch's commit, with no transaction open: restarts the WAL when it is due. */
  committed(): void {
    const caughtUp = this.caughtUpSince;
    this.caughtUpSince = false;
    if (++this.commits >= (caughtUp ? WAL_RESTART_COMMITS : 2 * WAL_RESTART_COMMITS)) this.restart();
  }

  /**
   * Checkpoints what the checkpointer has not yet copied (a fraction of a
   * second's worth) and restarts the WAL, so the next batch writes it from the
   * start. It does not wait: if a reader or the checkpointer is busy, it tries
   * again a few commits later.
   */
  private restart(): void {
    try {
      const [result] = withoutWaiting(this.db, () => this.db.pragma("wal_checkpoint(RESTART)") as { busy: number }[]);
      // Busy (a reader, or the checkpointer itself): tried again some commits later.
      this.commits = result?.busy === 0 ? 0 : this.commits - 10;
    } catch {
      this.commits -= 10;
    }
  }
}
