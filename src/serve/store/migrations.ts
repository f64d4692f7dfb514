import { Migrator, sql, type CreateTableBuilder, type Migration } from "kysely";
import { errorMessage, InputError } from "../../core/errors.ts";
import type { Db, StoreKind } from "./database.ts";

/**
 * The store's schema as Kysely migrations, applied in name order by Kysely's
 * `Migrator` (its own table records which ran; on PostgreSQL it also locks, so
 * replicas starting together migrate once). A release adds migrations, never
 * edits one that shipped: a store made by any earlier release opens in this one
 * with its data (tested with a store file of the previous schema).
 */
function migrations(kind: StoreKind): Record<string, Migration> {
  return {
    // The ledger as the release before the migrator made it (its tables only where missing, so that release's stores
    // pass).
    "0001_ledger": { up: (db) => createLedgerTables(db as Db, kind) },
    // That release kept its version in a `meta` table; the migrator's table is the version now.
    "0002_migrator_keeps_the_version": { up: (db) => db.schema.dropTable("meta").ifExists().execute() },
    // The dashboard's live usage reads the last hour of every key's requests every few seconds: without this index a
    // scan of the whole table each time (41 ms at 500,000 requests on SQLite, 0.7 ms with it).
    "0003_requests_by_time": {
      up: (db) => db.schema.createIndex("requests_time").ifNotExists().on("requests").column("created_at").execute(),
    },
  };
}

/**
 * Migrates the store to this release's schema; refuses one made by a newer release, or by the first (no upgrade from
 * it).
 */
export async function migrate(db: Db, kind: StoreKind): Promise<void> {
  await refuseUnknownStores(db, kind);
  // On PostgreSQL, in the schema the store lives in: Kysely looks for its tables in every schema unless told which.
  const schema =
    kind === "postgres"
      ? (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0]!.schema
      : undefined;
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations(kind) },
    migrationTableName: "schema_migrations",
    migrationLockTableName: "schema_migrations_lock",
    migrationTableSchema: schema,
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error === undefined) return;
  const failed = results?.find((result) => result.status === "Error")?.migrationName;
  // A migration this release does not know ran on the store: a newer release made it.
  if (/previously executed migration .* is missing|was found in its place/.test(errorMessage(error))) {
    throw new InputError(
      `this store was migrated by a newer Avocado (${errorMessage(error)}); open it with that release or a later one`,
      { cause: error },
    );
  }
  throw new InputError(
    `the store's schema could not be migrated${failed ? ` (migration ${failed})` : ""}: ${errorMessage(error)}; nothing of that migration was kept`,
    { cause: error },
  );
}

/**
 * The first release's stores (a `reservations` table, no version) have no upgrade path; a `meta` version other
 * than 2 is no store this code knows.
 */
async function refuseUnknownStores(db: Db, kind: StoreKind): Promise<void> {
  const exists = async (table: string) =>
    kind === "sqlite"
      ? (await sql<{ n: number }>`select count(*) as n from sqlite_master where name = ${table}`.execute(db)).rows[0]!
          .n > 0
      : (await sql<{ t: string | null }>`select to_regclass(${table})::text as t`.execute(db)).rows[0]!.t !== null;
  if (await exists("reservations")) {
    throw new InputError(
      "this store was made by the first Avocado (schema version 1), which has no upgrade path: export its usage (avocado billing usage) with that release and start a new store",
    );
  }
  if (!(await exists("meta"))) return;
  const version = (await sql<{ value: string }>`select value from meta where name = 'schema_version'`.execute(db))
    .rows[0]?.value;
  if (version !== "2")
    throw new InputError(
      `this store says it is schema version ${version ?? "(none)"}, which no Avocado made; it was left as it is`,
    );
}

async function createLedgerTables(db: Db, kind: StoreKind): Promise<void> {
  await db.schema
    .createTable("orgs")
    .ifNotExists()
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("api_keys")
    .ifNotExists()
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("org_id", "text", (c) => c.notNull().references("orgs.id"))
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("prefix", "text", (c) => c.notNull())
    .addColumn("hash", "text", (c) => c.notNull().unique())
    .addColumn("scopes", "text")
    .addColumn("plan", "text", (c) => c.notNull())
    .addColumn("rpm", "integer")
    .addColumn("tpm", "integer")
    .addColumn("concurrency", "integer")
    .addColumn("expires_at", "bigint")
    .addColumn("revoked_at", "bigint")
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("rotated_from", "text")
    .execute();
  // SQLite: clustered on the key (no rowid), so a time-ordered id appends to one hot page.
  const clustered = (builder: CreateTableBuilder<string>) =>
    kind === "sqlite" ? builder.modifyEnd(sql`without rowid`) : builder;
  await clustered(
    db.schema
      .createTable("balances")
      .ifNotExists()
      .addColumn("account", "text", (c) => c.primaryKey())
      .addColumn("org_id", "text")
      .addColumn("amount", "bigint", (c) => c.notNull())
      .addColumn("held", "bigint", (c) => c.notNull().defaultTo(0)),
  ).execute();
  await clustered(
    db.schema
      .createTable("ledger_transactions")
      .ifNotExists()
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("kind", "text", (c) => c.notNull())
      .addColumn("org_id", "text")
      .addColumn("request_id", "text")
      .addColumn("memo", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull()),
  ).execute();
  await clustered(
    db.schema
      .createTable("ledger_entries")
      .ifNotExists()
      .addColumn("transaction_id", "text", (c) => c.notNull().references("ledger_transactions.id"))
      .addColumn("account", "text", (c) => c.notNull())
      .addColumn("amount", "bigint", (c) => c.notNull())
      .addPrimaryKeyConstraint("ledger_entries_pk", ["transaction_id", "account"]),
  ).execute();
  await clustered(
    db.schema
      .createTable("holds")
      .ifNotExists()
      .addColumn("request_id", "text", (c) => c.primaryKey())
      .addColumn("org_id", "text", (c) => c.notNull())
      .addColumn("key_id", "text", (c) => c.notNull())
      .addColumn("model", "text", (c) => c.notNull())
      .addColumn("amount", "bigint", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("instance", "text", (c) => c.notNull()),
  ).execute();
  await clustered(
    db.schema
      .createTable("requests")
      .ifNotExists()
      .addColumn("request_id", "text", (c) => c.primaryKey())
      .addColumn("org_id", "text", (c) => c.notNull())
      .addColumn("key_id", "text", (c) => c.notNull())
      .addColumn("model", "text", (c) => c.notNull())
      .addColumn("held", "bigint", (c) => c.notNull())
      .addColumn("charged", "bigint", (c) => c.notNull())
      .addColumn("prompt_tokens", "integer", (c) => c.notNull())
      .addColumn("completion_tokens", "integer", (c) => c.notNull())
      .addColumn("outcome", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("settled_at", "bigint", (c) => c.notNull())
      .addColumn("day", "text", (c) => c.notNull())
      .addColumn("prompt_simhash", "text")
      .addColumn("logprobs", "integer", (c) => c.notNull().defaultTo(-1))
      .addColumn("temperature", kind === "postgres" ? "double precision" : "real"),
  ).execute();
  // Per key in time: extraction signals, and (through the org's keys) usage and invoices.
  await db.schema
    .createIndex("requests_key_time")
    .ifNotExists()
    .on("requests")
    .columns(["key_id", "created_at"])
    .execute();
}
