import SQLite from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type Migration } from "kysely";
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import pg from "pg";
import type { TeacherConfig } from "../core/config/teacher-schema.ts";
import { errorMessage, InputError } from "../core/errors.ts";
import { sha256, sha256File, stableStringify } from "../core/hash.ts";
import type { ScoreRequest, ScoreResult, Teacher, TeacherRequest, TeacherResponse } from "../teachers/teacher.ts";

interface CacheTables {
  responses: { key: string; model: string; response: string; created_at: number };
}

const MIGRATIONS: Record<string, Migration> = {
  "0001_responses": {
    up: async (db) => {
      await db.schema
        .createTable("responses")
        .ifNotExists()
        .addColumn("key", "text", (c) => c.primaryKey())
        .addColumn("model", "text", (c) => c.notNull())
        .addColumn("response", "text", (c) => c.notNull())
        .addColumn("created_at", "bigint", (c) => c.notNull())
        .execute();
    },
  },
};

/**
 * Model answers by content: the key is a hash of the model's identity and everything in the request that shapes the
 * answer, the value the whole response. An eval (and the distillation engine) asks the cache first, so a killed or
 * repeated run makes no call twice. SQLite by default (`sqlite:<path>`), PostgreSQL when several machines share it.
 */
export class ResponseCache {
  hits = 0;
  misses = 0;

  /**
   * SQLite's one-row statements, prepared once: Kysely compiles each query anew, which on a tiny model's call was a few
   * percent of the call (bench/distill's orchestration overhead).
   */
  private statements?: { get: SQLite.Statement<[string], { response: string }>; put: SQLite.Statement<unknown[]> };

  private constructor(private readonly db: Kysely<CacheTables>) {}

  static async open(url: string): Promise<ResponseCache> {
    let db: Kysely<CacheTables>;
    let sqlite: SQLite.Database | undefined;
    if (url.startsWith("sqlite:")) {
      const path = url.slice("sqlite:".length);
      mkdirSync(dirname(path), { recursive: true });
      const database = new SQLite(path);
      database.pragma("journal_mode = WAL");
      // A commit survives the process's death (kill -9) once in the WAL; only a power cut may lose the last few, and a
      // lost answer is asked again. FULL would sync the disk on every answer (measured: 10 % of a tiny model's call).
      database.pragma("synchronous = NORMAL");
      database.pragma("busy_timeout = 5000");
      db = new Kysely<CacheTables>({ dialect: new SqliteDialect({ database }) });
      sqlite = database;
    } else if (/^postgres(ql)?:\/\//.test(url)) {
      db = new Kysely<CacheTables>({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 4 }) }),
      });
    } else {
      throw new InputError(`cache '${url}': use sqlite:<path> or postgres://user@host/db`);
    }
    const schema = url.startsWith("sqlite:")
      ? undefined
      : (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0]!.schema;
    const { error } = await new Migrator({
      db,
      provider: { getMigrations: async () => MIGRATIONS },
      migrationTableName: "cache_migrations",
      migrationLockTableName: "cache_migrations_lock",
      migrationTableSchema: schema,
    }).migrateToLatest();
    if (error) {
      await db.destroy();
      throw new InputError(`the response cache at ${url} cannot be opened (${errorMessage(error)})`);
    }
    const cache = new ResponseCache(db);
    if (sqlite) {
      cache.statements = {
        get: sqlite.prepare<[string], { response: string }>("select response from responses where key = ?"),
        put: sqlite.prepare(
          "insert into responses (key, model, response, created_at) values (?, ?, ?, ?) on conflict (key) do nothing",
        ),
      };
    }
    return cache;
  }

  /** Many answers at once (a query per 500 keys): what a rebuild from a warm cache spends its time on. */
  async getMany(keys: readonly string[]): Promise<Map<string, TeacherResponse>> {
    const found = new Map<string, TeacherResponse>();
    for (let i = 0; i < keys.length; i += 500) {
      const rows = await this.db
        .selectFrom("responses")
        .select(["key", "response"])
        .where("key", "in", keys.slice(i, i + 500))
        .execute();
      for (const row of rows) found.set(row.key, JSON.parse(row.response) as TeacherResponse);
    }
    return found;
  }

  async get(key: string): Promise<TeacherResponse | undefined> {
    if (this.statements) {
      const found = this.statements.get.get(key);
      return found ? (JSON.parse(found.response) as TeacherResponse) : undefined;
    }
    const row = await this.db.selectFrom("responses").select("response").where("key", "=", key).executeTakeFirst();
    if (!row) return undefined;
    return JSON.parse(row.response) as TeacherResponse;
  }

  async put(key: string, model: string, response: TeacherResponse | ScoreResult): Promise<void> {
    if (this.statements) {
      this.statements.put.run(key, model, JSON.stringify(response), Date.now());
      return;
    }
    await this.db
      .insertInto("responses")
      .values({ key, model, response: JSON.stringify(response), created_at: Date.now() })
      .onConflict((c) => c.column("key").doNothing())
      .execute();
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}

