import { appendFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { ownerAlive, ownerTag } from "../core/process-owner.ts";
import type { SettleUsage } from "./store/ledger.ts";
import type { Store } from "./store/store.ts";

const FIRST_RETRY_MS = 1_000;
const LONGEST_RETRY_MS = 30_000;
/** At shutdown, the last try waits at most this long for the store. */
const LAST_TRY_MS = 5_000;
const SUFFIX = ".jsonl";

/**
 * The outcome of a settlement whose answer was withheld from its client (told nothing was charged): recorded at no
 * cost.
 */
export const WITHHELD = "ledger_unavailable";

/** One pending settlement as its file keeps it (one JSON line each). */
interface PendingLine {
  requestId: string;
  usage: SettleUsage;
}

/**
 * Settlements the store could not take when their requests ended (PostgreSQL
 * unreachable, a SQLite journal that could not be written), tried again until
 * they land: after 1 s, doubling to every 30 s. Each keeps the usage it
 * should record — a streamed answer the client received is charged, a
 * withheld answer (the client was told nothing was charged) is recorded at
 * no cost. A settlement is idempotent by request id, so one that did land
 * after all (its reply lost with the connection) is not charged twice; and if
 * that one was a withheld answer's, its charge is given back (`voidCharge`),
 * so what the client was told — nothing charged — is what the ledger says.
 *
 * With a `folder`, what is pending is also kept on disk (one file per server,
 * named by its process's owner tag, written before the request's answer ends), so it
 * outlives the process: a server killed while the store was away (kill -9
 * included) leaves its file, and the next server started in the same
 * workspace on this machine settles what it holds (`resumeDead`) before
 * recovery would release those holds as if their usage were unknown. Like the
 * ledger's journal, the file survives the process, not the machine losing
 * power (no fsync). Without a folder, or if its file cannot be written, what
 * is still pending when the server stops stays a hold, which recovery releases.
 */
export class SettlementRetry {
  private readonly pending = new Map<string, SettleUsage>();
  private timer: NodeJS.Timeout | undefined;
  private delay = FIRST_RETRY_MS;
  private running: Promise<void> | undefined;
  private readonly path: string | undefined;
  /** Whether the folder is known to exist (made at the first write, not at every one). */
  private folderMade = false;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly folder?: string,
  ) {
    // The owner's tag, and a suffix of its own (a process may run more than one server: tests, replicas side by side).
    this.path =
      folder === undefined
        ? undefined
        : join(folder, `${ownerTag()}.${Math.random().toString(36).slice(2, 8)}${SUFFIX}`);
  }

  /** A settlement to try again later (on disk before this returns, when there is a folder). */
  add(requestId: string, usage: SettleUsage): void {
    this.pending.set(requestId, usage);
    this.keep(() => appendFileSync(this.path!, lineOf(requestId, usage)));
    this.schedule();
  }

  /** Settlements not yet landed. */
  get size(): number {
    return this.pending.size;
  }

  /** Whether a request's settlement is pending here (recovery must not release its hold). */
  has(requestId: string): boolean {
    return this.pending.has(requestId);
  }

  /**
   * At startup: takes over the pending settlements of servers that ran in this
   * folder and no longer do (the files of live ones are theirs), and tries them
   * at once; those that still fail stay pending here. Returns how many landed.
   */
  async resumeDead(): Promise<{ files: number; settled: number }> {
    if (this.folder === undefined) return { files: 0, settled: 0 };
    let names: string[];
    try {
      names = readdirSync(this.folder).filter(
        (name) => name.endsWith(SUFFIX) && !ownerAlive(name.split(".").slice(0, 3).join(".")),
      );
    } catch {
      return { files: 0, settled: 0 };
    }
    for (const name of names) {
      let text: string;
      try {
        text = readFileSync(join(this.folder, name), "utf8");
      } catch (error) {
        // Taken over meanwhile by another server starting in the same workspace (both settling it would be harmless:
        // idempotent).
        if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw error;
      }
      for (const line of parsePending(text)) this.pending.set(line.requestId, line.usage);
    }
    if (names.length === 0) return { files: 0, settled: 0 };
    // This process's file holds them before the dead ones go (killed in between, the next start finds them twice:
    // settling is idempotent).
    this.rewrite();
    for (const name of names) rmSync(join(this.folder, name), { force: true });
    const before = this.pending.size;
    await this.retry();
    if (this.pending.size > 0) this.schedule();
    return { files: names.length, settled: before - this.pending.size };
  }

  private schedule(): void {
    if (this.timer || this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.retry().finally(() => {
        this.running = undefined;
        if (this.pending.size > 0) this.schedule();
      });
    }, this.delay);
    this.timer.unref();
  }

  /**
   * One pass over what is pending; it stops at the first failure (the store is still away) and waits longer next time.
   */
  private async retry(): Promise<void> {
    let landed = 0;
    try {
      for (const [requestId, usage] of this.pending) {
        try {
          const settled = await this.store.settle(requestId, usage);
          // Settled already: by the first try, whose acknowledgement was lost (or by recovery). A withheld answer is
          // charged nothing.
          const refunded =
            !settled && usage.outcome === WITHHELD ? await this.store.voidCharge(requestId, WITHHELD) : 0;
          this.pending.delete(requestId);
          landed++;
          this.logger.log("info", "api.settle_retried", {
            requestId,
            settled,
            costMicros: usage.cost,
            outcome: usage.outcome,
            ...(refunded > 0 ? { refundedMicros: refunded } : {}),
          });
        } catch (error) {
          this.delay = Math.min(this.delay * 2, LONGEST_RETRY_MS);
          this.logger.log("warn", "api.settle_retry_failed", {
            pending: this.pending.size,
            retryInMs: this.delay,
            error: errorMessage(error),
          });
          return;
        }
      }
      this.delay = FIRST_RETRY_MS;
    } finally {
      // The file keeps only what is still pending (gone when nothing is).
      if (landed > 0) this.rewrite();
    }
  }

  /**
   * Replaces the file with what is pending now (written aside, then renamed over it: a kill meanwhile leaves the old
   * one whole).
   */
  private rewrite(): void {
    this.keep(() => {
      if (this.pending.size === 0) return rmSync(this.path!, { force: true });
      const text = [...this.pending].map(([requestId, usage]) => lineOf(requestId, usage)).join("");
      writeFileSync(`${this.path}.tmp`, text);
      renameSync(`${this.path}.tmp`, this.path!);
    });
  }

  /**
   * A write of the pending file; one that fails is logged, and what it would have kept stays pending in memory only.
   */
  private keep(write: () => void): void {
    if (this.path === undefined) return;
    try {
      if (!this.folderMade) mkdirSync(this.folder!, { recursive: true });
      this.folderMade = true;
      write();
    } catch (error) {
      // The folder is made again at the next write (one removed meanwhile comes back).
      this.folderMade = false;
      this.logger.log("error", "api.pending_settlements_not_kept", {
        path: this.path,
        pending: this.pending.size,
        error: errorMessage(error),
      });
    }
  }

  /**
   * At shutdown: one last try (bounded); what still fails stays in the file for the next server (or, without one, is
   * left to recovery).
   */
  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    if (this.pending.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.retry(), new Promise((resolve) => (timer = setTimeout(resolve, LAST_TRY_MS)))]);
    clearTimeout(timer);
    if (this.pending.size > 0) {
      this.logger.log("error", this.path ? "api.settlements_left_pending" : "api.settlements_left_to_recovery", {
        pending: this.pending.size,
        path: this.path,
        requestIds: [...this.pending.keys()].slice(0, 100),
      });
    }
  }
}

const lineOf = (requestId: string, usage: SettleUsage) =>
  `${JSON.stringify({ requestId, usage } satisfies PendingLine)}\n`;

/**
 * A pending file's settlements (the last line for a request id wins); a last line cut short (a power loss mid-write) is
 * dropped.
 */
function parsePending(text: string): PendingLine[] {
  const lines: PendingLine[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    try {
      const parsed = JSON.parse(line) as PendingLine;
      if (typeof parsed.requestId === "string" && typeof parsed.usage === "object" && parsed.usage !== null)
        lines.push(parsed);
    } catch {
      break;
    }
  }
  return lines;
}
