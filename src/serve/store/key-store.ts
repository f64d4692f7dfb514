import { hash, randomBytes } from "node:crypto";
import { InputError } from "../../core/errors.ts";
import { newId } from "../../core/ids.ts";
import type { Database, Db } from "./database.ts";

export type ApiKeyRow = Database["api_keys"];

export interface KeyLimits {
  rpm?: number | null;
  tpm?: number | null;
  concurrency?: number | null;
}

export interface NewKey {
  org: string;
  name: string;
  scopes?: string[] | null;
  plan?: string;
  limits?: KeyLimits;
  expiresAt?: number | null;
}

/** How a store reaches its tables: `Ledger.reads` and `Ledger.writes`. */
export interface TableAccess {
  reads(): Db;
  writes(): Db;
}

/** What a key is stored and looked up as (keys are 192-bit random: no slow hash needed). */
export const hashKey = (key: string): string => hash("sha256", key, "hex");

/**
 * Orgs and API keys: keys are 192-bit random secrets, shown once and stored as
 * sha256. A rotation links the new key to the one it replaces (`rotated_from`).
 */
export class KeyStore {
  constructor(private readonly tables: TableAccess) {}

  /** The tables, read (for tests and tools too): every ledger operation decided so far is in them. */
  get db(): Db {
    return this.tables.reads();
  }

  async ensureOrg(name: string): Promise<string> {
    const existing = await this.db.selectFrom("orgs").select("id").where("name", "=", name).executeTakeFirst();
    if (existing) return existing.id;
    const id = newId("org");
    await this.tables
      .writes()
      .insertInto("orgs")
      .values({ id, name, created_at: Date.now() })
      .onConflict((c) => c.column("name").doNothing())
      .execute();
    return (await this.db.selectFrom("orgs").select("id").where("name", "=", name).executeTakeFirstOrThrow()).id;
  }

  async orgByName(name: string): Promise<{ id: string; name: string } | undefined> {
    return this.db.selectFrom("orgs").select(["id", "name"]).where("name", "=", name).executeTakeFirst();
  }

  /** Creates a key; the secret is returned once and only its hash is stored. */
  async createKey(spec: NewKey, rotatedFrom: string | null = null): Promise<{ key: string; row: ApiKeyRow }> {
    // A key that could never be used is a mistake, not a key (a rotation of an expired key included).
    if (spec.expiresAt != null && spec.expiresAt <= Date.now())
      throw new InputError(`expiresAt ${new Date(spec.expiresAt).toISOString()} is in the past`);
    const orgId = await this.ensureOrg(spec.org);
    const secret = randomBytes(24).toString("base64url");
    const key = `avo_${secret}`;
    const row: ApiKeyRow = {
      id: newId("key"),
      org_id: orgId,
      name: spec.name,
      prefix: key.slice(0, 12),
      hash: hashKey(key),
      scopes: spec.scopes ? JSON.stringify(spec.scopes) : null,
      plan: spec.plan ?? "default",
      rpm: spec.limits?.rpm ?? null,
      tpm: spec.limits?.tpm ?? null,
      concurrency: spec.limits?.concurrency ?? null,
      expires_at: spec.expiresAt ?? null,
      revoked_at: null,
      created_at: Date.now(),
      rotated_from: rotatedFrom,
    };
    await this.tables.writes().insertInto("api_keys").values(row).execute();
    return { key, row };
  }

  async keyBySecret(key: string): Promise<ApiKeyRow | undefined> {
    return this.db.selectFrom("api_keys").selectAll().where("hash", "=", hashKey(key)).executeTakeFirst();
  }

  async keyById(id: string): Promise<ApiKeyRow | undefined> {
    return this.db
      .selectFrom("api_keys")
      .selectAll()
      .where((w) => w.or([w("id", "=", id), w("prefix", "=", id)]))
      .executeTakeFirst();
  }

  /**
   * The first key of a key's rotations: the identity its limits are kept under,
   * so that a key and its successor (both valid in a grace period) share them.
   */
  async rotationRoot(row: Pick<ApiKeyRow, "id" | "rotated_from">): Promise<string> {
    let id = row.id;
    let from = row.rotated_from;
    // Bounded: a chain is made one rotation at a time, but a store edited by hand could hold a loop.
    for (let hops = 0; from !== null && hops < 1_000; hops++) {
      const previous = await this.db
        .selectFrom("api_keys")
        .select(["id", "rotated_from"])
        .where("id", "=", from)
        .executeTakeFirst();
      if (!previous) break;
      id = previous.id;
      from = previous.rotated_from;
    }
    return id;
  }

  async listKeys(orgName?: string): Promise<(ApiKeyRow & { org: string })[]> {
    let query = this.db
      .selectFrom("api_keys")
      .innerJoin("orgs", "orgs.id", "api_keys.org_id")
      .selectAll("api_keys")
      .select("orgs.name as org");
    if (orgName) query = query.where("orgs.name", "=", orgName);
    return query.orderBy("api_keys.created_at").execute();
  }

  async revokeKey(id: string, at = Date.now()): Promise<ApiKeyRow> {
    const row = await this.keyById(id);
    if (!row) throw new InputError(`no key '${id}'`);
    if (row.revoked_at === null)
      await this.tables.writes().updateTable("api_keys").set({ revoked_at: at }).where("id", "=", row.id).execute();
    return { ...row, revoked_at: row.revoked_at ?? at };
  }

  /** A new key with the same org, scopes and limits; the old one stops working after `graceMs`. */
  async rotateKey(id: string, graceMs = 0): Promise<{ key: string; row: ApiKeyRow }> {
    const old = await this.keyById(id);
    if (!old) throw new InputError(`no key '${id}'`);
    if (old.revoked_at !== null) throw new InputError(`key '${old.prefix}…' is revoked`);
    const org = await this.db.selectFrom("orgs").select("name").where("id", "=", old.org_id).executeTakeFirstOrThrow();
    const created = await this.createKey(
      {
        org: org.name,
        name: old.name,
        scopes: old.scopes ? (JSON.parse(old.scopes) as string[]) : null,
        plan: old.plan,
        limits: old,
        expiresAt: old.expires_at,
      },
      old.id,
    );
    await this.revokeKey(old.id, Date.now() + graceMs);
    return created;
  }
}
