import { readdirSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterEach } from "vitest";
import { Store } from "../src/serve/store/store.ts";
import type { SqliteLedger } from "../src/serve/store/sqlite-ledger.ts";
import { freshStore } from "./stores.ts";

export const ledgerOf = (store: Store) => store["ledger"] as SqliteLedger;
export const writerOf = (store: Store) => ledgerOf(store).writer;
export const journals = (folder: string) => readdirSync(folder).filter((name) => name.endsWith(".journal"));
export const usage = (cost: number) => ({ promptTokens: 3, completionTokens: 4, cost, outcome: "ok" });

/**
 * kill -9, as far as the store can tell: the connection goes without a commit, and the journal's owner is no longer
 * running.
 */
export async function crash(store: Store, folder: string): Promise<string> {
  await ledgerOf(store)["checkpointer"]?.close();
  await ledgerOf(store)["db"].destroy();
  const [name] = journals(folder);
  // <db>-ledger.<boot>.<pid>.<start>.<random>.journal: a pid that does not run.
  const parts = name!.split(".");
  parts[parts.length - 4] = "999999999";
  const dead = parts.join(".");
  renameSync(join(folder, name!), join(folder, dead));
  return join(folder, dead);
}

/** Journaled SQLite stores for one suite, dropped after each test. Call inside a describe. */
export function journaledStores() {
  const drops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const drop of drops.splice(0)) await drop();
  });

  /** A store whose ledger batch stays open until a test commits it (or `commitMs` passes). */
  async function journaled(commitMs = 60_000): Promise<{ store: Store; url: string; folder: string }> {
    const { store: plain, url, drop } = await freshStore("sqlite", "journal");
    await plain.close();
    drops.push(drop);
    const store = await Store.open(url, { journal: { commitMs } });
    return { store, url, folder: dirname(url.slice("sqlite:".length)) };
  }

  /** A journaled store with an org ("acme"), a key, and credit granted ("g1"). */
  async function funded(credit: number) {
    const journaledStore = await journaled();
    const org = await journaledStore.store.ensureOrg("acme");
    const { row: key } = await journaledStore.store.createKey({ org: "acme", name: "k" });
    await journaledStore.store.grant("acme", credit, "g1");
    return { ...journaledStore, org, key, base: { orgId: org, keyId: key.id, model: "m", instance: "i" } };
  }

  return { journaled, funded };
}
