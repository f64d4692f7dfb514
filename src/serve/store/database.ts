import SQLite from "better-sqlite3";
import { Kysely, PostgresDialect, SqliteDialect, sql } from "kysely";
import pg from "pg";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { FileError, InputError, errorMessage } from "../../core/errors.ts";
import { SILENT_LOGGER, type Logger } from "../../core/logger.ts";
import { NETWORK_ERRNO } from "../../core/network-errors.ts";
import { withoutPassword } from "../../core/urls.ts";
import { WalCheckpointer } from "./checkpointer.ts";
import { migrate } from "./migrations.ts";

/**
 * The tables of the paid API. Money is integer micro-units (bigint), time is
 * epoch milliseconds. The same schema and queries run on SQLite (embedded
 * default) and PostgreSQL (replicas), through Kysely.
 */
export interface Database {
  orgs: { id: string; name: string; created_at: number };
  api_keys: {
    id: string;
    org_id: string;
    name: string;
    /** Shown to people: "avo_" + 8 characters. */
    prefix: string;
    /** sha256 of the whole key (keys are 192-bit random: no slow hash needed). */
    hash: string;
    /** JSON array of model names, or null for every model. */
    scopes: string | null;
    plan: string;
    rpm: number | null;
    tpm: number | null;
    concurrency: number | null;
    expires_at: number | null;
    revoked_at: number | null;
    created_at: number;
    /** The key this one replaced (rotation). */
    rotated_from: string | null;
  };
  /**
   * Every ledger account: `amount` is kept equal to the sum of its entries.
   * `held` is the part of an org's credit authorized for requests in flight
   * (the sum of its open requests' holds): a hold is an authorization, not a
   * movement of money, so it has no entries. Available = amount − held ≥ 0.
   */
  balances: { account: string; org_id: string | null; amount: number; held: number };
  /** A balanced movement of money; `id` is its idempotency key (`grant:<key>`, `charge:<request id>`). */
  ledger_transactions: {
    id: string;
    kind: string;
    org_id: string | null;
    request_id: string | null;
    memo: string;
    created_at: number;
  };
  /** The legs of a transaction: they sum to zero; one per account. */
  ledger_entries: { transaction_id: string; account: string; amount: number };
  /**
   * The holds of requests in flight: written before a request runs, deleted
   * when it settles (or is recovered). Small and hot: a hold costs one page.
   */
  holds: {
    request_id: string;
    org_id: string;
    key_id: string;
    model: string;
    /** What was authorized (the worst case, or the credit left). */
    amount: number;
    created_at: number;
    /** The server instance that took it (recovery releases a dead instance's holds). */
    instance: string;
  };
  /** One row per settled request, written once, with its charge, in the settlement's transaction. */
  requests: {
    request_id: string;
    org_id: string;
    key_id: string;
    model: string;
    held: number;
    charged: number;
    prompt_tokens: number;
    completion_tokens: number;
    outcome: string;
    created_at: number;
    settled_at: number;
    /** UTC day of created_at (usage and invoices group by it). */
    day: string;
    /**
     * Extraction signals: a 64-bit SimHash of the prompt (hex), the top_logprobs asked (-1 = none), the temperature.
     */
    prompt_simhash: string | null;
    logprobs: number;
    temperature: number | null;
  };
}

export type Db = Kysely<Database>;

/** int8 as a JS number: micro-units and milliseconds stay far below 2^53. */
const BIGINT_OID = 20;

export type StoreKind = "sqlite" | "postgres";

/** A PostgreSQL client this long without a connection fails (an unreachable database must not hang requests). */
const PG_CONNECT_TIMEOUT_MS = 5_000;

/**
 * PostgreSQL's errors for a database that cannot be used right now: connection exception, insufficient resources,
 * operator intervention, and a statement or lock wait cancelled by the statement timeout (57014, 55P03).
 */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P|57014|55P03)/;

/**
 * Whether an error means the store cannot be reached or used right now (so the
 * API answers 503 and the request may be retried), rather than a bug or bad input:
 * PostgreSQL unreachable or refusing work, or a SQLite ledger that cannot write.
 */
export function storeUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  // The SQLite ledger's own: its tables failed and could not be rebuilt from its journal (LedgerUnavailableError).
  if (code === "ledger_unavailable") return true;
  if (typeof code === "string" && (NETWORK_ERRNO.has(code) || (code.length === 5 && UNAVAILABLE_SQLSTATE.test(code))))
    return true;
  // node-postgres's own words for a connection that broke or never came.
  return (
    error instanceof Error &&
    /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout)/.test(
      error.message,
    )
  );
}

