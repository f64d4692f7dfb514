/**
 * A token bucket's level refilled to `now` at `perMinute`, up to `capacity`: the one refill rule of Avocado's
 * buckets. They differ only in capacity, by purpose: the paid API's limits let a customer spend a minute's allowance
 * at once (capacity = perMinute, as providers' rate limits do; the Redis script applies the same rule), while a
 * teacher's outbound pacing holds one second's worth, so calls to a provider are spread evenly instead of bursting.
 */
export function refill(level: number, updated: number, perMinute: number, now: number, capacity = perMinute): number {
  return Math.min(capacity, level + ((now - updated) * perMinute) / 60_000);
}
