import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import type { ServeConfig } from "../core/config/serve-schema.ts";
import { newId } from "../core/ids.ts";
import { SILENT_LOGGER, type Logger } from "../core/logger.ts";
import { adminCheck, registerAdmin } from "./admin.ts";
import { registerDashboard } from "./dashboard.ts";
import { Admission } from "./admission.ts";
import { KeyAuthenticator } from "./authentication.ts";
import { Completions } from "./completion.ts";
import { ExtractionMonitor } from "./extraction.ts";
import { ApiError } from "./http/api-error.ts";
import { apiErrorOf, clientError } from "./http/error-mapping.ts";
import type { Limiter } from "./limits/limiter.ts";
import { ApiMetrics } from "./metrics.ts";
import type { ServedModel } from "./models/served-model.ts";
import type { SettlementRetry } from "./settlement-retry.ts";
import type { Store } from "./store/store.ts";

export interface ApiDependencies {
  config: ServeConfig;
  store: Store;
  limiter: Limiter;
  models: Map<string, ServedModel>;
  /** This server process (its holds are recovered after a crash). */
  instance: string;
  /** Where settlements the store could not take wait to be tried again (closed with the app). */
  retries: SettlementRetry;
  adminToken?: string;
  logger?: Logger;
}

/** A request's route as a metrics label (a fixed set: never a client's path). */
function routeName(request: FastifyRequest): string {
  const url = request.routeOptions.url ?? "";
  if (url === "/v1/chat/completions") return "chat";
  if (url === "/v1/completions") return "completions";
  if (url.startsWith("/v1/models")) return "models";
  if (url.startsWith("/admin")) return "admin";
  return url === "" ? "unknown" : url.replace(/^\//, "");
}

/**
 * The official, metered API: OpenAI-compatible chat and text completions and
 * the model list, behind API keys, per-key and per-org limits, and a prepaid
 * credit ledger (reserve the worst case before a request runs, settle the
 * metered cost when it ends, whatever way it ends).
 */
export async function buildApi(deps: ApiDependencies): Promise<FastifyInstance> {
  const { config, store, limiter, models } = deps;
  const logger = deps.logger ?? SILENT_LOGGER;
  const metrics = new ApiMetrics();
  const app = Fastify({
    logger: false,
    bodyLimit: config.bodyLimitBytes,
    // Always minted here, never taken from a client's header: the ledger reserves each id once as `fresh`.
    genReqId: () => newId("req"),
    requestIdHeader: false,
    return503OnClosing: true,
    // A client must send its whole request in time: a slow one (a trickled body, headers that never end) cannot hold a
    // connection. Node enforces it only if the server is created with it, and checks every
    // `connectionsCheckingInterval`.
    requestTimeout: config.requestTimeoutMs,
    http: {
      requestTimeout: config.requestTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, Math.max(50, Math.floor(config.requestTimeoutMs / 4))),
    },
    clientErrorHandler: clientError,
  });
  const keys = new KeyAuthenticator(store, config.plans);
  const retries = deps.retries;
  metrics.countPendingSettlements(() => retries.size);
  /** Requests past admission: counted by `metrics.finished`, not as refused, whatever error they end with. */
  const admitted = new WeakSet<FastifyRequest>();
  // Before the store closes (server.ts closes it after the app): one last try for settlements still pending.
  app.addHook("onClose", async () => retries.close());
  const extraction = config.extraction.throttleRpm
    ? new ExtractionMonitor((keyId, since) => store.requestSignals(keyId, since), config.extraction.windowDays)
    : undefined;

  const admission = new Admission({ config, store, limiter, models, keys, metrics, extraction });
  const completions = new Completions({
    config,
    store,
    admission,
    metrics,
    logger,
    retries,
    instance: deps.instance,
    onAdmitted: (request) => admitted.add(request),
  });

  app.addHook("onRequest", (request, reply, done) => {
    void reply.header("x-request-id", request.id);
    done();
  });

  app.setErrorHandler((error: unknown, request, reply) => {
    const apiError = apiErrorOf(error, config.bodyLimitBytes, (level, event, message) =>
      logger.log(level, event, { requestId: request.id, error: message }),
    );
    // Admitted requests are counted when they finish (with their model); this counts the others, by route and status.
    if (!admitted.has(request)) metrics.refused(routeName(request), apiError.status);
    if (apiError.options.retryAfterSeconds !== undefined)
      void reply.header("retry-after", String(apiError.options.retryAfterSeconds));
    void reply.status(apiError.status).send(apiError.body());
  });
  app.setNotFoundHandler((request, reply) => {
    metrics.refused("unknown", 404);
    void reply
      .status(404)
      .send(
        new ApiError(404, `no route ${request.method} ${request.url.split("?")[0]}`, { code: "unknown_route" }).body(),
      );
  });

  app.get("/v1/models", async (request) => {
    const auth = await keys.authenticate(request);
    const data = [...models.keys()]
      .filter((name) => !auth.scopes || auth.scopes.includes(name))
      .map((id) => ({ id, object: "model", created: 0, owned_by: "avocado" }));
    return { object: "list", data };
  });

  app.get("/v1/models/:model", async (request) => {
    const auth = await keys.authenticate(request);
    const name = (request.params as { model: string }).model;
    admission.modelFor(auth, name);
    return { id: name, object: "model", created: 0, owned_by: "avocado" };
  });

  // Spend and traffic are the operator's business: behind the admin token unless configured public (a scraper inside
  // the network).
  const metricsCheck = config.metricsPublic ? undefined : adminCheck(deps.adminToken);
  app.get("/metrics", async (request, reply) => {
    await metricsCheck?.(request);
    void reply.header("content-type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  // For a load balancer: 503 when this server cannot charge (its ledger cannot write), cannot check limits (Redis away)
  // or has no model that can answer.
  app.get("/health", async (_request, reply) => {
    const served = Object.fromEntries(
      [...models].map(([name, model]) => [name, model.available() ? "ok" : "unavailable"]),
    );
    const ledger = (await store.ledgerAvailable()) ? "ok" : "unavailable";
    const limits = limiter.available() ? "ok" : "unavailable";
    const ok = ledger === "ok" && limits === "ok" && Object.values(served).includes("ok");
    return reply.status(ok ? 200 : 503).send({ ok, ledger, limits, models: served });
  });

  app.post("/v1/chat/completions", { onRequest: admission.screenLargeBody }, (request, reply) =>
    completions.handle("chat", request, reply),
  );
  app.post("/v1/completions", { onRequest: admission.screenLargeBody }, (request, reply) =>
    completions.handle("completions", request, reply),
  );

  registerDashboard(app, { config, store, keys, metrics, adminToken: deps.adminToken });
  registerAdmin(app, {
    store,
    adminToken: deps.adminToken,
    freeTierMicros: config.freeTierMicros,
    plans: config.plans,
    forgetKey: () => keys.forget(),
  });
  return app;
}
