import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { freshStore } from "../../../test/stores.ts";
import { CreditCeilingError, InsufficientCreditError, MAX_ISSUED, Store } from "./store.ts";
import { SqliteLedger } from "./sqlite-ledger.ts";

/** The store conformance suite: the same checks on SQLite (with and without the ledger's journal) and on PostgreSQL. */
for (const kind of ["sqlite", "sqlite-journal", "postgres"] as const) {
  describe(`Store on ${kind}`, () => {
    let store: Store;
    let drop: () => Promise<void>;
    beforeAll(async () => {
      ({ store, drop } = await freshStore(kind, "store"));
    });
    afterAll(async () => {
      await store.close();
      await drop();
    });

    it("creates keys shown once and stored hashed; revokes and rotates them", async () => {
      const { key, row } = await store.createKey({
        org: "acme",
        name: "ci",
        scopes: ["tiny-qwen"],
        limits: { rpm: 60 },
      });
      expect(key).toMatch(/^avo_[A-Za-z0-9_-]{32}$/);
      expect(row.prefix).toBe(key.slice(0, 12));
      const stored = await store.keyBySecret(key);
      expect(stored?.id).toBe(row.id);
      expect(JSON.stringify(await store.listKeys())).not.toContain(key.slice(12));
      expect(await store.keyBySecret(`${key}x`)).toBeUndefined();
      const rotated = await store.rotateKey(row.prefix);
      expect(rotated.row.scopes).toBe(JSON.stringify(["tiny-qwen"]));
      expect(rotated.row.rpm).toBe(60);
      expect(rotated.row.rotated_from).toBe(row.id);
      expect((await store.keyBySecret(key))?.revoked_at).not.toBeNull();
      await expect(store.rotateKey(row.id)).rejects.toThrow(/revoked/);
    });

    it("grants credit once per idempotency key, as balanced ledger transactions", async () => {
      const org = await store.ensureOrg("grants");
      expect(await store.grant("grants", 1_000_000, "topup-1")).toBe(true);
      expect(await store.grant("grants", 1_000_000, "topup-1")).toBe(false);
      expect(await store.balance(org)).toEqual({ available: 1_000_000, held: 0 });
      await expect(store.grant("grants", -5, "bad")).rejects.toThrow(/positive integer/);
      expect((await store.audit()).problems).toEqual([]);
    });

    it("reserves the worst case, settles the true cost once, and records the usage", async () => {
      const org = await store.ensureOrg("settle");
      await store.grant("settle", 10_000, "s-1");
      const { row: key } = await store.createKey({ org: "settle", name: "k" });
      const base = { orgId: org, keyId: key.id, model: "m", instance: "i1" };
      expect((await store.reserve({ ...base, requestId: "r1", amount: 4_000 })).amount).toBe(4_000);
      expect(await store.balance(org)).toEqual({ available: 6_000, held: 4_000 });
      expect((await store.reserve({ ...base, requestId: "r1", amount: 4_000 })).amount).toBe(4_000);
      expect(await store.balance(org)).toEqual({ available: 6_000, held: 4_000 });
      const settles = await Promise.all(
        [1, 2, 3].map(() => store.settle("r1", { promptTokens: 10, completionTokens: 20, cost: 1_234, outcome: "ok" })),
      );
      expect(settles.filter(Boolean)).toHaveLength(1);
      expect(await store.balance(org)).toEqual({ available: 8_766, held: 0 });
      await expect(store.reserve({ ...base, requestId: "r2", amount: 9_000 })).rejects.toBeInstanceOf(
        InsufficientCreditError,
      );
      expect(await store.balance(org)).toEqual({ available: 8_766, held: 0 });
      expect((await store.reserve({ ...base, requestId: "r3", amount: 9_000, minimum: 100 })).amount).toBe(8_766);
      await store.settle("r3", { promptTokens: 1, completionTokens: 0, cost: 99_999, outcome: "ok" });
      expect(await store.balance(org)).toEqual({ available: 0, held: 0 });
      const usage = await store.usage({ orgId: org });
      expect(usage).toHaveLength(1);
      expect(usage[0]).toMatchObject({ requests: 2, prompt_tokens: 11, completion_tokens: 20, cost: 1_234 + 8_766 });
      expect((await store.audit()).problems).toEqual([]);
    });

    it("reads what the dashboard shows: orgs with credit and keys, usage per minute, one settled request", async () => {
      const org = await store.ensureOrg("dash");
      await store.grant("dash", 5_000, "d-1");
      const { row: key } = await store.createKey({ org: "dash", name: "k" });
      await store.createKey({ org: "dash", name: "k2" });
      const base = { orgId: org, keyId: key.id, model: "m", instance: "i1" };
      await store.reserve({ ...base, requestId: "d1", amount: 1_000 });
      await store.reserve({ ...base, requestId: "d2", amount: 1_000 });
      await store.settle("d1", { promptTokens: 3, completionTokens: 4, cost: 70, outcome: "ok" });
      expect((await store.orgs()).find((o) => o.name === "dash")).toEqual({
        id: org,
        name: "dash",
        available: 3_930,
        held: 1_000,
        keys: 2,
      });
      const minute = await store.recentUsage(Date.now() - 60_000, 60_000);
      expect(minute.reduce((sum, b) => sum + b.requests, 0)).toBeGreaterThanOrEqual(1);
      const mine = minute.filter((b) => b.revenue >= 70);
      expect(mine.length).toBeGreaterThan(0);
      expect(mine.every((b) => b.at % 60_000 === 0)).toBe(true);
      expect(await store.settledRequest("d1")).toMatchObject({ org_id: org, charged: 70, prompt_tokens: 3 });
      // Held, not settled: no record yet.
      expect(await store.settledRequest("d2")).toBeUndefined();
      await store.settle("d2", { promptTokens: 0, completionTokens: 0, cost: 0, outcome: "cancelled" });
      if (kind !== "postgres") {
        // The live chart reads a time range: by the index, not a scan of every request ever settled.
        const plan = await sql<{
          detail: string;
        }>`explain query plan select count(*) from requests where created_at >= ${Date.now() - 60_000}`.execute(
          store.db,
        );
        expect(plan.rows.map((row) => row.detail).join("\n")).toMatch(/USING (COVERING )?INDEX requests_time/);
      }
    });

    it("gives back a settled request's charge once (a withheld answer whose settlement had landed), and the audit still balances", async () => {
      const org = await store.ensureOrg("void");
      await store.grant("void", 10_000, "v-1");
      const { row: key } = await store.createKey({ org: "void", name: "k" });
      await store.reserve({ orgId: org, keyId: key.id, model: "m", instance: "i1", requestId: "v1", amount: 4_000 });
      await store.settle("v1", { promptTokens: 10, completionTokens: 20, cost: 1_500, outcome: "ok" });
      expect(await store.balance(org)).toEqual({ available: 8_500, held: 0 });
      const voids = await Promise.all([1, 2].map(() => store.voidCharge("v1", "ledger_unavailable")));
      expect(voids.sort()).toEqual([0, 1_500]);
      expect(await store.voidCharge("unknown", "ledger_unavailable")).toBe(0);
      expect(await store.balance(org)).toEqual({ available: 10_000, held: 0 });
      expect(await store.usage({ orgId: org })).toEqual([
        expect.objectContaining({ requests: 1, prompt_tokens: 10, completion_tokens: 20, cost: 0 }),
      ]);
      expect((await store.audit()).problems).toEqual([]);
      // The audit would see a request charged other than its revenue entries say (here, tampered with by hand).
      await store.db.updateTable("requests").set({ charged: 7 }).where("request_id", "=", "v1").execute();
      expect((await store.audit()).problems).toEqual(["request v1: charged 7, revenue entry 0"]);
      await store.db.updateTable("requests").set({ charged: 0 }).where("request_id", "=", "v1").execute();
      expect((await store.audit()).problems).toEqual([]);
    });

    it("200 concurrent requests on credit for about 50: never below zero, charges equal metered usage, none twice", async () => {
      const org = await store.ensureOrg("crowd");
      await store.grant("crowd", 50 * 1_000, "crowd-1");
      const { row: key } = await store.createKey({ org: "crowd", name: "k" });
      const outcomes = await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const requestId = `crowd-${i}`;
          try {
            await (
              await store.reserve({ requestId, orgId: org, keyId: key.id, model: "m", amount: 1_000, instance: "i" })
            ).durable;
          } catch (error) {
            if (error instanceof InsufficientCreditError) return 0;
            throw error;
          }
          const cost = 500 + (i % 7) * 50;
          await Promise.all([
            store.settle(requestId, { promptTokens: 5, completionTokens: i % 7, cost, outcome: "ok" }),
            store.settle(requestId, { promptTokens: 5, completionTokens: i % 7, cost, outcome: "ok" }),
          ]);
          return cost;
        }),
      );
      const served = outcomes.filter((c) => c > 0);
      expect(served.length).toBeGreaterThanOrEqual(50);
      const balance = await store.balance(org);
      expect(balance.available).toBeGreaterThanOrEqual(0);
      expect(balance.held).toBe(0);
      const metered = served.reduce((a, b) => a + b, 0);
      const usage = await store.usage({ orgId: org });
      expect(usage.reduce((sum, row) => sum + row.cost, 0)).toBe(metered);
      expect(usage.reduce((sum, row) => sum + row.requests, 0)).toBe(served.length);
      expect(balance.available).toBe(50_000 - metered);
      const audit = await store.audit();
      expect(audit.problems).toEqual([]);
    });

    it("issues at most 2^53 − 1 micro-units in all, so every amount it reads back is exact", async () => {
      const { store: bank, drop: dropBank } = await freshStore(kind, "ceiling");
      try {
        const org = await bank.ensureOrg("whale");
        expect(await bank.grant("whale", MAX_ISSUED - 10, "big")).toBe(true);
        await expect(bank.grant("other", 11, "one-too-many")).rejects.toThrow(CreditCeilingError);
        // A retry of a credit already applied is still just a retry, and what fits still fits.
        expect(await bank.grant("whale", MAX_ISSUED - 10, "big")).toBe(false);
        expect(await bank.grant("whale", 10, "last")).toBe(true);
        await expect(bank.grant("whale", 1, "beyond")).rejects.toThrow(/may not exceed/);
        expect(await bank.balance(org)).toEqual({ available: MAX_ISSUED, held: 0 });
        // The refusals wrote nothing, and the ledger still works.
        const { row: key } = await bank.createKey({ org: "whale", name: "k" });
        await bank.reserve({ requestId: "w1", orgId: org, keyId: key.id, model: "m", amount: 7, instance: "i" });
        expect(await bank.settle("w1", { promptTokens: 1, completionTokens: 1, cost: 5, outcome: "ok" })).toBe(true);
        expect(await bank.balance(org)).toEqual({ available: MAX_ISSUED - 5, held: 0 });
        const audit = await bank.audit();
        expect(audit.problems).toEqual([]);
      } finally {
        await bank.close();
        await dropBank();
      }
    });

    it("does not look for an earlier hold of a fresh request id, and stays idempotent without it", async () => {
      const org = await store.ensureOrg("fresh");
      await store.grant("fresh", 10_000, "f-1");
      const { row: key } = await store.createKey({ org: "fresh", name: "k" });
      const base = { orgId: org, keyId: key.id, model: "m", instance: "i1", amount: 1_000 };
      // On SQLite the lookup is one prepared statement: a fresh id never runs it, any other reserve does.
      const ledger = store["ledger"];
      const lookups =
        ledger instanceof SqliteLedger ? vi.spyOn(ledger.writer["statements"].existing, "get") : undefined;
      expect((await store.reserve({ ...base, requestId: "f1" }, { fresh: true })).amount).toBe(1_000);
      expect(lookups?.mock.calls.length ?? 0).toBe(0);
      expect(await store.settle("f1", { promptTokens: 1, completionTokens: 1, cost: 100, outcome: "ok" })).toBe(true);
      // (Reading the balance writes what the server decided in memory: the retry below finds the settled row in the
      // tables.)
      expect(await store.balance(org)).toEqual({ available: 9_900, held: 0 });
      // A retry of a settled id (not fresh) takes nothing more.
      expect((await store.reserve({ ...base, requestId: "f1" })).amount).toBe(1_000);
      if (lookups) expect(lookups.mock.calls.length).toBeGreaterThan(0);
      lookups?.mockRestore();
      expect(await store.balance(org)).toEqual({ available: 9_900, held: 0 });
      expect((await store.audit()).problems).toEqual([]);
    });

    it("audits one consistent state while requests settle (its own audit, and another connection's)", async () => {
      const { store: busy, url, drop: dropBusy } = await freshStore(kind, "audit-load");
      const other = await Store.open(url);
      try {
        const org = await busy.ensureOrg("busy");
        await busy.grant("busy", 100_000_000, "b-1");
        const { row: key } = await busy.createKey({ org: "busy", name: "k" });
        let stop = false;
        let settled = 0;
        const load = Array.from({ length: 4 }, async (_, lane) => {
          for (let i = 0; !stop; i++) {
            const requestId = `audit-${lane}-${i}`;
            await busy.reserve(
              { requestId, orgId: org, keyId: key.id, model: "m", amount: 100, instance: "i" },
              { fresh: true },
            );
            await busy.settle(requestId, { promptTokens: 1, completionTokens: 1, cost: 7, outcome: "ok" });
            settled++;
            // Requests arrive from the network: each lane waits for the next turn of the event loop.
            await new Promise((resolve) => setImmediate(resolve));
          }
        });
        const audits: string[][] = [];
        const until = Date.now() + 1_500;
        while (Date.now() < until) {
          audits.push((await busy.audit()).problems, (await other.audit()).problems);
          await new Promise((resolve) => setTimeout(resolve, 3));
        }
        stop = true;
        await Promise.all(load);
        expect(settled).toBeGreaterThan(100);
        expect(audits.length).toBeGreaterThan(20);
        expect(audits.flat()).toEqual([]);
      } finally {
        await other.close();
        await busy.close();
        await dropBusy();
      }
    }, 30_000);

    it("says whether its ledger can write (what /health reports): yes while it can, no once its database is gone", async () => {
      expect(await store.ledgerAvailable()).toBe(true);
      if (kind !== "postgres") return;
      const { store: doomed, drop: dropDoomed } = await freshStore(kind, "health");
      // Used, then its pool ended (Kysely starts a pool on first use: ending one never used leaves the next query a
      // fresh start).
      await doomed.balance("org_none");
      await doomed.db.destroy();
      expect(await doomed.ledgerAvailable(500)).toBe(false);
      await dropDoomed();
    });
  });
}