const fileHashes = new Map<string, string>();

/**
 * A model's identity for the cache: what in its configuration shapes its answers (not its name, where its file lies,
 * its limits or its price), and for a local file the sha256 of its content, so a retrained model at the same path is
 * another model and the same file copied elsewhere the same one. Hashed once per process and file version (path, size,
 * modification time). A server's model is trusted to stay what its name says: put its revision in the name.
 */
export async function modelIdentity(config: TeacherConfig): Promise<string> {
  let file: string | null = null;
  if (config.transport === "embedded") {
    const stat = statSync(config.path);
    const version = `${config.path}\u0000${stat.size}\u0000${stat.mtimeMs}`;
    file = fileHashes.get(version) ?? (await sha256File(config.path));
    fileHashes.set(version, file);
  }
  const { name: _name, limits: _limits, price: _price, licence: _licence, ...shaping } = config;
  const answers = { ...shaping, ...(config.transport === "embedded" ? { path: undefined, sequences: undefined } : {}) };
  return sha256(stableStringify({ config: answers, file }));
}

/** The cache key of one request to one model: what shapes the answer, not how long one may wait for it. */
export function requestKey(identity: string, request: TeacherRequest): string {
  const { messages, maxTokens, temperature, topP, seed, stop, topLogprobs, thinking, reasoningEffort } = request;
  return sha256(
    stableStringify({
      identity,
      messages,
      maxTokens: maxTokens ?? null,
      temperature: temperature ?? null,
      topP: topP ?? null,
      seed: seed ?? null,
      stop: stop ?? null,
      topLogprobs: topLogprobs ?? null,
      thinking: thinking ?? null,
      reasoningEffort: reasoningEffort ?? null,
    }),
  );
}

/** The cache key of one teacher-forced scoring (multiple choice): the same model, prompt and continuation. */
export function scoreKey(identity: string, request: ScoreRequest): string {
  const { messages, continuation, topLogprobs, thinking, reasoningEffort } = request;
  return sha256(
    stableStringify({
      kind: "score",
      identity,
      messages,
      continuation,
      topLogprobs: topLogprobs ?? null,
      thinking: thinking ?? null,
      reasoningEffort: reasoningEffort ?? null,
    }),
  );
}

/** A teacher through the cache, which can load the answers to many requests in one go before they are asked. */
export interface CachedTeacher extends Teacher {
  prefetch(requests: readonly TeacherRequest[]): Promise<void>;
}

/**
 * A teacher whose answers and scorings go through the cache (only successes are kept: a failure is asked again next
 * time).
 */
export function cachedTeacher(teacher: Teacher, identity: string, cache: ResponseCache): CachedTeacher {
  // Answers loaded ahead by `prefetch`, each used once; the keys of the requests it saw, not hashed twice.
  const ahead = new Map<string, TeacherResponse>();
  const keys = new WeakMap<TeacherRequest, string>();
  const keyOf = (request: TeacherRequest) => keys.get(request) ?? requestKey(identity, request);
  return Object.assign(Object.create(teacher) as Teacher, {
    prefetch: async (requests: readonly TeacherRequest[]) => {
      const wanted = requests.map((request) => {
        const key = requestKey(identity, request);
        keys.set(request, key);
        return key;
      });
      for (const [key, response] of await cache.getMany(wanted)) ahead.set(key, response);
    },
    score: async (request: ScoreRequest): Promise<ScoreResult> => {
      const key = scoreKey(identity, request);
      const cached = await cache.get(key);
      if (cached) {
        cache.hits++;
        return cached as unknown as ScoreResult;
      }
      cache.misses++;
      const result = await teacher.score(request);
      await cache.put(key, teacher.name, result);
      return result;
    },
    generate: async (request: TeacherRequest): Promise<TeacherResponse> => {
      const key = keyOf(request);
      const loaded = ahead.get(key);
      if (loaded) ahead.delete(key);
      const cached = loaded ?? (await cache.get(key));
      if (cached) {
        cache.hits++;
        return cached;
      }
      cache.misses++;
      const response = await teacher.generate(request);
      await cache.put(key, teacher.name, response);
      return response;
    },
  });
}
