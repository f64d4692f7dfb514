import OpenAI from "openai";
import { serveSchema, type ServeConfig } from "../src/core/config/serve-schema.ts";
import { TOKENIZER_FAMILIES } from "../src/core/family.ts";
import type { Logger } from "../src/core/logger.ts";
import { EmbeddedServedModel } from "../src/serve/models/embedded-model.ts";
import type { ServedModel } from "../src/serve/models/served-model.ts";
import { startApi, type RunningApi } from "../src/serve/server.ts";
import { teacherGguf } from "./fixtures.ts";
import { freshStore } from "./stores.ts";

/** The paid API serving the three tiny teachers (and a slowed Qwen), its log events captured: for the attack suites. */
export const PRICE = { inputPerMillion: 2_000_000, outputPerMillion: 8_000_000 };
export const ADMIN = "admin-token-for-adversarial-tests-0123";
export const REDIS_URL = process.env.AVOCADO_TEST_REDIS ?? "redis://127.0.0.1:6379";

export interface Served {
  api: RunningApi;
  events: { event: string; fields: Record<string, unknown> }[];
  close: () => Promise<void>;
}

/** `onToken` is called at each token the slowed model generates. */
export const slowModel: { onToken: (() => void) | undefined } = { onToken: undefined };

/** A served model slowed to ~2 ms a token (the tiny ones answer in milliseconds): a client can leave mid-answer. */
function slowed(model: ServedModel): ServedModel {
  return Object.assign(Object.create(model) as ServedModel, {
    generate: (request: Parameters<ServedModel["generate"]>[0]) => {
      const onDelta = request.onDelta;
      // Observing every token changes nothing of the generation; the wait holds the engine's thread of control.
      request.onDelta = (delta) => {
        const until = performance.now() + 2;
        while (performance.now() < until);
        slowModel.onToken?.();
        onDelta?.(delta);
      };
      return model.generate(request).finally(() => (request.onDelta = onDelta));
    },
  });
}

export async function serve(overrides: Partial<ServeConfig> = {}, label = "adversarial"): Promise<Served> {
  const fresh = await freshStore("sqlite", label);
  await fresh.store.close();
  const config = serveSchema.parse({
    port: 0,
    store: fresh.url,
    plans: {
      default: { rpm: 1000, tpm: 10_000_000, concurrency: 16, topLogprobs: 0 },
      tight: { rpm: 3, concurrency: 1 },
    },
    models: TOKENIZER_FAMILIES.map((family) => ({
      name: `tiny-${family}`,
      gguf: teacherGguf(`tiny-${family}`),
      price: PRICE,
      maxTokens: 64,
      sequences: 2,
    })),
    ...overrides,
  });
  const models = new Map<string, ServedModel>();
  for (const model of config.models) models.set(model.name, await EmbeddedServedModel.load(model, model.gguf!));
  models.set("slow-qwen", slowed(models.get("tiny-qwen")!));
  const events: Served["events"] = [];
  const logger: Logger = {
    log: (_level, event, fields = {}) => void events.push({ event, fields }),
    addSecret: () => undefined,
  };
  const api = await startApi({ config, workspace: "/nonexistent", adminToken: ADMIN, models, logger });
  return {
    api,
    events,
    close: async () => {
      await api.close();
      await fresh.drop();
    },
  };
}

export function client(api: RunningApi, key: string): OpenAI {
  return new OpenAI({ apiKey: key, baseURL: `${api.url}/v1`, maxRetries: 0 });
}

export async function post(
  api: RunningApi,
  path: string,
  body: unknown,
  headers: Record<string, string>,
): Promise<{ status: number; body: { error?: { message: string; code: string | null; param: string | null } } }> {
  const response = await fetch(`${api.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as never };
}
