import { randomUUID } from "node:crypto";

/**
 * A unique id with a readable prefix (`req_…`, `txn_…`): 122 random bits from
 * randomUUID, which draws on a cached entropy pool (several times cheaper per id
 * than randomBytes on the request path).
 */
export function newId(prefix: string): string {
  return `${prefix}_${randomUUID().replaceAll("-", "")}`;
}
