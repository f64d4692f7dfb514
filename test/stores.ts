import pg from "pg";
import { Store } from "../src/serve/store/store.ts";

/** PostgreSQL of the machine (started by .ci/run): 127.0.0.1:5432, trust auth, database `test`. */
export const POSTGRES_URL = process.env.AVOCADO_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";

/**
 * A fresh, empty store of each kind: SQLite in a scratch file (with or without
 * the ledger's journal, as a server runs it), PostgreSQL in a schema of its own
 * (dropped by `drop`), so suites never see each other's rows.
 */
export async function freshStore(
  kind: "sqlite" | "sqlite-journal" | "postgres",
  label: string,
): Promise<{ store: Store; url: string; drop: () => Promise<void> }> {
  const name = `${label}_${process.pid}_${Date.now()}`.replace(/[^a-z0-9_]/gi, "_").toLowerCase();
  if (kind === "sqlite" || kind === "sqlite-journal") {
    const { mkdirSync, rmSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { PROJECT_ROOT } = await import("../src/core/paths.ts");
    const folder = join(PROJECT_ROOT, ".avocado", "test-scratch", name);
    mkdirSync(folder, { recursive: true });
    const url = `sqlite:${join(folder, "avocado.db")}`;
    const store = await Store.open(url, { journal: kind === "sqlite-journal" });
    return { store, url, drop: async () => rmSync(folder, { recursive: true, force: true }) };
  }
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  await admin.query(`create schema ${name}`);
  await admin.end();
  const url = `${POSTGRES_URL}?options=${encodeURIComponent(`-c search_path=${name}`)}`;
  const store = await Store.open(url);
  return {
    store,
    url,
    drop: async () => {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`drop schema ${name} cascade`);
      await client.end();
    },
  };
}
