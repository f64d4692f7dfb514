import { Redis } from "ioredis";
import type { Admission, LimitKind, Limiter, LimitScope } from "./limiter.ts";

/** Requests still "in flight" after this long are dropped from concurrency (a replica died holding them). */
const LEASE_TTL_MS = 15 * 60_000;

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

/**
 * Limits shared by every replica through Redis: one Lua script checks and takes
 * from all of a request's buckets atomically, so N replicas enforce the limit,
 * not N × the limit. Concurrency is a sorted set of request ids with a deadline,
 * so a replica killed mid-request cannot hold a slot forever.
 */
export class RedisLimiter implements Limiter {
  private readonly redis: Redis;
  constructor(url: string, prefix = "avocado:limits") {
    this.redis = new Redis(url, { maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: false });
    this.prefix = prefix;
  }
  private readonly prefix: string;

  private keys(scope: LimitScope): string[] {
    return [`${this.prefix}:${scope.id}:rpm`, `${this.prefix}:${scope.id}:tpm`, `${this.prefix}:${scope.id}:inflight`];
  }

  async admit(requestId: string, scopes: readonly LimitScope[], promptTokens: number): Promise<Admission> {
    const keys = scopes.flatMap((s) => this.keys(s));
    const args = [promptTokens, requestId, LEASE_TTL_MS, ...scopes.flatMap((s) => [s.rpm ?? 0, s.tpm ?? 0, s.concurrency ?? 0])];
    const result = (await this.redis.eval(ADMIT, keys.length, ...keys, ...args)) as [number, string?, number?, number?];
    if (result[0] !== 1) return { ok: false, limit: result[1] as LimitKind, scope: scopes[result[2] ?? 0]!.id, retryAfterMs: Math.max(1, result[3] ?? 1000) };
    const tpmScopes = scopes.filter((s) => s.tpm);
    const concurrencyScopes = scopes.filter((s) => s.concurrency);
    let released = false;
    let pending: Promise<unknown> = Promise.resolve();
    return {
      ok: true,
      lease: {
        addTokens: (tokens) => {
          if (tpmScopes.length === 0 || tokens <= 0) return;
          pending = pending.then(() => this.redis.eval(ADD_TOKENS, tpmScopes.length, ...tpmScopes.map((s) => this.keys(s)[1]!), tokens, ...tpmScopes.map((s) => s.tpm!))).catch(() => undefined);
        },
        release: async () => {
          if (released) return;
          released = true;
          await pending;
          if (concurrencyScopes.length > 0) {
            const pipeline = this.redis.pipeline();
            for (const scope of concurrencyScopes) pipeline.zrem(this.keys(scope)[2]!, requestId);
            await pipeline.exec();
          }
        },
      },
    };
  }

  async close(): Promise<void> {
    await this.redis.quit();
  }
}
