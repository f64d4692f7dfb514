import { Redis } from "ioredis";
import { InputError } from "../../core/errors.ts";
import { withoutPassword } from "../../core/urls.ts";
import { SILENT_LOGGER, type Logger } from "../../core/logger.ts";
import {
  LimiterUnavailableError,
  type Admission,
  type Lease,
  type LimitKind,
  type Limiter,
  type LimitScope,
} from "./limiter.ts";

/**
 * A concurrency slot lasts this long unless its replica renews it (every third of it, while the request runs):
 * the slots of a replica that died (kill -9, a lost machine) are free again within this time.
 */
const LEASE_TTL_MS = 30_000;
/** The most slots one renewal script call extends (a replica with more in flight makes several). */
const RENEW_BATCH = 1_000;

// One atomic script for every scope: check all, then take from all. Time is Redis's own, so replicas agree.
const ADMIT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prompt = tonumber(ARGV[1])
local id = ARGV[2]
local ttl = tonumber(ARGV[3])
local n = #KEYS / 3
local levels = {}
for i = 0, n - 1 do
  local rpm, tpm, conc = tonumber(ARGV[4 + 3 * i]), tonumber(ARGV[5 + 3 * i]), tonumber(ARGV[6 + 3 * i])
  if rpm > 0 then
    local b = redis.call('HMGET', KEYS[1 + 3 * i], 'level', 'updated')
    local level = math.min(rpm, (tonumber(b[1]) or rpm) + (now - (tonumber(b[2]) or now)) * rpm / 60000)
    if level < 1 then return {0, 'rpm', i, math.ceil((1 - level) * 60000 / rpm)} end
    levels[1 + 3 * i] = level
  end
  if tpm > 0 then
    local b = redis.call('HMGET', KEYS[2 + 3 * i], 'level', 'updated')
    local level = math.min(tpm, (tonumber(b[1]) or tpm) + (now - (tonumber(b[2]) or now)) * tpm / 60000)
    local need = math.min(prompt, tpm)
    if level < need then return {0, 'tpm', i, math.ceil((need - level) * 60000 / tpm)} end
    levels[2 + 3 * i] = level
  end
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3 + 3 * i], '-inf', now)
    if redis.call('ZCARD', KEYS[3 + 3 * i]) >= conc then return {0, 'concurrency', i, 1000} end
  end
end
for i = 0, n - 1 do
  local rpm, tpm, conc = tonumber(ARGV[4 + 3 * i]), tonumber(ARGV[5 + 3 * i]), tonumber(ARGV[6 + 3 * i])
  if rpm > 0 then
    redis.call('HSET', KEYS[1 + 3 * i], 'level', tostring(levels[1 + 3 * i] - 1), 'updated', now)
    redis.call('PEXPIRE', KEYS[1 + 3 * i], 120000)
  end
  if tpm > 0 then
    redis.call('HSET', KEYS[2 + 3 * i], 'level', tostring(levels[2 + 3 * i] - prompt), 'updated', now)
    redis.call('PEXPIRE', KEYS[2 + 3 * i], 120000)
  end
  if conc > 0 then
    redis.call('ZADD', KEYS[3 + 3 * i], now + ttl, id)
    redis.call('PEXPIRE', KEYS[3 + 3 * i], ttl)
  end
end
return {1}
`;

const ADD_TOKENS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens = tonumber(ARGV[1])
for i = 1, #KEYS do
  local tpm = tonumber(ARGV[1 + i])
  local b = redis.call('HMGET', KEYS[i], 'level', 'updated')
  local level = math.min(tpm, (tonumber(b[1]) or tpm) + (now - (tonumber(b[2]) or now)) * tpm / 60000)
  redis.call('HSET', KEYS[i], 'level', tostring(level - tokens), 'updated', now)
  redis.call('PEXPIRE', KEYS[i], 120000)
end
return 1
`;

