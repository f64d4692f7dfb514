import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import type { AvocadoConfig } from "../../core/config/schema.ts";
import { servedModelSchema, type ServeConfig } from "../../core/config/serve-schema.ts";
import { openSuite } from "../../evals/suite.ts";
import type { ItemRecord } from "../../evals/run.ts";
import { releaseVerdict } from "../../export/model-card.ts";
import type { RunningApi } from "../../serve/server.ts";

export const DEMO_ORG = "demo";
const DEMO_KEY_NAME = "quickstart";
/** The demo org's credit: granted once (its idempotency key), whatever the number of runs. */
export const DEMO_CREDIT = 1_000_000;
const PRICE = { inputPerMillion: 1_000_000, outputPerMillion: 2_000_000 };

/**
 * A question the student answers correctly, taken from its own eval records (the tinyworld suite), preferring the
 * arithmetic skill; none correct: the first item (the request stage then says what was expected).
 */
export function showcase(workspace: string, modelFolder: string, student: string) {
  const records = join(modelFolder, "evals", "tinyworld", "items.jsonl");
  const suite = openSuite("tinyworld", workspace);
  const lines = existsSync(records) ? readFileSync(records, "utf8").split("\n").filter(Boolean) : [];
  const correct = lines
    .map((line) => JSON.parse(line) as ItemRecord)
    .filter((r) => r.model === student && r.scores && Object.values(r.scores).every(Boolean));
  const pick = correct.find((r) => r.group === "arithmetic") ?? correct[0];
  const item = suite.items.find((i) => i.id === pick?.item) ?? suite.items[0]!;
  const question = item.messages.findLast((m) => m.role === "user")!.content;
  return { question, reference: item.reference };
}

export interface Demo {
  api: RunningApi;
  url: string;
  key: string;
  /** How to log in to the dashboard: the token made for this run, or the name of the variable that holds yours. */
  adminLogin: string;
  ungated: boolean;
}

/**
 * Serves the student on the paid API with a demo organisation, a fresh key (the previous quickstart key is revoked:
 * a key is shown once) and credit granted once.
 */
export async function serveDemo(options: {
  config: AvocadoConfig;
  workspace: string;
  gguf: string;
  model: string;
  port: number;
}): Promise<Demo> {
  const { startApi } = await import("../../serve/server.ts");
  const { JsonLogger } = await import("../../core/logger.ts");
  const serve: ServeConfig = {
    ...options.config.serve,
    port: options.port,
    store: "sqlite:quickstart.db",
    models: [servedModelSchema.parse({ name: options.model, gguf: options.gguf, price: PRICE, maxTokens: 256 })],
  };
  // Yours if set (never printed); else one made for this run, printed once, gone when it ends.
  const own = process.env[serve.adminTokenEnv];
  const adminToken = own || `adm-${randomBytes(18).toString("base64url")}`;
  const adminLogin = own ? `the value of $${serve.adminTokenEnv}` : adminToken;
  // A tiny-world student whose gate could not pass (the test world's suite is too small to show 5 points) is still
  // served for the demo, and the output says so.
  const ungated = releaseVerdict(options.gguf).verdict !== "pass";
  const logger = new JsonLogger(undefined, "warn");
  logger.addSecret(adminToken);
  const api = await startApi({ config: serve, workspace: options.workspace, adminToken, logger, allowUngated: true });
  try {
    for (const row of await api.store.listKeys(DEMO_ORG))
      if (row.name === DEMO_KEY_NAME && row.revoked_at === null) await api.store.revokeKey(row.id);
    const { key } = await api.store.createKey({
      org: DEMO_ORG,
      name: DEMO_KEY_NAME,
      scopes: null,
      plan: "default",
      limits: {},
      expiresAt: null,
    });
    await api.store.grant(DEMO_ORG, DEMO_CREDIT, "quickstart-demo-credit", "quickstart demo credit");
    const url = api.url.replace("0.0.0.0", "127.0.0.1");
    return { api, url, key, adminLogin, ungated };
  } catch (error) {
    await api.close();
    throw error;
  }
}

/** One real request through the official `openai` client, streamed; then the balance the key's org has left. */
export async function demoRequest(demo: Demo, model: string, question: string, onText: (text: string) => void) {
  const client = new OpenAI({ baseURL: `${demo.url}/v1`, apiKey: demo.key, maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: question }],
    temperature: 0,
    max_tokens: 64,
    stream: true,
    stream_options: { include_usage: true },
  });
  let answer = "";
  let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  for await (const chunk of stream) {
    let text = chunk.choices[0]?.delta?.content ?? "";
    // Shown as it streams, less the blank lines an answer may open with.
    if (answer.trim() === "") text = text.trimStart();
    answer += text;
    if (text) onText(text);
    if (chunk.usage) usage = chunk.usage;
  }
  const balance = (await (
    await fetch(`${demo.url}/v1/balance`, { headers: { authorization: `Bearer ${demo.key}` } })
  ).json()) as { available: number };
  return { answer, usage, balance: balance.available };
}
