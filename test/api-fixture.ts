import OpenAI from "openai";
import { serveSchema } from "../src/core/config/serve-schema.ts";
import { JsonLogger } from "../src/core/logger.ts";
import { EmbeddedServedModel } from "../src/serve/models/embedded-model.ts";
import type { ServedModel } from "../src/serve/models/served-model.ts";
import { startApi, type RunningApi } from "../src/serve/server.ts";
import type { Store } from "../src/serve/store/store.ts";
import { teacherGguf } from "./fixtures.ts";
import { freshStore } from "./stores.ts";

export const PRICE = { inputPerMillion: 2_000_000, outputPerMillion: 8_000_000 };
export const ADMIN = "admin-token-for-tests-0123456789";

export interface ApiUnderTest {
  api: RunningApi;
  store: Store;
  /** A key of org "acme", which has 10,000,000 micro-units of credit. */
  key: string;
  client: OpenAI;
  close: () => Promise<void>;
}

/**
 * The paid API serving tiny-qwen as "avocado-tiny" on a fresh store of `kind`, with three plans (default, research
 * with log-probs, tight at 2 RPM), through the official openai client.
 */
export async function apiUnderTest(kind: "sqlite" | "postgres", label = "api"): Promise<ApiUnderTest> {
  const fresh = await freshStore(kind, label);
  await fresh.store.close();
  const config = serveSchema.parse({
    port: 0,
    store: fresh.url,
    plans: {
      default: { rpm: 1000, tpm: 1_000_000, concurrency: 8, topLogprobs: 0 },
      research: { topLogprobs: 5 },
      tight: { rpm: 2 },
    },
    models: [{ name: "avocado-tiny", gguf: teacherGguf("tiny-qwen"), price: PRICE, maxTokens: 64, sequences: 2 }],
  });
  const models = new Map<string, ServedModel>([
    ["avocado-tiny", await EmbeddedServedModel.load(config.models[0]!, teacherGguf("tiny-qwen"))],
  ]);
  const api = await startApi({
    config,
    workspace: "/nonexistent",
    adminToken: ADMIN,
    models,
    logger: new JsonLogger(undefined, "warn"),
  });
  const store = api.store;
  const key = (await store.createKey({ org: "acme", name: "test" })).key;
  await store.grant("acme", 10_000_000, "start");
  const client = new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
  return {
    api,
    store,
    key,
    client,
    close: async () => {
      await api.close();
      await fresh.drop();
    },
  };
}
