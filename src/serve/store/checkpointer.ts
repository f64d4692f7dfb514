import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

const require = createRequire(import.meta.url);

// Runs in a worker thread with its own connection: a WAL checkpoint copies pages and
// fsyncs, which on the request thread showed up as 6–9 ms stalls of a hold.
// Often (every 100 ms), so that what is left for the ledger's WAL restart (on the
// request thread, between two batches) is little.
const SOURCE = `
const { workerData, parentPort } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 5000");
let reported = -1;
const timer = setInterval(() => {
  try {
    const [result] = db.pragma("wal_checkpoint(PASSIVE)");
    // Everything committed when it started is in the database file now: a good moment to restart the WAL (said once per
    // WAL size, not every tick of an idle server).
    if (result && result.busy === 0 && result.log > 0 && result.checkpointed === result.log && result.log !== reported) {
      reported = result.log;
      parentPort.postMessage("caught-up");
    }
  } catch {}
}, workerData.intervalMs);
parentPort.on("message", () => { clearInterval(timer); try { db.pragma("wal_checkpoint(PASSIVE)"); } catch {} db.close(); process.exit(0); });
`;

/** Checkpoints a SQLite WAL off the request thread; the main connection then runs with wal_autocheckpoint = 0. */
export class WalCheckpointer {
  private readonly worker: Worker;
  private exited = false;
  constructor(path: string, intervalMs = 100) {
    this.worker = new Worker(SOURCE, {
      eval: true,
      workerData: { path, intervalMs, driver: require.resolve("better-sqlite3") },
    });
    this.worker.unref();
    // A worker that fails is an 'error' event (without a listener it would end the server): the ledger then restarts
    // the WAL itself, every 500 commits.
    this.worker.on("error", () => undefined);
    this.worker.once("exit", () => (this.exited = true));
  }

  /** Called each time a checkpoint has copied every frame the WAL held when it started. */
  onCaughtUp(listener: () => void): void {
    this.worker.on("message", listener);
  }
  async close(): Promise<void> {
    if (this.exited) return;
    // Held again while it finishes, or an idle process would exit before the worker does.
    this.worker.ref();
    const exited = new Promise((resolve) => this.worker.once("exit", resolve));
    this.worker.postMessage("stop");
    await exited;
  }
}
