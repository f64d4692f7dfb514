import SQLite from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { openDatabase } from "./database.ts";
import { InsufficientCreditError } from "./ledger.ts";
import { SqliteLedgerWriter } from "./sqlite-ledger-writer.ts";
import { WalCheckpointer } from "./checkpointer.ts";

/** The group commit itself (the store suite covers the movements on both stores). */
describe("SqliteLedgerWriter group commit", () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  async function ledger(): Promise<{ ledger: SqliteLedgerWriter; sqlite: SQLite.Database }> {
    const { db, sqlite } = await openDatabase("sqlite::memory:");
    close = () => db.destroy();
    return { ledger: new SqliteLedgerWriter(sqlite!), sqlite: sqlite! };
  }

  const request = (requestId: string, amount: number) => ({
    requestId,
    orgId: "o",
    keyId: "k",
    model: "m",
    amount,
    instance: "i",
  });

  it("decides at once, commits the turn's operations together, and refuses without touching the others", async () => {
    const { ledger: l, sqlite } = await ledger();
    await l.grant("o", 1_000, "g", "credit").durable;
    const a = l.reserve(request("a", 600));
    expect(a.value).toBe(600);
    expect(() => l.reserve(request("b", 600))).toThrow(InsufficientCreditError);
    const c = l.reserve(request("c", 400));
    // Not committed yet: the write transaction of this turn is still open.
    expect(sqlite.inTransaction).toBe(true);
    await Promise.all([a.durable, c.durable]);
    expect(sqlite.inTransaction).toBe(false);
    expect(sqlite.prepare("select count(*) as n from holds").get()).toEqual({ n: 2 });
    const settled = l.settle("a", { promptTokens: 1, completionTokens: 1, cost: 250, outcome: "ok" });
    expect(settled.value).toBe(true);
    expect(l.settle("a", { promptTokens: 1, completionTokens: 1, cost: 250, outcome: "ok" }).value).toBe(false);
    await settled.durable;
    expect(sqlite.prepare("select amount, held from balances where account = 'org:o:credit'").get()).toEqual({
      amount: 750,
      held: 400,
    });
  });

  it("rejects every operation of a batch whose commit fails, and none of it happened", async () => {
    const { ledger: l, sqlite } = await ledger();
    await l.grant("o", 1_000, "g", "credit").durable;
    // A deferred constraint fails only at COMMIT: the way to make a commit fail on demand.
    sqlite.exec(
      "create table parent (id integer primary key); create table poison (id integer references parent(id) deferrable initially deferred)",
    );
    sqlite.pragma("foreign_keys = ON");
    const a = l.reserve(request("a", 300));
    sqlite.exec("insert into poison values (1)");
    const b = l.reserve(request("b", 300));
    await expect(a.durable).rejects.toThrow(/FOREIGN KEY/);
    await expect(b.durable).rejects.toThrow(/FOREIGN KEY/);
    expect(sqlite.prepare("select count(*) as n from holds").get()).toEqual({ n: 0 });
    expect(sqlite.prepare("select amount, held from balances where account = 'org:o:credit'").get()).toEqual({
      amount: 1_000,
      held: 0,
    });
    // The next turn works again.
    sqlite.pragma("foreign_keys = OFF");
    const c = l.reserve(request("c", 300));
    await c.durable;
    expect(sqlite.prepare("select held from balances where account = 'org:o:credit'").get()).toEqual({ held: 300 });
  });

  it("rolls back the whole batch when an operation fails after it has written (not a refusal)", async () => {
    const { ledger: l, sqlite } = await ledger();
    await l.grant("o", 1_000, "g", "credit").durable;
    await l.reserve(request("x", 100)).durable;
    await l.settle("x", { promptTokens: 1, completionTokens: 1, cost: 10, outcome: "ok" }).durable;
    // A hold that reappears for a settled request (never made by the server): settling it again cannot write its usage
    // row.
    sqlite.exec(
      "insert into holds values ('x', 'o', 'k', 'm', 100, 0, 'i'); update balances set held = held + 100 where account = 'org:o:credit'",
    );
    const y = l.reserve(request("y", 200));
    expect(() => l.settle("x", { promptTokens: 1, completionTokens: 1, cost: 10, outcome: "ok" })).toThrow(/UNIQUE/);
    await expect(y.durable).rejects.toThrow(/UNIQUE/);
    expect(sqlite.prepare("select count(*) as n from holds where request_id = 'y'").get()).toEqual({ n: 0 });
    expect(sqlite.prepare("select amount, held from balances where account = 'org:o:credit'").get()).toEqual({
      amount: 990,
      held: 100,
    });
  });

  it("commits a lazy hold with the next settlement, or within a few milliseconds", async () => {
    const { ledger: l, sqlite } = await ledger();
    await l.grant("o", 1_000, "g", "credit").durable;
    const lazy = l.reserve(request("a", 100), { lazy: true });
    await new Promise((resolve) => setImmediate(resolve));
    expect(sqlite.inTransaction).toBe(true);
    const settled = l.settle("a", { promptTokens: 1, completionTokens: 1, cost: 10, outcome: "ok" });
    await Promise.all([lazy.durable, settled.durable]);
    expect(sqlite.inTransaction).toBe(false);
    const alone = l.reserve(request("b", 100), { lazy: true });
    const started = performance.now();
    await alone.durable;
    expect(performance.now() - started).toBeLessThan(500);
    expect(sqlite.prepare("select count(*) as n from holds where request_id = 'b'").get()).toEqual({ n: 1 });
  });

  it("commits the last settlement in flight at once, and batches one that others share", async () => {
    const { ledger: l, sqlite } = await ledger();
    await l.grant("o", 1_000, "g", "credit").durable;
    await Promise.all([l.reserve(request("a", 100)).durable, l.reserve(request("b", 100)).durable]);
    l.settle("a", { promptTokens: 1, completionTokens: 1, cost: 10, outcome: "ok" });
    // b is still in flight: a waits for the end of the turn, where b's settlement might join it.
    expect(sqlite.inTransaction).toBe(true);
    await new Promise((resolve) => setImmediate(resolve));
    const last = l.settle("b", { promptTokens: 1, completionTokens: 1, cost: 10, outcome: "ok" });
    expect(sqlite.inTransaction).toBe(false);
    await last.durable;
    expect(sqlite.prepare("select amount, held from balances where account = 'org:o:credit'").get()).toEqual({
      amount: 980,
      held: 0,
    });
  });
});

describe("the WAL checkpointer", () => {
  it("failing in its worker (here: a database it cannot open) neither ends the process nor hangs its close", async () => {
    const checkpointer = new WalCheckpointer(
      join(PROJECT_ROOT, ".avocado", "no-such-folder", String(process.pid), "avocado.db"),
      10,
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    await checkpointer.close();
  });
});
