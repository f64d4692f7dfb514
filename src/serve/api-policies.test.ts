import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiUnderTest, PRICE } from "../../test/api-fixture.ts";
import { costOf } from "./models/served-model.ts";
import { type RunningApi } from "./server.ts";
import type { Store } from "./store/store.ts";

/** The paid API's policies, on each store: errors in OpenAI's shape, the plan's log-probs, limits, the credit race. */
for (const kind of ["sqlite", "postgres"] as const) {
  describe(`avocado serve on ${kind}: errors, plans, limits and credit`, () => {
    let api: RunningApi;
    let store: Store;
    let key: string;
    let client: OpenAI;
    let close: (() => Promise<void>) | undefined;
    beforeAll(async () => ({ api, store, key, client, close } = await apiUnderTest(kind, "api_policies")));
    afterAll(async () => close?.());

    it("maps errors to the OpenAI shape and status codes, with x-request-id", async () => {
      const bad = new OpenAI({ apiKey: "avo_not-a-key", baseURL: `${api.url}/v1`, maxRetries: 0 });
      await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
      await expect(
        client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "hi" }] }),
      ).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(
        client.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 10_000,
        }),
      ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
      const logprobs = await client.chat.completions
        .create({ model: "avocado-tiny", messages: [{ role: "user", content: "hi" }], logprobs: true, top_logprobs: 2 })
        .catch((e: unknown) => e);
      expect(logprobs).toBeInstanceOf(OpenAI.PermissionDeniedError);
      expect((logprobs as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({
        type: "permission_error",
        code: "logprobs_not_allowed",
      });
      const big = await fetch(`${api.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "avocado-tiny", messages: [{ role: "user", content: "x".repeat(2_000_000) }] }),
      });
      expect(big.status).toBe(413);
      expect(big.headers.get("x-request-id")).toMatch(/^req_/);
      expect(await big.json()).toMatchObject({ error: { type: "invalid_request_error", code: "body_too_large" } });
      const notJson = await fetch(`${api.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: "{not json",
      });
      expect(notJson.status).toBe(400);
      const unknownRoute = await fetch(`${api.url}/v1/weights`, { headers: { authorization: `Bearer ${key}` } });
      expect(unknownRoute.status).toBe(404);
    });

    it("allows logprobs only as the plan does, and refuses revoked keys", async () => {
      const { key: research, row: researchRow } = await store.createKey({
        org: "acme",
        name: "research",
        plan: "research",
      });
      const researcher = new OpenAI({ apiKey: research, baseURL: `${api.url}/v1`, maxRetries: 0 });
      const answer = await researcher.chat.completions.create({
        model: "avocado-tiny",
        messages: [{ role: "user", content: "What is 25*12?" }],
        logprobs: true,
        top_logprobs: 3,
        max_tokens: 4,
        temperature: 0,
      });
      expect(answer.choices[0]!.logprobs!.content![0]!.top_logprobs.length).toBe(3);
      // The request left its extraction signals (a SimHash of the prompt, never the prompt).
      const signals = await store.requestSignals(researchRow.id, 0);
      expect(signals[0]).toMatchObject({
        logprobs: 3,
        temperature: 0,
        prompt_simhash: expect.stringMatching(/^[0-9a-f]{16}$/),
      });
      await expect(
        researcher.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "hi" }],
          logprobs: true,
          top_logprobs: 6,
        }),
      ).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
      const { row } = await store.createKey({ org: "acme", name: "short-lived" }).then(async (created) => {
        await store.revokeKey(created.row.id);
        return created;
      });
      expect(row.revoked_at).toBeNull();
      const revoked = (await store.listKeys("acme")).find((k) => k.id === row.id)!;
      expect(revoked.revoked_at).not.toBeNull();
    });

    it("answers 429 with Retry-After at the key's RPM, and 402 without credit", async () => {
      const tight = new OpenAI({
        apiKey: (await store.createKey({ org: "acme", name: "tight", plan: "tight" })).key,
        baseURL: `${api.url}/v1`,
        maxRetries: 0,
      });
      const ask = () =>
        tight.chat.completions.create({
          model: "avocado-tiny",
          messages: [{ role: "user", content: "What is 25*12?" }],
          max_tokens: 2,
        });
      await ask();
      await ask();
      const limited = await ask().catch((e: unknown) => e);
      expect(limited).toBeInstanceOf(OpenAI.RateLimitError);
      expect(
        Number((limited as InstanceType<typeof OpenAI.APIError>).headers?.get("retry-after")),
      ).toBeGreaterThanOrEqual(1);
      const broke = new OpenAI({
        apiKey: (await store.createKey({ org: "broke", name: "k" })).key,
        baseURL: `${api.url}/v1`,
        maxRetries: 0,
      });
      const refused = await broke.chat.completions
        .create({ model: "avocado-tiny", messages: [{ role: "user", content: "hi" }] })
        .catch((e: unknown) => e);
      expect((refused as InstanceType<typeof OpenAI.APIError>).status).toBe(402);
      expect((await store.audit()).problems).toEqual([]);
    });

    it("200 concurrent streams on credit for about 50: never below zero, charges equal metered usage, none twice", async () => {
      const { key: crowdKey } = await store.createKey({
        org: "crowd",
        name: "k",
        limits: { concurrency: 1000, rpm: 100_000, tpm: 100_000_000 },
      });
      const crowd = new OpenAI({ apiKey: crowdKey, baseURL: `${api.url}/v1`, maxRetries: 0, timeout: 120_000 });
      const request = {
        model: "avocado-tiny",
        messages: [{ role: "user" as const, content: "What is 25*12?" }],
        max_tokens: 12,
        temperature: 0,
      };
      const worst = costOf(PRICE, (await client.chat.completions.create(request)).usage!.prompt_tokens, 12);
      await store.grant("crowd", worst * 50, "crowd");
      const orgId = (await store.orgByName("crowd"))!.id;
      let lowest = Number.POSITIVE_INFINITY;
      const watcher = setInterval(
        () => void store.balance(orgId).then((b) => (lowest = Math.min(lowest, b.available))),
        5,
      );
      const outcomes = await Promise.all(
        Array.from({ length: 200 }, async () => {
          try {
            const stream = await crowd.chat.completions.create({
              ...request,
              stream: true,
              stream_options: { include_usage: true },
            });
            let usage: OpenAI.CompletionUsage | undefined;
            for await (const chunk of stream) usage = chunk.usage ?? usage;
            return usage ? costOf(PRICE, usage.prompt_tokens, usage.completion_tokens) : -1;
          } catch (error) {
            if ((error as { status?: number }).status === 402) return 0;
            throw error;
          }
        }),
      );
      clearInterval(watcher);
      expect(outcomes).not.toContain(-1);
      const served = outcomes.filter((c) => c > 0);
      expect(served.length).toBeGreaterThanOrEqual(50);
      expect(lowest).toBeGreaterThanOrEqual(0);
      const usage = await store.usage({ orgId });
      const charged = usage.reduce((sum, row) => sum + row.cost, 0);
      if (charged !== served.reduce((a, b) => a + b, 0)) {
        const records = await store.db
          .selectFrom("requests")
          .select(["charged as cost", "outcome", "prompt_tokens", "completion_tokens"])
          .where("org_id", "=", orgId)
          .execute();
        const histogram = (values: string[]) =>
          Object.entries(values.reduce<Record<string, number>>((h, v) => ((h[v] = (h[v] ?? 0) + 1), h), {}));
        process.stderr.write(
          `served ${JSON.stringify(histogram(served.map(String)))}\nrecords ${JSON.stringify(histogram(records.map((r) => `${r.cost}/${r.outcome}/${r.prompt_tokens}/${r.completion_tokens}`)))}\n`,
        );
      }
      expect(charged).toBe(served.reduce((a, b) => a + b, 0));
      expect(usage.reduce((sum, row) => sum + row.requests, 0)).toBe(served.length);
      const balance = await store.balance(orgId);
      expect(balance).toEqual({ available: worst * 50 - charged, held: 0 });
      expect((await store.audit()).problems).toEqual([]);
    }, 120_000);
  });
}
