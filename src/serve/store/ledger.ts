import { AvocadoError, InputError } from "../../core/errors.ts";
import type { CompiledQuery } from "kysely";
import type { Db } from "./database.ts";

/** Not enough prepaid credit for a request's worst case (HTTP 402). */
export class InsufficientCreditError extends AvocadoError {
  constructor(
    readonly needed: number,
    readonly available: number,
  ) {
    super(
      "insufficient_credit",
      `insufficient credit: this request may cost up to ${needed} micro-units and ${available} are available`,
    );
  }
}

/**
 * The most credit the ledger ever issues, in total: 2^53 − 1 micro-units (about
 * nine billion currency units), the largest integer a JavaScript number holds
 * exactly. Every balance is bounded by what was issued, so with this ceiling
 * every amount the ledger reads back is exact.
 */
export const MAX_ISSUED = Number.MAX_SAFE_INTEGER;

/** A credit that would take the total issued past MAX_ISSUED: refused, nothing written. */
export class CreditCeilingError extends InputError {
  constructor(amount: number, issued: number) {
    super(
      `a credit of ${amount} micro-units is refused: the ledger has issued ${issued} and its total may not exceed ${MAX_ISSUED} (the largest exact amount)`,
    );
  }
}

/** Refuses a credit that would take the total issued (the issued account's balance, negated) past MAX_ISSUED. */
export function checkCeiling(issuedBalance: number, amount: number): void {
  if (amount > MAX_ISSUED + issuedBalance) throw new CreditCeilingError(amount, -issuedBalance);
}

export const accounts = {
  /**
   * An org's prepaid credit. Its `held` part is authorized for requests in flight; amount − held never goes below zero.
   */
  credit: (org: string) => `org:${org}:credit`,
  /** Where credit comes from (top-ups and grants): goes negative by what was issued. */
  issued: "system:issued",
  /** What was earned: settled charges. */
  revenue: "system:revenue",
};

/** One balanced movement of money: its entries sum to zero, one per account. `id` is its idempotency key. */
export interface LedgerMovement {
  id: string;
  kind: string;
  orgId: string | null;
  requestId: string | null;
  memo: string;
  entries: { account: string; amount: number }[];
}

export interface ReserveRequest {
  requestId: string;
  orgId: string;
  keyId: string;
  model: string;
  amount: number;
  /** With a minimum, hold what is available if that is at least this much (a partial hold). */
  minimum?: number;
  instance: string;
}

export interface ReserveOptions {
  /**
   * The caller sends nothing before its settlement, so on SQLite the hold may
   * commit with it (one commit per request instead of two).
   */
  lazy?: boolean;
  /**
   * The caller minted `requestId` for this request (the API's `newId`, 80
   * random bits) and reserves it once: no hold or settled request can have
   * it, so the store does not look for one (a read per request saved). A
   * retry of the same id must not say so: without `fresh`, a reserve of an id
   * already held or settled returns that hold's amount and takes nothing.
   */
  fresh?: boolean;
}

export interface SettleUsage {
  promptTokens: number;
  completionTokens: number;
  cost: number;
  outcome: string;
  /** What the request looked like, for extraction detection (never the prompt itself). */
  signals?: { promptSimhash: string; logprobs: number; temperature: number | null };
}

/**
 * A hold on an org's credit for one request. `durable` settles once the hold
 * is committed: on SQLite the hold is decided at once and committed with the
 * rest of its event-loop turn, so a request may start its work before then but
 * must not send anything to the client until `durable` has resolved (if it
 * rejects, the hold never existed and the request must fail).
 */
export interface Hold {
  amount: number;
  durable: Promise<void>;
}

/** The amount to hold: the whole worst case, or with a minimum, what is available if that reaches it. */
export function holdAmount(request: ReserveRequest, available: number): number {
  if (request.minimum === undefined) {
    if (available < request.amount) throw new InsufficientCreditError(request.amount, Math.max(available, 0));
    return request.amount;
  }
  const amount = Math.min(request.amount, Math.max(available, 0));
  if (amount < request.minimum) throw new InsufficientCreditError(request.minimum, Math.max(available, 0));
  return amount;
}

/** What a settled request is charged: its metered cost, never more than its hold. */
export function chargeOf(held: number, usage: SettleUsage): number {
  return Math.min(Math.max(0, Math.round(usage.cost)), held);
}

/** A settled request's charge: from the org's credit to revenue. */
export function chargeMovement(
  request: { request_id: string; org_id: string; model: string },
  charged: number,
  usage: SettleUsage,
): LedgerMovement {
  return {
    id: `charge:${request.request_id}`,
    kind: "charge",
    orgId: request.org_id,
    requestId: request.request_id,
    memo: `${request.model}: ${usage.promptTokens} prompt + ${usage.completionTokens} completion tokens (${usage.outcome})`,
    entries: [
      { account: accounts.credit(request.org_id), amount: -charged },
      { account: accounts.revenue, amount: charged },
    ],
  };
}

/**
 * A settled request's charge given back whole: from revenue to the org's credit. Its id is the request's, so it
 * happens once (an answer withheld from its client, told nothing was charged, whose settlement had landed after all).
 */
