import { AvocadoError } from "../../core/errors.ts";

/** Not enough prepaid credit for a request's worst case (HTTP 402). */
export class InsufficientCreditError extends AvocadoError {
  constructor(
    readonly needed: number,
    readonly available: number,
  ) {
    super("insufficient_credit", `insufficient credit: this request may cost up to ${needed} micro-units and ${available} are available`);
  }
}

export const accounts = {
  /** Credit an org can spend. Never negative: reservations are guarded. */
  available: (org: string) => `org:${org}:available`,
  /** Credit held for requests in flight. */
  reserved: (org: string) => `org:${org}:reserved`,
  /** Where credit comes from (top-ups and grants): goes negative by what was issued. */
  issued: "system:issued",
  /** What was earned: settled charges. */
  revenue: "system:revenue",
};

/** One balanced movement: entries sum to zero; `guard` accounts may not go below zero. */
export interface LedgerMovement {
  kind: string;
  idempotencyKey: string;
  orgId: string | null;
  requestId: string | null;
  memo: string;
  entries: { account: string; amount: number; guard?: boolean }[];
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

export interface SettleUsage {
  promptTokens: number;
  completionTokens: number;
  cost: number;
  outcome: string;
  /** What the request looked like, for extraction detection (never the prompt itself). */
  signals?: { promptSimhash: string; logprobs: number; temperature: number | null };
}
