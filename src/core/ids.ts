import { randomUUID } from "node:crypto";

/**
 * A unique id with a readable prefix (`req_…`, `txn_…`) that sorts by creation
 * time, like a UUIDv7: 48 bits of epoch milliseconds, then 80 random bits from
 * randomUUID (a cached entropy pool, cheap on the request path). Ids made close
 * in time are close in a B-tree, so the store appends instead of touching a
 * random page of every index for every insert.
 */
export function newId(prefix: string): string {
  const random = randomUUID();
  return `${prefix}_${Date.now().toString(16).padStart(12, "0")}${random.slice(0, 8)}${random.slice(9, 13)}${random.slice(15, 18)}${random.slice(19, 23)}`;
}
