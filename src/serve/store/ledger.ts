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

/** The amount to hold: the whole worst case, or with a minimum, what is available if that reaches it. */
export function holdAmount(request: ReserveRequest, available: number): number {
  if (request.minimum === undefined) return request.amount;
  const amount = Math.min(request.amount, Math.max(available, 0));
  if (amount < request.minimum) throw new InsufficientCreditError(request.minimum, available);
  return amount;
}

/** Moving a hold from the org's available credit to its reserved credit. */
export function reserveMovement(request: ReserveRequest, amount: number): LedgerMovement {
  return {
    kind: "reserve",
    idempotencyKey: `reserve:${request.requestId}`,
    orgId: request.orgId,
    requestId: request.requestId,
    memo: `hold for ${request.model}`,
    entries: [
      { account: accounts.available(request.orgId), amount: -amount, guard: true },
      { account: accounts.reserved(request.orgId), amount },
    ],
  };
}

/** The charge (at most the hold) to revenue, the rest of the hold back to available. */
export function settleMovement(reservation: { request_id: string; org_id: string; model: string; amount: number }, usage: SettleUsage): { charged: number; movement: LedgerMovement } {
  const charged = Math.min(Math.max(0, Math.round(usage.cost)), reservation.amount);
  return {
    charged,
    movement: {
      kind: "settle",
      idempotencyKey: `settle:${reservation.request_id}`,
      orgId: reservation.org_id,
      requestId: reservation.request_id,
      memo: `${reservation.model}: ${usage.promptTokens} prompt + ${usage.completionTokens} completion tokens (${usage.outcome})`,
      entries: [
        { account: accounts.reserved(reservation.org_id), amount: -reservation.amount, guard: true },
        { account: accounts.revenue, amount: charged },
        { account: accounts.available(reservation.org_id), amount: reservation.amount - charged },
      ],
    },
  };
}

/** A credit: from the issued account to the org's available credit. */
export function grantMovement(orgId: string, amount: number, idempotencyKey: string, memo: string): LedgerMovement {
  return { kind: "grant", idempotencyKey: `grant:${idempotencyKey}`, orgId, requestId: null, memo, entries: [{ account: accounts.issued, amount: -amount }, { account: accounts.available(orgId), amount }] };
}
