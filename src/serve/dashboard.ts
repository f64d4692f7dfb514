import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { FastifyInstance, FastifyReply } from "fastify";
import { z } from "zod";
import type { ServeConfig } from "../core/config/serve-schema.ts";
import { PROJECT_ROOT } from "../core/paths.ts";
import { CARD_FILE, releaseVerdict } from "../export/model-card.ts";
import { adminCheck } from "./admin.ts";
import type { KeyAuthenticator } from "./authentication.ts";
import { extractionReport } from "./extraction.ts";
import { ApiError } from "./http/api-error.ts";
import type { ApiMetrics } from "./metrics.ts";
import type { Store } from "./store/store.ts";

const WEB = join(PROJECT_ROOT, "src", "serve", "web");
/** Chart.js's own UMD build, served from the installed package: the pages need no network. */
const CHART_JS = join(PROJECT_ROOT, "node_modules", "chart.js", "dist", "chart.umd.min.js");

const ASSETS: Record<string, { file: string; type: string }> = {
  "/dashboard": { file: join(WEB, "dashboard.html"), type: "text/html; charset=utf-8" },
  "/playground": { file: join(WEB, "playground.html"), type: "text/html; charset=utf-8" },
  "/web/dashboard.js": { file: join(WEB, "dashboard.js"), type: "text/javascript; charset=utf-8" },
  "/web/playground.js": { file: join(WEB, "playground.js"), type: "text/javascript; charset=utf-8" },
  "/web/common.js": { file: join(WEB, "common.js"), type: "text/javascript; charset=utf-8" },
  "/web/avocado.css": { file: join(WEB, "avocado.css"), type: "text/css; charset=utf-8" },
  "/web/chart.umd.min.js": { file: CHART_JS, type: "text/javascript; charset=utf-8" },
};

/**
 * The pages run only their own files: no inline script, no other origin, not framed. Secrets typed into them (the
 * admin credential, an API key) live in a page variable and go only to this server, in an Authorization header.
 */
const PAGE_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

const liveQuery = z
  .object({
    minutes: z.coerce
      .number()
      .int()
      .min(5)
      .max(24 * 60)
      .default(60),
  })
  .strict();

