import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { Store } from "./store.ts";
import { InsufficientCreditError } from "./ledger.ts";

import { crash, journaledStores, journals, ledgerOf, usage, writerOf } from "../../../test/journaled-stores.ts";

/** The group commit with a journal, in one process (the store suite covers the movements on both stores). */
describe("SqliteLedgerWriter with a journal", () => {
  const { journaled, funded } = journaledStores();

  it("is durable on the journal's write, before the tables commit", async () => {
    const { store, folder } = await journaled(50);
    const org = await store.ensureOrg("acme");
    const { row: key } = await store.createKey({ org: "acme", name: "k" });
    await store.grant("acme", 1_000, "g1");
    const hold = await store.reserve({
      requestId: "r1",
      orgId: org,
      keyId: key.id,
      model: "m",
      amount: 600,
      instance: "i",
    });
    await hold.durable;
    expect(writerOf(store)["db"].inTransaction).toBe(true);
    const lines = readFileSync(join(folder, journals(folder)[0]!), "utf8")
      .trim()
      .split("\n");
    expect(lines.map((line) => (JSON.parse(line) as { t: string }).t)).toEqual(["grant", "hold"]);
    // Within the batch interval the tables commit and the journal empties.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(writerOf(store)["db"].inTransaction).toBe(false);
    expect(readFileSync(join(folder, journals(folder)[0]!), "utf8")).toBe("");
    await store.close();
    expect(journals(folder)).toEqual([]);
  });

  it("replays a dead process's journal when the store opens: nothing durable is lost, nothing happens twice", async () => {
    const { store, url, folder } = await journaled();
    const org = await store.ensureOrg("acme");
    const { row: key } = await store.createKey({ org: "acme", name: "k" });
    const base = { orgId: org, keyId: key.id, model: "m", instance: "i" };
    await store.grant("acme", 10_000, "g1");
    await (
      await store.reserve({ ...base, requestId: "settled", amount: 1_000 })
    ).durable;
    expect(await store.settle("settled", usage(400))).toBe(true);
    await (
      await store.reserve({ ...base, requestId: "open", amount: 2_000 })
    ).durable;
    // A lazy hold reaches the journal within a few milliseconds even if its request never settles.
    await (
      await store.reserve({ ...base, requestId: "lazy", amount: 500 }, { lazy: true })
    ).durable;
    const journal = await crash(store, folder);
    expect(readFileSync(journal, "utf8").trim().split("\n")).toHaveLength(5);

    const after = await Store.open(url);
    expect(journals(folder)).toEqual([]);
    expect(await after.balance(org)).toEqual({ available: 10_000 - 400 - 2_500, held: 2_500 });
    expect((await after.openHolds()).map((h) => h.request_id).sort()).toEqual(["lazy", "open"]);
    expect((await after.usage()).map((row) => [row.requests, row.cost])).toEqual([[1, 400]]);
    expect((await after.audit()).problems).toEqual([]);
    await after.close();
  });

  it("skips what was already committed when a journal outlives its commit, and ignores a torn last line", async () => {
    const { store, url, folder } = await journaled();
    const org = await store.ensureOrg("acme");
    const { row: key } = await store.createKey({ org: "acme", name: "k" });
    await store.grant("acme", 10_000, "g1");
    await (
      await store.reserve({ requestId: "r", orgId: org, keyId: key.id, model: "m", amount: 1_000, instance: "i" })
    ).durable;
    await store.settle("r", usage(300));
    const lines = readFileSync(join(folder, journals(folder)[0]!), "utf8");
    writerOf(store).flush();
    const journal = await crash(store, folder);
    // Killed between the commit and the journal's reset, and a power cut in the middle of a last record.
    writeFileSync(journal, `${lines}{"t":"grant","orgId":"${org}","amount":99`);
    const after = await Store.open(url);
    expect(await after.balance(org)).toEqual({ available: 9_700, held: 0 });
    expect((await after.audit()).problems).toEqual([]);
    await after.close();
  });

  it("leaves a live process's journal alone", async () => {
    const { store, url, folder } = await journaled();
    await store.grant("acme", 1_000, "g1");
    const org = (await store.orgByName("acme"))!.id;
    writerOf(store).flush();
    // A record the live owner has journaled and not yet committed (its batch would hold the write lock; here it is
    // written by hand).
    const [name] = journals(folder);
    writeFileSync(
      join(folder, name!),
      `${JSON.stringify({ t: "grant", orgId: org, amount: 500, key: "g2", memo: "credit", at: 0 })}\n`,
    );
    const other = await Store.open(url);
    expect(journals(folder)).toEqual([name]);
    expect(await other.balance(org)).toEqual({ available: 1_000, held: 0 });
    await other.close();
    await store.close();
  });

  it("rebuilds the batch from the journal when an operation fails halfway: only that operation fails", async () => {
    const { store, folder, org, key, base } = await funded(1_000);
    await (
      await store.reserve({ ...base, requestId: "x", amount: 100 })
    ).durable;
    await store.settle("x", usage(10));
    writerOf(store).flush();
    const sqlite = writerOf(store)["db"];
    // A hold that reappears for a settled request (never made by the server): settling it again cannot write its usage
    // row.
    sqlite.exec(
      "insert into holds values ('x', '" +
        org +
        "', '" +
        key.id +
        "', 'm', 100, 0, 'i'); update balances set held = held + 100 where account = 'org:" +
        org +
        ":credit'",
    );
    const y = await store.reserve({ ...base, requestId: "y", amount: 200 });
    await expect(store.settle("x", usage(10))).rejects.toThrow(/UNIQUE/);
    // y was durable (in the journal): the rollback took it from the tables, the rebuild put it back.
    await y.durable;
    expect(sqlite.prepare("select count(*) as n from holds where request_id = 'y'").get()).toEqual({ n: 1 });
    // The hand-made hold (committed on its own) and y remain; the failed settlement left nothing.
    expect(await store.balance(org)).toEqual({ available: 990 - 100 - 200, held: 300 });
    expect(journals(folder)).toHaveLength(1);
    await store.close();
  });

  it("decides holds and settlements in memory and writes their rows with the batch: no holds row for a hold settled within it, one update per balance", async () => {
    const { store, org, base } = await funded(1_000);
    const ledger = writerOf(store);
    const sqlite = ledger["db"];
    // What the batch writes, as SQLite sees it.
    sqlite.exec(
      "create temp table seen (what text); create temp trigger hold_rows after insert on holds begin insert into seen values ('hold ' || new.request_id); end; create temp trigger balance_updates after update on balances begin insert into seen values ('update ' || new.account); end",
    );
    const seen = () => (sqlite.prepare("select what from seen").all() as { what: string }[]).map((row) => row.what);
    const a = ledger.reserve({ ...base, requestId: "a", amount: 500 });
    const b = ledger.reserve({ ...base, requestId: "b", amount: 400 });
    // Decided on the committed balance plus the batch's unwritten holds: 100 are left.
    expect(() => ledger.reserve({ ...base, requestId: "c", amount: 200 })).toThrow(InsufficientCreditError);
    await Promise.all([a.durable, b.durable]);
    expect(ledger.settle("a", usage(120)).value).toBe(true);
    expect(ledger.settle("a", usage(120)).value).toBe(false);
    // Durable (journaled); nothing is in the tables yet.
    expect(seen()).toEqual([]);
    expect(sqlite.prepare("select count(*) as n from requests").get()).toEqual({ n: 0 });
    // A read of the store writes the batch first: b (open) gets its row, a (settled) never does; the org's balance is
    // updated once (revenue's row opens).
    expect(await store.balance(org)).toEqual({ available: 1_000 - 120 - 400, held: 400 });
    expect(seen().sort()).toEqual(["hold b", `update org:${org}:credit`]);
    expect(sqlite.prepare("select request_id, charged from requests").all()).toEqual([
      { request_id: "a", charged: 120 },
    ]);
    // b outlives the batch: its settlement is still decided in memory, and its row is deleted with the next batch.
    ledger.flush();
    expect(ledger.settle("b", usage(50)).value).toBe(true);
    expect(await store.balance(org)).toEqual({ available: 1_000 - 120 - 50, held: 0 });
    expect(sqlite.prepare("select count(*) as n from holds").get()).toEqual({ n: 0 });
    expect((await store.usage()).map((row) => [row.requests, row.cost])).toEqual([[2, 170]]);
    expect((await store.audit()).problems).toEqual([]);
    await store.close();
  });

  it("writes and commits settled rows in slices under load, so a commit never writes thousands at once", async () => {
    const { store } = await journaled();
    const org = await store.ensureOrg("acme");
    const { row: key } = await store.createKey({ org: "acme", name: "k" });
    await store.grant("acme", 100_000, "g1");
    const ledger = writerOf(store);
    const sqlite = ledger["db"];
    for (let i = 0; i < 260; i++) {
      ledger.reserve({ requestId: `r${i}`, orgId: org, keyId: key.id, model: "m", amount: 100, instance: "i" });
      ledger.settle(`r${i}`, usage(10));
    }
    expect(sqlite.prepare("select count(*) as n from requests").get()).toEqual({ n: 0 });
    await new Promise((resolve) => setImmediate(resolve));
    // Written and committed as a slice: no transaction stays open (the CLI may write between two commits).
    expect(sqlite.prepare("select count(*) as n from requests").get()).toEqual({ n: 260 });
    expect(sqlite.inTransaction).toBe(false);
    expect(await store.balance(org)).toEqual({ available: 100_000 - 2_600, held: 0 });
    expect((await store.audit()).problems).toEqual([]);
    await store.close();
  });

  it("restarts the WAL between two batches every few hundred commits, so a server always under load does not grow it without bound", async () => {
    const { store } = await journaled();
    await store.grant("acme", 1, "g0");
    const ledger = writerOf(store);
    const sqlite = ledger["db"];
    const walFrames = () => (sqlite.pragma("wal_checkpoint(PASSIVE)") as { log: number }[])[0]!.log;
    ledger.flush();
    const framesPerBatch = walFrames();
    let grants = 0;
    const batches = async (count: number, caughtUp: boolean) => {
      for (let i = 0; i < count; i++) {
        await store.grant("acme", 1, `g${++grants}`);
        // The checkpointer thread says so when it has copied everything (here, on cue).
        if (caughtUp) ledger.checkpointCaughtUp();
        ledger.flush();
      }
    };
    // The restart waits for a moment the checkpointer has caught up (then it copies one batch)…
    await batches(260, false);
    const grown = walFrames();
    expect(grown).toBeGreaterThan(framesPerBatch * 100);
    await batches(1, true);
    // (A restart that finds the checkpointer thread itself checkpointing does not wait: it is tried again ten commits
    // later.)
    for (let i = 0; i < 25 && walFrames() >= grown / 50; i++) await batches(1, true);
    // …so the WAL holds only the frames since.
    expect(walFrames()).toBeLessThan(grown / 50);
    // Without one, it restarts anyway after twice as many commits.
    await batches(500, false);
    for (let i = 0; i < 40 && walFrames() >= grown / 10; i++) await batches(1, false);
    expect(walFrames()).toBeLessThan(grown / 10);
    expect(sqlite.pragma("busy_timeout", { simple: true })).toBe(5000);
    expect((await store.audit()).problems).toEqual([]);
    await store.close();
  });

  it("hears from the checkpointer thread when it has caught up with the WAL", async () => {
    const { store } = await journaled();
    const caughtUp = new Promise<void>((resolve) => ledgerOf(store)["checkpointer"]!.onCaughtUp(resolve));
    await store.grant("acme", 1, "g1");
    writerOf(store).flush();
    await caughtUp;
    await store.close();
  });

  it("writes the lines of one turn together, and a failed write undoes exactly its operations", async () => {
    const { store, org, base } = await funded(1_000);
    const holds = await Promise.all(
      ["a", "b", "c", "d"].map((id) => store.reserve({ ...base, requestId: id, amount: 100 })),
    );
    await Promise.all(holds.map((h) => h.durable));
    const ledger = writerOf(store);
    const append = vi.spyOn(ledger["journal"]!, "append");
    const a = ledger.settle("a", usage(10));
    const b = ledger.settle("b", usage(20));
    await Promise.all([a.durable, b.durable]);
    expect(append).toHaveBeenCalledTimes(1);
    // The disk fills up: the settlement whose line could not be written did not happen; everything durable before it
    // stays.
    append.mockImplementationOnce(() => {
      throw new Error("ENOSPC: no space left on device, write");
    });
    const c = ledger.settle("c", usage(30));
    expect(c.value).toBe(true);
    await expect(c.durable).rejects.toThrow(/ENOSPC/);
    expect(await store.balance(org)).toEqual({ available: 1_000 - 10 - 20 - 200, held: 200 });
    append.mockRestore();
    expect(await store.settle("c", usage(30))).toBe(true);
    expect(await store.balance(org)).toEqual({ available: 1_000 - 10 - 20 - 30 - 100, held: 100 });
    expect((await store.audit()).problems).toEqual([]);
    await store.close();
  });
});
