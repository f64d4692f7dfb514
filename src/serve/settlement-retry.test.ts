import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { scratchFolder } from "../../test/fixtures.ts";
import { freshStore } from "../../test/stores.ts";
import { ownerTag } from "../core/process-owner.ts";
import { SILENT_LOGGER } from "../core/logger.ts";
import { SettlementRetry, WITHHELD } from "./settlement-retry.ts";
import type { SettleUsage } from "./store/ledger.ts";

const usage = (cost: number): SettleUsage => ({ promptTokens: 2, completionTokens: 3, cost, outcome: "ok" });
const line = (requestId: string, cost: number) => `${JSON.stringify({ requestId, usage: usage(cost) })}\n`;

describe("SettlementRetry's pending file", () => {
  const folder = scratchFolder("pending-settlements");
  afterEach(() => rmSync(folder, { recursive: true, force: true }));

  it("takes over a dead server's settlements (a torn last line dropped), keeps what is pending on disk, and no file once all have landed", async () => {
    const fresh = await freshStore("sqlite", "pending_file");
    try {
      const { key } = await fresh.store.createKey({ org: "p", name: "k" });
      await fresh.store.grant("p", 1_000_000, "g");
      const org = (await fresh.store.orgByName("p"))!.id;
      const keyId = (await fresh.store.keyBySecret(key))!.id;
      for (const id of ["r1", "r2", "r3"])
        await fresh.store.reserve({
          requestId: id,
          orgId: org,
          keyId,
          model: "m",
          amount: 1_000,
          instance: "dead-server",
        });
      mkdirSync(folder, { recursive: true });
      // A server of another boot (so no longer running), its last line cut short by the crash.
      writeFileSync(
        join(folder, "deadboot.4242.77.abcdef.jsonl"),
        `${line("r1", 100)}${line("r2", 200)}{"requestId":"r3","us`,
      );

      const retry = new SettlementRetry(fresh.store, SILENT_LOGGER, folder);
      expect(await retry.resumeDead()).toEqual({ files: 1, settled: 2 });
      expect(retry.size).toBe(0);
      expect((await fresh.store.usage()).reduce((sum, row) => sum + row.cost, 0)).toBe(300);
      expect(readdirSync(folder)).toEqual([]);
      expect((await fresh.store.openHolds()).map((r) => r.request_id)).toEqual(["r3"]);

      // On disk before `add` returns; gone once it has landed.
      retry.add("r3", usage(300));
      const [own] = readdirSync(folder);
      expect(own!.startsWith(`${ownerTag()}.`)).toBe(true);
      expect(readFileSync(join(folder, own!), "utf8")).toBe(line("r3", 300));
      await retry.close();
      expect(readdirSync(folder)).toEqual([]);
      expect(await fresh.store.openHolds()).toEqual([]);
      expect((await fresh.store.audit()).problems).toEqual([]);
    } finally {
      await fresh.store.close();
      await fresh.drop();
    }
  });

  for (const kind of ["sqlite-journal", "postgres"] as const) {
    it(`on ${kind}: a withheld answer whose first settlement landed after all (its acknowledgement lost) is charged nothing in the end`, async () => {
      const fresh = await freshStore(kind, "withheld");
      try {
        const { key } = await fresh.store.createKey({ org: "w", name: "k" });
        await fresh.store.grant("w", 1_000_000, "g");
        const org = (await fresh.store.orgByName("w"))!.id;
        const keyId = (await fresh.store.keyBySecret(key))!.id;
        await fresh.store.reserve({
          requestId: "lost-ack",
          orgId: org,
          keyId,
          model: "m",
          amount: 5_000,
          instance: "i",
        });
        // The settlement commits, but the server never hears so: it withholds the answer ("nothing was charged") and
        // retries at no cost.
        await fresh.store.settle("lost-ack", usage(2_000));
        const retry = new SettlementRetry(fresh.store, SILENT_LOGGER);
        retry.add("lost-ack", { ...usage(0), outcome: WITHHELD });
        await retry.close();
        expect(retry.size).toBe(0);
        expect(await fresh.store.balance(org)).toEqual({ available: 1_000_000, held: 0 });
        expect(await fresh.store.usage()).toEqual([expect.objectContaining({ requests: 1, cost: 0 })]);
        expect((await fresh.store.audit()).problems).toEqual([]);
      } finally {
        await fresh.store.close();
        await fresh.drop();
      }
    });
  }

  it("leaves the file of a server that still runs", async () => {
    const fresh = await freshStore("sqlite", "pending_live");
    try {
      mkdirSync(folder, { recursive: true });
      // Another server of this (running) process.
      const live = `${ownerTag()}.other1.jsonl`;
      writeFileSync(join(folder, live), line("x", 1));
      const retry = new SettlementRetry(fresh.store, SILENT_LOGGER, folder);
      expect(await retry.resumeDead()).toEqual({ files: 0, settled: 0 });
      expect(readdirSync(folder)).toEqual([live]);
    } finally {
      await fresh.store.close();
      await fresh.drop();
    }
  });
});