/**
 * A PostgreSQL pool: a connect timeout, TCP keep-alive, int8 as numbers, and a listener on every connection for
 * the database or the network closing it (a restart, a failover, an idle timeout), idle or in the middle of a
 * query: without one, node-postgres's 'error' event ends the process; the query in flight fails, and the pool
 * drops that connection and opens another when needed. With `statementTimeoutMs`, each statement, and each wait
 * for a lock, is cancelled by the server past it; and a query whose answer has not come a second after that (the
 * server never heard it: a network that drops packets without closing anything) fails on this side, and its
 * connection is closed rather than handed to the next request.
 */
function postgresDb(url: string, max: number, logger: Logger, statementTimeoutMs?: number): Db {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    keepAlive: true,
    ...(statementTimeoutMs
      ? {
          statement_timeout: statementTimeoutMs,
          lock_timeout: statementTimeoutMs,
          query_timeout: statementTimeoutMs + PG_ANSWER_MARGIN_MS,
        }
      : {}),
    types: {
      getTypeParser: ((oid: number, format?: "text" | "binary") =>
        oid === BIGINT_OID
          ? (value: string) => Number(value)
          : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
  pool.on("connect", (client) => {
    client.on("error", (error) => logger.log("warn", "store.connection_lost", { error: error.message }));
    if (statementTimeoutMs) closeOnUnansweredQuery(client);
  });
  // An idle connection's error reaches the pool too (already logged by the connection's own listener).
  pool.on("error", () => undefined);
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** How long past the server's statement timeout a query may go unanswered before the client gives up on it. */
const PG_ANSWER_MARGIN_MS = 1_000;

/**
 * node-postgres fails a query that outlives `query_timeout` ('Query read timeout') but keeps its connection,
 * whose next query would wait behind the lost one: the connection is closed, so the pool drops it.
 */
function closeOnUnansweredQuery(client: pg.PoolClient): void {
  const query = client.query;
  client.query = function (this: pg.PoolClient, ...args: unknown[]) {
    const result: unknown = Reflect.apply(query, this, args);
    if (result instanceof Promise) {
      result.catch((error: unknown) => {
        if (error instanceof Error && error.message === "Query read timeout") this.connection.stream.destroy();
      });
    }
    return result;
  } as typeof client.query;
}

/**
 * Opens `sqlite:<path>` (or `sqlite::memory:`) or `postgres://…`, and migrates its schema to this release's.
 * `statementTimeoutMs` (PostgreSQL; the server's): see `postgresDb`.
 */
export async function openDatabase(
  url: string,
  logger: Logger = SILENT_LOGGER,
  options: { statementTimeoutMs?: number } = {},
): Promise<{ db: Db; kind: StoreKind; sqlite?: SQLite.Database; checkpointer?: WalCheckpointer }> {
  let db: Db;
  let kind: StoreKind;
  let sqlite: SQLite.Database | undefined;
  let checkpointer: WalCheckpointer | undefined;
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length) || ":memory:";
    try {
      if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
      sqlite = new SQLite(path);
    } catch (error) {
      throw new FileError(path, `cannot be opened as the SQLite store (${errorMessage(error)})`, { cause: error });
    }
    sqlite.pragma("journal_mode = WAL");
    // WAL + NORMAL: a commit survives the process being killed (kill -9); only an OS crash or power loss can drop the
    // last commits.
    sqlite.pragma("synchronous = NORMAL");
    sqlite.pragma("busy_timeout = 5000");
    if (path !== ":memory:") {
      sqlite.pragma("wal_autocheckpoint = 0");
      // A WAL that a burst grew is cut back to this when it restarts.
      sqlite.pragma(`journal_size_limit = ${32 << 20}`);
      checkpointer = new WalCheckpointer(path);
    }
    const database = sqlite;
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database }) });
    kind = "sqlite";
  } else if (/^postgres(ql)?:\/\//.test(url)) {
    // Replicas starting together: one migrates at a time, on a connection of its own (no statement timeout: waiting
    // for another replica's migration is expected).
    const migrator = postgresDb(url, 1, logger);
    try {
      await migrator.connection().execute(async (connection) => {
        await sql`select pg_advisory_lock(724211)`.execute(connection);
        try {
          await migrate(connection, "postgres");
        } finally {
          await sql`select pg_advisory_unlock(724211)`.execute(connection);
        }
      });
    } catch (error) {
      if (storeUnavailable(error))
        throw new InputError(`cannot reach PostgreSQL at ${withoutPassword(url)}: ${errorMessage(error)}`, {
          cause: error,
        });
      throw error;
    } finally {
      await migrator.destroy();
    }
    db = postgresDb(url, 10, logger, options.statementTimeoutMs);
    kind = "postgres";
  } else {
    throw new InputError(`store '${url}': use sqlite:<path> or postgres://user@host/db`);
  }
  if (kind === "sqlite") await migrate(db, kind);
  return { db, kind, sqlite, checkpointer };
}
