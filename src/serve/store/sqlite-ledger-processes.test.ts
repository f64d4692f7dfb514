import SQLite from "better-sqlite3";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { readDeadJournal, removeDeadJournal } from "./ledger-journal.ts";
import { Store } from "./store.ts";

import { crash, journaledStores, journals, usage, writerOf } from "../../../test/journaled-stores.ts";

/** The journal between processes: a stopped server's, two openers at once, the CLI beside a server. */
describe("SqliteLedgerWriter with a journal, across processes", () => {
  const { journaled } = journaledStores();

  it("refuses to open a store whose stopped server's journal cannot be applied, and keeps that journal", async () => {
    const { store, url, folder } = await journaled();
    await store.grant("acme", 1_000, "g1");
    const journal = await crash(store, folder);
    // A record no ledger would write (an amount that is not a number): corruption, never skipped silently.
    writeFileSync(
      journal,
      `${JSON.stringify({ t: "grant", orgId: "o", amount: "lots", key: "g2", memo: "credit", at: 0 })}\n`,
    );
    await expect(Store.open(url)).rejects.toThrow(
      /the ledger journal of a stopped server cannot be applied .*it is kept/,
    );
    expect(readFileSync(journal, "utf8")).toContain('"lots"');
  });

  it("lets two processes open the store at once after a crash: one replays, the other finds the journal gone", async () => {
    const { store, url, folder } = await journaled();
    await store.grant("acme", 1_000, "g1");
    const org = (await store.orgByName("acme"))!.id;
    const journal = await crash(store, folder);
    const [first, second] = await Promise.all([Store.open(url), Store.open(url)]);
    expect(journals(folder)).toEqual([]);
    expect(await first!.balance(org)).toEqual({ available: 1_000, held: 0 });
    await first!.close();
    await second!.close();
    // The race itself, made certain: a journal listed as dead and then removed by the other process.
    expect(readDeadJournal(journal)).toBeUndefined();
    expect(() => removeDeadJournal(journal)).not.toThrow();
  });

  it("does not wait for another process's write lock: its commit tries again later, and what it decided stays durable meanwhile", async () => {
    const { store, url } = await journaled(20);
    const org = await store.ensureOrg("acme");
    const { row: key } = await store.createKey({ org: "acme", name: "k" });
    await store.grant("acme", 1_000, "g1");
    writerOf(store).flush();
    const other = new SQLite(url.slice("sqlite:".length));
    other.exec("begin immediate");
    const started = performance.now();
    const hold = await store.reserve({
      requestId: "r1",
      orgId: org,
      keyId: key.id,
      model: "m",
      amount: 300,
      instance: "i",
    });
    await hold.durable;
    expect(await store.settle("r1", usage(40))).toBe(true);
    // Several commit attempts come and go: none waits for the lock (the event loop keeps turning), nothing reaches the
    // tables.
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(other.prepare("select count(*) as n from requests").get()).toEqual({ n: 0 });
    other.exec("rollback");
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(other.prepare("select count(*) as n from requests").get()).toEqual({ n: 1 });
    other.close();
    expect(await store.balance(org)).toEqual({ available: 960, held: 0 });
    await store.close();
  });

  it("lets the CLI write while the server is under load (the write lock is held only while a commit writes), and refuses a second server of the file", async () => {
    const { store, url, folder } = await journaled(20);
    const org = await store.ensureOrg("acme");
    const { row: key } = await store.createKey({ org: "acme", name: "k" });
    await store.grant("acme", 1_000_000_000, "g1");
    const cli = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(
          process.execPath,
          [join(PROJECT_ROOT, "bin", "avocado.js"), ...args, "--store", url],
          { cwd: folder, encoding: "utf8" },
          (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr }),
        ),
      );
    // The server's load: holds and settlements all the time, committed every 20 ms and every 256 settlements.
    let running = true;
    let settled = 0;
    const load = (async () => {
      while (running) {
        for (let i = 0; i < 16; i++) {
          const requestId = `load-${settled}`;
          await store.reserve(
            { requestId, orgId: org, keyId: key.id, model: "m", amount: 100, instance: "i" },
            { lazy: true },
          );
          await store.settle(requestId, usage(10));
          settled++;
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const [credit, created] = await Promise.all([
      cli(["billing", "credit", "--org", "acme", "--amount", "7", "--idempotency-key", "cli-1"]),
      cli(["--json", "keys", "create", "--org", "acme"]),
    ]);
    running = false;
    await load;
    expect(credit.code, credit.stderr).toBe(0);
    expect(credit.stdout).toMatch(/^credited/);
    expect(created.code, created.stderr).toBe(0);
    expect(settled).toBeGreaterThan(100);
    expect(await store.balance(org)).toEqual({ available: 1_000_000_000 + 7 - 10 * settled, held: 0 });
    expect((await store.audit()).problems).toEqual([]);

    // A second server of the same file would decide credit without seeing this one's undecided rows: refused.
    writeFileSync(
      join(folder, "second.ts"),
      `import { Store } from ${JSON.stringify(join(PROJECT_ROOT, "src", "serve", "store", "store.ts"))};\nawait Store.open(process.argv[2]!, { journal: true }).then(() => console.log("opened"), (error: Error) => console.log(error.message));\n`,
    );
    const second = await new Promise<string>((resolve) =>
      execFile(
        process.execPath,
        [join(PROJECT_ROOT, "bin", "run-ts.js"), join(folder, "second.ts"), url],
        { encoding: "utf8" },
        (_error, stdout) => resolve(stdout),
      ),
    );
    expect(second).toMatch(
      new RegExp(`another server \\(pid ${process.pid}\\) is serving .*one server per SQLite file`),
    );
    expect(journals(folder)).toHaveLength(1);
    await store.close();
  }, 60_000);
});