export function refundMovement(
  request: { request_id: string; org_id: string },
  amount: number,
  memo: string,
): LedgerMovement {
  return {
    id: `refund:${request.request_id}`,
    kind: "refund",
    orgId: request.org_id,
    requestId: request.request_id,
    memo,
    entries: [
      { account: accounts.revenue, amount: -amount },
      { account: accounts.credit(request.org_id), amount },
    ],
  };
}

/** A credit: from the issued account to the org's credit. */
export function grantMovement(orgId: string, amount: number, idempotencyKey: string, memo: string): LedgerMovement {
  return {
    id: `grant:${idempotencyKey}`,
    kind: "grant",
    orgId,
    requestId: null,
    memo,
    entries: [
      { account: accounts.issued, amount: -amount },
      { account: accounts.credit(orgId), amount },
    ],
  };
}

/** Refuses a movement whose entries do not sum to zero (a bug, never a user error). */
export function assertBalanced(movement: LedgerMovement): void {
  const total = movement.entries.reduce((sum, e) => sum + e.amount, 0);
  if (total !== 0)
    throw new AvocadoError("ledger_unbalanced", `ledger transaction '${movement.kind}' does not balance (${total})`);
}

/**
 * The UTC day of a time, as YYYY-MM-DD; the last day's text is kept (every settled request asks, and nearly all on the
 * same day).
 */
let dayStart = 0;
let dayText = "1970-01-01";
function day(ms: number): string {
  if (ms < dayStart || ms >= dayStart + 86_400_000) {
    dayStart = ms - (((ms % 86_400_000) + 86_400_000) % 86_400_000);
    dayText = new Date(dayStart).toISOString().slice(0, 10);
  }
  return dayText;
}

/** The `holds` row of a request about to run. */
export function holdRow(request: ReserveRequest, amount: number, now: number) {
  return {
    request_id: request.requestId,
    org_id: request.orgId,
    key_id: request.keyId,
    model: request.model,
    amount,
    created_at: now,
    instance: request.instance,
  };
}

/** The `requests` row of a settled hold. */
export function settledRow(
  hold: { request_id: string; org_id: string; key_id: string; model: string; amount: number; created_at: number },
  charged: number,
  usage: SettleUsage,
  now: number,
) {
  return {
    request_id: hold.request_id,
    org_id: hold.org_id,
    key_id: hold.key_id,
    model: hold.model,
    held: hold.amount,
    charged,
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    outcome: usage.outcome,
    created_at: hold.created_at,
    settled_at: now,
    day: day(hold.created_at),
    prompt_simhash: usage.signals?.promptSimhash ?? null,
    logprobs: usage.signals?.logprobs ?? -1,
    temperature: usage.signals?.temperature ?? null,
  };
}

/** An operation decided now, committed with the rest of its turn of the event loop. */
export interface Pending<T> {
  value: T;
  /** Resolves once the operation is committed; rejects if its batch could not be (then it never happened). */
  durable: Promise<void>;
}

/**
 * The ledger cannot write (its tables failed to commit and could not be rebuilt from its journal); the journal is
 * applied by the next process.
 */
export class LedgerUnavailableError extends AvocadoError {
  constructor(cause: unknown) {
    super(
      "ledger_unavailable",
      `the credit ledger cannot write: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
}

/** Rows of each compiled read query, by name. */
export type SnapshotRows<Q extends Record<string, CompiledQuery>> = {
  [K in keyof Q]: Q[K] extends CompiledQuery<infer R> ? R[] : never;
};

/**
 * Where money moves: grants, holds, settlements and refunds. `SqliteLedger`
 * (statements executed at once, with or without a journal) and
 * `PostgresLedger` (Kysely transactions) implement it; `Store` holds one and
 * never asks which. Every table access goes through `reads` or `writes`, so
 * no caller has to remember the SQLite ledger's uncommitted batch.
 */
export interface Ledger {
  /** Adds credit; false when the idempotency key was used before. */
  grant(orgId: string, amount: number, idempotencyKey: string, memo: string): Promise<boolean>;
  /** Holds credit for a request before it runs (see `Hold`). */
  reserve(request: ReserveRequest, options?: ReserveOptions): Promise<Hold>;
  /** Charges, releases and records a request once; false when it was settled before or is unknown. */
  settle(requestId: string, usage: SettleUsage): Promise<boolean>;
  /** Gives back a settled request's charge once (see `Store.voidCharge`); returns the amount. */
  voidCharge(requestId: string, outcome: string): Promise<number>;
  /** The tables for a read: every operation decided so far is in them. */
  reads(): Db;
  /** The tables for a write outside the ledger (orgs, keys): it never joins, or rolls back with, a ledger batch. */
  writes(): Db;
  /** Read queries on one consistent state of the tables (no commit lands between them). */
  snapshot<Q extends Record<string, CompiledQuery>>(queries: Q): Promise<SnapshotRows<Q>>;
  /** Whether it can write now (SQLite: not broken beyond rebuilding; PostgreSQL: answers within `timeoutMs`). */
  available(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}