// Extends the deadline of slots still held (ZADD XX: a slot freed meanwhile is not taken again), and their sets'
// expiry.
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + ttl, ARGV[1 + i])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 1
`;

/** A command Redis has not answered in this long fails (a hung server must not hang the API). */
const COMMAND_TIMEOUT_MS = 2_000;
const CONNECT_TIMEOUT_MS = 5_000;
/** The most slots kept to free once Redis is back. */
const MAX_UNRELEASED = 100_000;

/** The two scripts, as ioredis custom commands: sent by SHA (EVALSHA), the script itself only when Redis lacks it. */
interface LimitScripts {
  avocadoAdmit(keyCount: number, ...keysAndArgs: (string | number)[]): Promise<[number, string?, number?, number?]>;
  avocadoAddTokens(keyCount: number, ...keysAndArgs: (string | number)[]): Promise<number>;
  avocadoRenew(keyCount: number, ...keysAndArgs: (string | number)[]): Promise<number>;
}

/**
 * Limits shared by every replica through Redis: one Lua script checks and takes
 * from all of a request's buckets atomically, so N replicas enforce the limit,
 * not N × the limit. Concurrency is a sorted set of request ids with a deadline
 * (LEASE_TTL_MS) that the replica running the request keeps renewing, so the
 * slots of a replica killed mid-request are free again within that time.
 *
 * Redis unreachable or not answering (COMMAND_TIMEOUT_MS): admit fails at once
 * with LimiterUnavailableError (the API answers 503, nothing taken or charged)
 * while ioredis reconnects; a slot that could not be freed meanwhile is freed
 * once Redis is back; completion tokens that could not be counted are lost
 * to TPM (limits, not money). The outage and the recovery are logged once each.
 */
export class RedisLimiter implements Limiter {
  /**
   * Request ids whose concurrency slots could not be freed (Redis was away), with their sets: freed when it is back.
   */
  private readonly unreleased = new Map<string, string[]>();
  /**
   * The concurrency slots of this replica's requests in flight (request id → its sets), renewed every third of their
   * lease.
   */
  private readonly live = new Map<string, string[]>();
  private readonly renewal: NodeJS.Timeout;
  /** The link: not yet up (startup), up, or lost since it was up (an outage, logged once). */
  private link: "connecting" | "up" | "down" = "connecting";
  private closing = false;
  private lastError: Error | undefined;

  private constructor(
    private readonly redis: Redis & LimitScripts,
    private readonly prefix: string,
    logger: Logger,
    private readonly leaseTtlMs: number,
  ) {
    this.renewal = setInterval(() => void this.renew(), Math.max(1, Math.floor(leaseTtlMs / 3)));
    this.renewal.unref();
    // Without a listener, ioredis prints every failed reconnection.
    redis.on("error", (error: Error) => {
      this.lastError = error;
    });
    redis.on("close", () => {
      if (this.link !== "up" || this.closing) return;
      this.link = "down";
      logger.log("warn", "limits.redis_unavailable", { error: this.lastError?.message ?? "the connection closed" });
    });
    redis.on("ready", () => {
      if (this.link === "down") logger.log("info", "limits.redis_ready", {});
      this.link = "up";
      this.lastError = undefined;
      this.freeUnreleased();
    });
  }

  /** Connects, failing with a clear InputError when Redis cannot be reached at start. */
  static async connect(
    url: string,
    prefix = "avocado:limits",
    logger: Logger = SILENT_LOGGER,
    options: { leaseTtlMs?: number } = {},
  ): Promise<RedisLimiter> {
    const redis = new Redis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: CONNECT_TIMEOUT_MS,
    });
    redis.defineCommand("avocadoAdmit", { lua: ADMIT });
    redis.defineCommand("avocadoAddTokens", { lua: ADD_TOKENS });
    redis.defineCommand("avocadoRenew", { lua: RENEW });
    const limiter = new RedisLimiter(redis as Redis & LimitScripts, prefix, logger, options.leaseTtlMs ?? LEASE_TTL_MS);
    try {
      await redis.connect();
    } catch (error) {
      clearInterval(limiter.renewal);
      redis.disconnect();
      throw new InputError(
        `cannot reach Redis at ${withoutPassword(url)} (serve.redis): ${(limiter.lastError ?? (error as Error)).message}`,
      );
    }
    return limiter;
  }

  private keys(scope: LimitScope): string[] {
    return [`${this.prefix}:${scope.id}:rpm`, `${this.prefix}:${scope.id}:tpm`, `${this.prefix}:${scope.id}:inflight`];
  }

  available(): boolean {
    return this.redis.status === "ready";
  }

  async admit(requestId: string, scopes: readonly LimitScope[], promptTokens: number): Promise<Admission> {
    const keys = scopes.flatMap((s) => this.keys(s));
    const args = [
      promptTokens,
      requestId,
      this.leaseTtlMs,
      ...scopes.flatMap((s) => [s.rpm ?? 0, s.tpm ?? 0, s.concurrency ?? 0]),
    ];
    let result: [number, string?, number?, number?];
    try {
      result = await this.redis.avocadoAdmit(keys.length, ...keys, ...args);
    } catch (error) {
      // Timed out, the script may still have run and taken slots: they are given back (now, or once Redis answers
      // again).
      if (error instanceof Error && /timed out/i.test(error.message))
        void this.free(
          requestId,
          scopes.filter((s) => s.concurrency).map((s) => this.keys(s)[2]!),
        );
      throw new LimiterUnavailableError(error);
    }
    if (result[0] !== 1)
      return {
        ok: false,
        limit: result[1] as LimitKind,
        scope: scopes[result[2] ?? 0]!.id,
        retryAfterMs: Math.max(1, result[3] ?? 1000),
      };
    const tpm = scopes.filter((s) => s.tpm);
    const inflight = scopes.filter((s) => s.concurrency).map((s) => this.keys(s)[2]!);
    if (inflight.length > 0) this.live.set(requestId, inflight);
    return {
      ok: true,
      lease: new RedisLease(
        this,
        requestId,
        tpm.map((s) => this.keys(s)[1]!),
        tpm.map((s) => s.tpm!),
        inflight,
      ),
    };
  }

  /**
   * Extends the slots of the requests in flight here (one script call per RENEW_BATCH); a renewal Redis misses is made
   * by the next.
   */
  private async renew(): Promise<void> {
    if (this.live.size === 0 || this.redis.status !== "ready") return;
    const sets: string[] = [];
    const ids: string[] = [];
    for (const [requestId, held] of this.live) {
      for (const set of held) {
        sets.push(set);
        ids.push(requestId);
      }
    }
    for (let start = 0; start < sets.length; start += RENEW_BATCH) {
      const keys = sets.slice(start, start + RENEW_BATCH);
      try {
        await this.redis.avocadoRenew(keys.length, ...keys, this.leaseTtlMs, ...ids.slice(start, start + RENEW_BATCH));
      } catch {
        // Redis away: the outage is logged once, by the connection.
        return;
      }
    }
  }

  /** Takes completion tokens from TPM buckets; never rejects (tokens Redis could not take are not counted). */
  async takeTokens(keys: string[], limits: number[], tokens: number): Promise<void> {
    try {
      await this.redis.avocadoAddTokens(keys.length, ...keys, tokens, ...limits);
    } catch {
      // Redis away: the outage is logged once, by the connection.
    }
  }

  /** Frees a request's concurrency slots; one that cannot be freed now is freed once Redis is back. Never rejects. */
  async free(requestId: string, sets: string[]): Promise<void> {
    this.live.delete(requestId);
    if (sets.length === 0 || (await this.removeFrom(requestId, sets))) return;
    // Bounded: past it the oldest are left to their slots' deadline (no longer renewed, they lapse within
    // LEASE_TTL_MS).
    if (this.unreleased.size >= MAX_UNRELEASED) this.unreleased.delete(this.unreleased.keys().next().value!);
    this.unreleased.set(requestId, sets);
  }

  private async removeFrom(requestId: string, sets: string[]): Promise<boolean> {
    try {
      const pipeline = this.redis.pipeline();
      for (const set of sets) pipeline.zrem(set, requestId);
      const results = await pipeline.exec();
      return results !== null && results.every(([error]) => !error);
    } catch {
      return false;
    }
  }

  private freeUnreleased(): void {
    for (const [requestId, sets] of this.unreleased) {
      this.unreleased.delete(requestId);
      void this.free(requestId, sets);
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.renewal);
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }
}

/**
 * A request's hold on its Redis limits. Completion tokens are sent one script
 * call at a time: those that come while one is on its way go together in the
 * next (a stream does not make one round trip per token). Its slots are freed
 * without waiting for its token counts to be acknowledged (one connection: Redis runs them in order).
 */
class RedisLease implements Lease {
  private released = false;
  private unsent = 0;
  private sending = false;

  constructor(
    private readonly limiter: RedisLimiter,
    private readonly requestId: string,
    private readonly tpmKeys: string[],
    private readonly tpmLimits: number[],
    private readonly inflight: string[],
  ) {}

  addTokens(tokens: number): void {
    if (this.tpmKeys.length === 0 || tokens <= 0) return;
    this.unsent += tokens;
    if (!this.sending) this.send();
  }

  private send(): void {
    const tokens = this.unsent;
    this.unsent = 0;
    this.sending = true;
    void this.limiter.takeTokens(this.tpmKeys, this.tpmLimits, tokens).then(() => {
      this.sending = false;
      if (this.unsent > 0) this.send();
    });
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.limiter.free(this.requestId, this.inflight);
  }
}