/** A model's folder files, where it has them (a student has all; a teacher or a file brought in, some or none). */
function modelFiles(gguf: string | undefined) {
  if (!gguf) return undefined;
  const folder = dirname(isAbsolute(gguf) ? gguf : resolve(gguf));
  const read = (name: string) => {
    const path = join(folder, name);
    return existsSync(path) ? readFileSync(path, "utf8") : undefined;
  };
  return { folder, read };
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The eval summaries a student's card points at: its reports' folders each hold a `summary.json`. */
function evalSummaries(files: NonNullable<ReturnType<typeof modelFiles>>, card: unknown) {
  const reports = (card as { gate?: { reports?: string[] } | null } | undefined)?.gate?.reports ?? [];
  return reports.flatMap((report) => {
    const summary = parseJson(files.read(join(dirname(report), "summary.json"))) as
      | { suite: string; items: number; models: string[]; metrics: string[]; scores: Record<string, unknown> }
      | undefined;
    return summary
      ? [
          {
            suite: summary.suite,
            items: summary.items,
            models: summary.models,
            metrics: summary.metrics,
            scores: summary.scores,
            report,
          },
        ]
      : [];
  });
}

/**
 * `/dashboard` (the operator: models with their evals and licences, orgs, keys, credit, live usage and revenue,
 * limit hits, extraction flags) and `/playground` (a key holder chats with a model). The pages are static files;
 * everything they show comes from the admin API (admin credential) or the customer API (an API key).
 */
export function registerDashboard(
  app: FastifyInstance,
  options: {
    config: ServeConfig;
    store: Store;
    keys: KeyAuthenticator;
    metrics: ApiMetrics;
    adminToken: string | undefined;
  },
): void {
  const { config, store } = options;
  const requireAdmin = adminCheck(options.adminToken);
  const send = (reply: FastifyReply, asset: { file: string; type: string }) =>
    reply.headers({ ...PAGE_HEADERS, "content-type": asset.type }).send(readFileSync(asset.file));
  for (const [path, asset] of Object.entries(ASSETS)) app.get(path, (_request, reply) => send(reply, asset));

  app.get("/admin/overview", async (request) => {
    await requireAdmin(request);
    const hits = await options.metrics.limitHits.get();
    const limitHits = Object.fromEntries(hits.values.map((v) => [String(v.labels.limit), v.value]));
    const orgs = await store.orgs();
    const keys = await store.listKeys();
    return {
      orgs,
      keys: keys.length,
      liveKeys: keys.filter((k) => k.revoked_at === null).length,
      limitHits,
      models: config.models.map((model) => ({
        name: model.name,
        source: model.gguf ? "gguf" : "upstreams",
        price: model.price,
        maxTokens: model.maxTokens,
        release: model.gguf ? releaseVerdict(isAbsolute(model.gguf) ? model.gguf : resolve(model.gguf)) : undefined,
      })),
    };
  });

  app.get("/admin/models/:name", async (request) => {
    await requireAdmin(request);
    const name = (request.params as { name: string }).name;
    const model = config.models.find((m) => m.name === name);
    if (!model) throw new ApiError(404, `no model '${name}'`, { code: "model_not_found" });
    const files = modelFiles(model.gguf);
    const card = parseJson(files?.read(CARD_FILE));
    return {
      name,
      card: files?.read("MODEL_CARD.md") ?? null,
      licences: parseJson(files?.read("licenses.json")) ?? null,
      gate: (card as { gate?: unknown } | undefined)?.gate ?? null,
      evals: files ? evalSummaries(files, card) : [],
    };
  });

  app.get("/admin/usage/live", async (request) => {
    await requireAdmin(request);
    const parsed = liveQuery.safeParse(request.query ?? {});
    if (!parsed.success) throw new ApiError(400, "minutes: 5 to 1440", { code: "invalid_value" });
    const bucketMs = parsed.data.minutes <= 120 ? 60_000 : 15 * 60_000;
    const since = Date.now() - parsed.data.minutes * 60_000;
    return { bucketMs, since, data: await store.recentUsage(since - (since % bucketMs), bucketMs) };
  });

  app.get("/admin/extraction", async (request) => {
    await requireAdmin(request);
    const { windowDays: days, threshold } = config.extraction;
    const since = Date.now() - days * 86_400_000;
    const flags = [];
    for (const key of await store.listKeys()) {
      if (key.revoked_at !== null) continue;
      const report = extractionReport(await store.requestSignals(key.id, since), days);
      flags.push({ id: key.id, prefix: key.prefix, org: key.org, flagged: report.score >= threshold, ...report });
    }
    return { threshold, days, data: flags.sort((a, b) => b.score - a.score) };
  });

  // The customer's own balance, for the playground (and any client): the org of the key that asks.
  app.get("/v1/balance", async (request) => {
    const auth = await options.keys.authenticate(request);
    const balance = await store.balance(auth.key.org_id);
    return { object: "balance", currency: "micro-units", ...balance };
  });
  // What one request of this org was charged, once settled (a stream settles before its [DONE]).
  app.get("/v1/requests/:id", async (request) => {
    const auth = await options.keys.authenticate(request);
    const row = await store.settledRequest((request.params as { id: string }).id);
    if (!row || row.org_id !== auth.key.org_id)
      throw new ApiError(404, "no settled request of this organisation by that id", { code: "request_not_found" });
    return {
      id: row.request_id,
      object: "request",
      model: row.model,
      usage: { prompt_tokens: row.prompt_tokens, completion_tokens: Number(row.completion_tokens) },
      charged: row.charged,
      outcome: row.outcome,
    };
  });
}
