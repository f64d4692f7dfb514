import SQLite from "better-sqlite3";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { sql } from "kysely";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { POSTGRES_URL } from "../../../test/stores.ts";
import { PROJECT_ROOT } from "../../core/paths.ts";
import { Store } from "./store.ts";

/** The previous release's store (schema version 2), made through that release's Store: see its header. */
const V2 = readFileSync(join(PROJECT_ROOT, "test", "data", "store-v2.sql"), "utf8");
const V2_KEY = "avo_XhFxM2k-cmdc9q_JL0Vl6W6GDmhhIgiK";
const statements = (text: string) =>
  text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("--"))
    .map((line) => line.replace(/;$/, ""));

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups) await cleanup();
});

/** An empty database of each kind with these statements run in it, and its store URL. */
async function databaseWith(kind: "sqlite" | "postgres", sql: string[]): Promise<string> {
  const name = `migrations_${process.pid}_${Date.now()}_${cleanups.length}`;
  if (kind === "sqlite") {
    const folder = join(PROJECT_ROOT, ".avocado", "test-scratch", name);
    mkdirSync(folder, { recursive: true });
    const db = new SQLite(join(folder, "avocado.db"));
    for (const statement of sql) db.exec(statement);
    db.close();
    cleanups.push(async () => rmSync(folder, { recursive: true, force: true }));
    return `sqlite:${join(folder, "avocado.db")}`;
  }
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query(`create schema ${name}`);
  await client.query(`set search_path = ${name}`);
  // The same rows on PostgreSQL; the previous release made the same tables there, without SQLite's clustering.
  for (const statement of sql) await client.query(statement.replace(/ without rowid$/, ""));
  await client.end();
  cleanups.push(async () => {
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    await admin.query(`drop schema ${name} cascade`);
    await admin.end();
  });
  return `${POSTGRES_URL}?options=${encodeURIComponent(`-c search_path=${name}`)}`;
}

describe.each(["sqlite", "postgres"] as const)("a store of the previous release, opened by this one (%s)", (kind) => {
  it("is migrated with every row intact: keys, balances, holds in flight, usage, and the audit", async () => {
    const store = await Store.open(await databaseWith(kind, statements(V2)));
    try {
      const acme = (await store.orgByName("acme"))!;
      expect(await store.balance(acme.id)).toEqual({ available: 4_949_907, held: 50_000 });
      expect((await store.keyBySecret(V2_KEY))?.rpm).toBe(60);
      expect((await store.listKeys("acme")).map((key) => [key.name, key.revoked_at])).toEqual([
        ["prod", null],
        ["old", 1_700_000_000_000],
      ]);
      expect(
        (await store.usage()).map((row) => [row.requests, row.prompt_tokens, row.completion_tokens, row.cost]),
      ).toEqual([[3, 33, 63, 93]]);
      expect((await store.openHolds()).map((hold) => hold.request_id)).toEqual(["req-open"]);
      expect(await store.audit()).toMatchObject({ ok: true, entries: 10 });
      // The request in flight when the old server stopped settles in the new one.
      expect(await store.settle("req-open", { promptTokens: 5, completionTokens: 5, cost: 10, outcome: "ok" })).toBe(
        true,
      );
      expect(await store.balance(acme.id)).toEqual({ available: 4_999_897, held: 0 });
      expect((await store.audit()).problems).toEqual([]);
      const ran = await sql<{ name: string }>`select name from schema_migrations order by name`.execute(store.db);
      expect(ran.rows.map((row) => row.name)).toEqual([
        "0001_ledger",
        "0002_migrator_keeps_the_version",
        "0003_requests_by_time",
      ]);
    } finally {
      await store.close();
    }
  });

  it("refuses a store a newer release migrated, and one of the first release, leaving both as they are", async () => {
    const newer = await databaseWith(kind, [
      ...statements(V2),
      "create table schema_migrations (name varchar(255) primary key, timestamp varchar(255) not null)",
      "insert into schema_migrations values ('0001_ledger', 'x'), ('0002_migrator_keeps_the_version', 'x'), ('0099_from_the_future', 'x')",
    ]);
    await expect(Store.open(newer)).rejects.toThrow(/migrated by a newer Avocado/);
    const first = await databaseWith(kind, ["create table reservations (id text primary key)"]);
    await expect(Store.open(first)).rejects.toThrow(/first Avocado \(schema version 1\), which has no upgrade path/);
    const unknown = await databaseWith(kind, [
      "create table meta (name text primary key, value text not null)",
      "insert into meta values ('schema_version', '7')",
    ]);
    await expect(Store.open(unknown)).rejects.toThrow(/schema version 7, which no Avocado made/);
  });
});
