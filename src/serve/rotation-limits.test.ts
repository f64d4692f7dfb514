import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENDLESS_QWEN_PROMPT, failureOf } from "../../test/fixtures.ts";
import { client, REDIS_URL, serve, type Served } from "../../test/served-api.ts";

/** A key and the key that replaced it (both valid during the grace period) must not double the limits. */
for (const limits of ["in-process", "redis"] as const) {
  describe(`a rotated key and its successor share one budget (${limits})`, () => {
    let served: Served;
    beforeAll(async () => {
      served = await serve(
        limits === "redis" ? { redis: REDIS_URL, redisPrefix: `avocado:adversarial:${process.pid}:${Date.now()}` } : {},
        `rotation_${limits}`,
      );
      await served.api.store.grant("acme", 100_000_000, "start");
    });
    afterAll(async () => served?.close());

    it("RPM: 3 a minute across both keys", async () => {
      const first = await served.api.store.createKey({ org: "acme", name: "rotating", plan: "tight" });
      const second = await served.api.store.rotateKey(first.row.id, 60_000);
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const key = i % 2 === 0 ? first.key : second.key;
        statuses.push(
          (
            await failureOf(
              client(served.api, key).completions.create({ model: "tiny-qwen", prompt: "hi", max_tokens: 1 }),
            )
          )?.status ?? 200,
        );
      }
      expect(statuses.filter((status) => status === 200)).toHaveLength(3);
      expect(statuses.filter((status) => status === 429)).toHaveLength(3);
    });

    it("concurrency: one request in flight across both keys", async () => {
      const first = await served.api.store.createKey({ org: "acme", name: "concurrent", plan: "tight" });
      const second = await served.api.store.rotateKey(first.row.id, 60_000);
      const running = client(served.api, first.key).completions.create({
        model: "tiny-qwen",
        prompt: ENDLESS_QWEN_PROMPT,
        max_tokens: 64,
        stream: true,
      });
      const stream = await running;
      const iterator = stream[Symbol.asyncIterator]();
      await iterator.next();
      const failure = await failureOf(
        client(served.api, second.key).completions.create({ model: "tiny-qwen", prompt: "hi", max_tokens: 1 }),
      );
      expect({ status: failure?.status, code: failure?.code }).toEqual({ status: 429, code: "rate_limit_concurrency" });
      stream.controller.abort();
      // Settled before the suite closes the server (a generation still running would outlive its model).
      for (let i = 0; i < 150 && (await served.api.store.openHolds()).length > 0; i++)
        await new Promise((resolve) => setTimeout(resolve, 20));
      expect(await served.api.store.openHolds()).toEqual([]);
    });
  });
}
