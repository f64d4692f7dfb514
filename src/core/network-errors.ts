/**
 * Node's errno codes for a peer that cannot be reached or a connection that
 * was lost: the one list the model clients and the store share, so that "the
 * other side is not there" means the same everywhere (a failover, a 503).
 */
export const NETWORK_ERRNO: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
]);
