import { newId } from "../core/ids.ts";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { ServeConfig } from "../core/config/serve-schema.ts";
import { ContextLengthError, errorMessage, InputError } from "../core/errors.ts";
import { SILENT_LOGGER, type Logger } from "../core/logger.ts";
import { ApiError } from "./http/api-error.ts";
import { apiErrorOf, clientError, contextLengthError, generationError } from "./http/error-mapping.ts";
import { completionBody } from "./http/render.ts";
import {
  chatRequestSchema,
  completionRequestSchema,
  messageText,
  type ChatRequest,
  type CompletionRequest,
} from "./http/request-schemas.ts";
import { checkJsonSchema, maxTokensOf, parseBody, promptBytes } from "./http/request-checks.ts";
import { KeyAuthenticator, type Authenticated } from "./authentication.ts";
import { type Lease, type Limiter, type LimitScope } from "./limits/limiter.ts";
import { ExtractionMonitor, simhash } from "./extraction.ts";
import { ApiMetrics } from "./metrics.ts";
import { streamResponse } from "./stream-response.ts";
import { Cancel } from "../core/cancel.ts";
import { costOf, type GenerationRequest, type GenerationResult, type ServedModel } from "./models/served-model.ts";
import { InsufficientCreditError, type Hold, type Store } from "./store/store.ts";
import type { SettleUsage } from "./store/ledger.ts";
import { adminCheck, registerAdmin } from "./admin.ts";
import { WITHHELD, type SettlementRetry } from "./settlement-retry.ts";

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

/**
 * Past this many bytes (~4 ms of tokenizing), a prompt's credit is checked before it is tokenized, and a body
 * from an org with no credit is refused before it is read.
 */
const LARGE_PROMPT_BYTES = 16 * 1024;

/** The prompt's exact tokens, refused (400) past the model's context. */
function countPromptTokens(model: ServedModel, generation: GenerationRequest): number {
  let tokens: number;
  try {
    tokens = model.promptTokens(generation);
  } catch (error) {
    if (error instanceof ContextLengthError) throw contextLengthError(error, promptParam(generation));
    if (error instanceof InputError) throw new ApiError(400, error.message, { code: "invalid_prompt" });
    throw new ApiError(422, `the prompt cannot be tokenized (${errorMessage(error)})`, { code: "invalid_prompt" });
  }
  if (model.contextTokens !== undefined && tokens >= model.contextTokens)
    throw contextLengthError(new ContextLengthError(tokens, model.contextTokens), promptParam(generation));
  return tokens;
}

/** The field a prompt came in: a chat's messages, or a text completion's prompt. */
function promptParam(generation: GenerationRequest): "messages" | "prompt" {
  return generation.prompt === undefined ? "messages" : "prompt";
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

  function modelFor(auth: Authenticated, name: string): ServedModel {
    const model = models.get(name);
    if (!model)
      throw new ApiError(404, `The model '${name}' does not exist`, { code: "model_not_found", param: "model" });
    if (auth.scopes && !auth.scopes.includes(name))
      throw new ApiError(403, `this key may not use '${name}'`, { code: "model_not_allowed", param: "model" });
    return model;
  }

  function limitScopes(auth: Authenticated): LimitScope[] {
    // The automatic throttle of keys whose extraction score crossed the threshold.
    if (extraction && extraction.score(auth.key.id) >= config.extraction.threshold)
      return [...auth.limits, { id: `throttle:${auth.key.id}`, rpm: config.extraction.throttleRpm }];
    return auth.limits;
  }

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
    modelFor(auth, name);
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

  /** Everything a chat or text completion shares: auth, limits, hold, generation, settlement. */
  async function complete(
    route: "chat" | "completions",
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<unknown> {
    const started = performance.now();
    const auth = await keys.authenticate(request);
    const body: ChatRequest | CompletionRequest =
      route === "chat" ? parseBody(chatRequestSchema, request.body) : parseBody(completionRequestSchema, request.body);
    const model = modelFor(auth, body.model);
    const chat = route === "chat" ? (body as ChatRequest) : undefined;
    const text = route === "completions" ? (body as CompletionRequest) : undefined;
    const maxTokens = maxTokensOf(body, chat, model);
    const n = body.n ?? 1;
    const stream = body.stream === true;
    if (text?.echo) throw new ApiError(422, "echo is not supported", { code: "unsupported", param: "echo" });
    // Protecting the closed model: log-probs only as the plan allows.
    const topLogprobs = chat ? (chat.logprobs ? (chat.top_logprobs ?? 0) : undefined) : (text?.logprobs ?? undefined);
    if (topLogprobs !== undefined && (auth.plan.topLogprobs === 0 || topLogprobs > auth.plan.topLogprobs)) {
      throw new ApiError(
        403,
        auth.plan.topLogprobs === 0
          ? "logprobs are not available on this key's plan"
          : `top_logprobs is limited to ${auth.plan.topLogprobs} on this key's plan`,
        { code: "logprobs_not_allowed", param: "top_logprobs" },
      );
    }
    const abort = new Cancel();
    // One object of a fixed shape, no spreads (V8 copies a spread property by property, a measurable part of a
    // request's CPU): its maxTokens becomes what the hold affords once that is known.
    const generation: GenerationRequest = {
      messages: chat ? chat.messages.map((m) => ({ role: m.role, content: messageText(m.content) })) : undefined,
      prompt: chat ? undefined : text!.prompt,
      maxTokens,
      cancel: abort,
      onDelta: undefined,
      temperature: body.temperature ?? undefined,
      topP: body.top_p ?? undefined,
      presencePenalty: body.presence_penalty || undefined,
      frequencyPenalty: body.frequency_penalty || undefined,
      seed: body.seed ?? undefined,
      stop: typeof body.stop === "string" ? [body.stop] : (body.stop ?? undefined),
      topLogprobs,
      json: chat?.response_format?.type === "json_object" || chat?.response_format?.type === "json_schema",
      // Structured outputs; a json_schema without a schema is any JSON object.
      jsonSchema:
        chat?.response_format?.type === "json_schema" && chat.response_format.json_schema.schema
          ? {
              name: chat.response_format.json_schema.name,
              schema: chat.response_format.json_schema.schema,
              strict: chat.response_format.json_schema.strict,
            }
          : undefined,
    };
    if (generation.jsonSchema) {
      try {
        checkJsonSchema(generation.jsonSchema.schema);
        await model.check?.(generation);
      } catch (error) {
        if (!(error instanceof InputError)) throw error;
        throw new ApiError(422, `response_format: ${error.message}`, {
          code: "invalid_response_format",
          param: "response_format",
        });
      }
    }
    // Cheap checks before the tokenizer (which takes ~0.3 s a megabyte): the prompt's size against the context, the
    // limits, and for a large prompt the credit, so a key without credit cannot keep the server tokenizing.
    const bytes = promptBytes(generation);
    const fewest = model.minimumPromptTokens(bytes);
    if (model.contextTokens !== undefined && fewest >= model.contextTokens)
      throw contextLengthError(new ContextLengthError(fewest, model.contextTokens, true), promptParam(generation));
    // A small prompt is tokenized at once (a few milliseconds at most): the limits then take its exact count.
    const early = bytes <= LARGE_PROMPT_BYTES ? countPromptTokens(model, generation) : undefined;
    // The extraction signals are needed only at settlement: worked out while the model generates.
    let signals: SettleUsage["signals"];
    const admission = await limiter.admit(request.id, limitScopes(auth), (early ?? fewest) * n);
    if (!admission.ok) {
      metrics.limitHits.inc({ limit: admission.limit });
      throw new ApiError(
        429,
        `rate limit reached (${admission.limit} of ${admission.scope.split(":")[0]}); retry after ${Math.ceil(admission.retryAfterMs / 1000)} s`,
        {
          code: `rate_limit_${admission.limit}`,
          retryAfterSeconds: Math.ceil(admission.retryAfterMs / 1000),
        },
      );
    }
    const lease: Lease = admission.lease;
    admitted.add(request);
    try {
      const price = model.config.price;
      let promptTokens = early;
      if (promptTokens === undefined) {
        const least = costOf(price, fewest * n, n);
        const { available } = await store.balance(auth.key.org_id);
        if (available < least) {
          metrics.limitHits.inc({ limit: "credit" });
          throw new InsufficientCreditError(least, Math.max(available, 0));
        }
        promptTokens = countPromptTokens(model, generation);
        // TPM took the size's lower bound at admission; the rest of the prompt now.
        if (promptTokens > fewest) lease.addTokens((promptTokens - fewest) * n);
      }
      const worst = costOf(price, promptTokens * n, maxTokens * n);
      let hold: Hold;
      try {
        // A non-stream request sends nothing before its settlement, so its hold may commit with it. The request id was
        // minted for this request (genReqId) and is reserved once here: the store need not look for an earlier hold of
        // it.
        hold = await store.reserve(
          {
            requestId: request.id,
            orgId: auth.key.org_id,
            keyId: auth.key.id,
            model: model.config.name,
            amount: worst,
            minimum: costOf(price, promptTokens * n, n),
            instance: deps.instance,
          },
          { lazy: !stream, fresh: true },
        );
      } catch (error) {
        if (error instanceof InsufficientCreditError) metrics.limitHits.inc({ limit: "credit" });
        throw error;
      }
      const held = hold.amount;
      // Less credit than the worst case: generate only what it pays for (the stream then ends cleanly at that length).
      const affordable =
        held >= worst || price.outputPerMillion === 0
          ? maxTokens
          : Math.max(
              1,
              Math.floor((held * 1_000_000 - promptTokens * n * price.inputPerMillion) / (price.outputPerMillion * n)),
            );
      generation.maxTokens = affordable;
      reply.raw.on("close", () => {
        if (!reply.raw.writableFinished) abort.abort(new Error("the client disconnected"));
      });
      // One that left before the listener was there (while its prompt was counted, its credit held) is seen now.
      if (request.raw.socket?.destroyed) abort.abort(new Error("the client disconnected"));
      // The generation starts while the hold commits; nothing reaches the client before it has.
      let durable = true;
      const committed = hold.durable.catch((error: unknown) => {
        durable = false;
        abort.abort(error);
        logger.log("error", "api.hold_not_committed", { requestId: request.id, error: errorMessage(error) });
        throw new ApiError(503, "the credit ledger is unavailable; nothing was charged", {
          code: "ledger_unavailable",
          retryAfterSeconds: 1,
        });
      });
      const results: GenerationResult[] = [];
      let outcome = "ok";
      let settled = false;
      try {
        if (stream) {
          await streamResponse({
            route,
            id: request.id,
            model,
            generation,
            n,
            promptTokens,
            includeUsage: body.stream_options?.include_usage === true,
            reply,
            lease,
            started,
            results,
            committed,
            config,
            logger,
            metrics,
          });
        } else {
          const generated = Promise.all(Array.from({ length: n }, () => model.generate(generation)));
          generated.catch(() => undefined);
          signals = signalsOf(generation, body.temperature);
          results.push(...(await generated));
        }
      } catch (error) {
        outcome = abort.aborted ? "cancelled" : "error";
        if (!durable) throw error;
        if (!stream) throw generationError(error);
        logger.log("warn", "api.stream_failed", { requestId: request.id, error: errorMessage(error) });
      } finally {
        const usedPrompt = results.reduce((sum, r) => sum + r.promptTokens, 0);
        const usedCompletion = results.reduce((sum, r) => sum + r.completionTokens, 0);
        const cost = costOf(price, usedPrompt, usedCompletion);
        // What this request is charged, as metrics and the access log report it.
        let charged = 0;
        // A hold that never committed has nothing to settle.
        if (durable) {
          // A client that went away mid-answer (stream or not) cancelled it, though the model ended normally.
          if (abort.aborted && outcome === "ok") outcome = "cancelled";
          const usage: SettleUsage = {
            promptTokens: usedPrompt,
            completionTokens: usedCompletion,
            cost,
            outcome,
            signals: signals ?? signalsOf(generation, body.temperature),
          };
          try {
            settled = await store.settle(request.id, usage);
            if (settled) charged = Math.min(cost, held);
          } catch (error) {
            // Tried again until it lands: a stream has been read, and is charged; a non-stream answer is withheld, and
            // recorded at no cost.
            logger.log("error", "api.settle_failed", { requestId: request.id, error: errorMessage(error) });
            if (stream) charged = Math.min(cost, held);
            else outcome = WITHHELD;
            retries.add(request.id, stream ? usage : { ...usage, cost: 0, outcome });
          }
        }
        if (!stream) lease.addTokens(usedCompletion);
        const seconds = (performance.now() - started) / 1000;
        // A stream ends only once its cost is settled: a client that has read [DONE] sees its charge.
        if (stream && reply.raw.headersSent && !reply.raw.destroyed) reply.raw.end("data: [DONE]\n\n");
        // Metrics and the access log once the answer has gone, not on its way.
        setImmediate(() => {
          metrics.finished(
            route,
            model.config.name,
            stream,
            outcome === "ok" ? "200" : outcome,
            { prompt: usedPrompt, completion: usedCompletion },
            charged,
            seconds,
          );
          // The access log: who, what, how much — never the key, the prompt or the answer.
          logger.log("info", "api.request", {
            requestId: request.id,
            key: auth.key.prefix,
            org: auth.key.org_id,
            model: model.config.name,
            route,
            stream,
            outcome,
            promptTokens: usedPrompt,
            completionTokens: usedCompletion,
            costMicros: charged,
            ms: Math.round(seconds * 100_000) / 100,
          });
          if (usedPrompt !== promptTokens * n && model.config.gguf)
            logger.log("warn", "api.token_count_mismatch", {
              requestId: request.id,
              counted: promptTokens * n,
              engine: usedPrompt,
            });
          // Never expected (holds are upper bounds): the charge is capped at the hold, so say so loudly.
          if (cost > held) logger.log("error", "api.cost_above_hold", { requestId: request.id, cost, held });
        });
      }
      if (stream) return reply;
      // Delivered only when charged: the hold committed (with or before the settlement) and the settlement did.
      await committed;
      if (!settled)
        throw new ApiError(503, "the credit ledger could not record this request; nothing was charged", {
          code: "ledger_unavailable",
          retryAfterSeconds: 1,
        });
      return completionBody(route, request.id, model.config.name, results);
    } finally {
      // Awaited: with Redis, the slot is free before the client has its answer (its next request, on another replica,
      // must not find it taken).
      await lease.release();
    }
  }

  /**
   * A large body from a key whose org has no credit at all is refused on its
   * headers, before a byte of it is read, and its connection closed: reading and
   * parsing megabytes for a request that cannot be paid for is free work for an attacker.
   */
  function screenLargeBody(request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void): void {
    // A callback hook: the common case (a small body) makes no promise.
    if (!(Number(request.headers["content-length"]) > LARGE_PROMPT_BYTES)) return done();
    const screen = async () => {
      const auth = await keys.authenticate(request);
      if ((await store.balance(auth.key.org_id)).available > 0) return;
      metrics.limitHits.inc({ limit: "credit" });
      throw new ApiError(402, "this key's organisation has no credit left", { code: "insufficient_credit" });
    };
    screen().then(
      () => done(),
      (error: unknown) => {
        void reply.header("connection", "close");
        done(error as Error);
      },
    );
  }

  app.post("/v1/chat/completions", { onRequest: screenLargeBody }, (request, reply) =>
    complete("chat", request, reply),
  );
  app.post("/v1/completions", { onRequest: screenLargeBody }, (request, reply) =>
    complete("completions", request, reply),
  );

  registerAdmin(app, {
    store,
    adminToken: deps.adminToken,
    freeTierMicros: config.freeTierMicros,
    plans: config.plans,
    forgetKey: () => keys.forget(),
  });
  return app;
}

/**
 * What a request looked like, for extraction detection: its prompt's simhash (never the prompt), log-probs asked for,
 * temperature.
 */
function signalsOf(
  generation: Pick<GenerationRequest, "prompt" | "messages" | "topLogprobs">,
  temperature: number | null | undefined,
): NonNullable<SettleUsage["signals"]> {
  return {
    promptSimhash: simhash(generation.prompt ?? (generation.messages ?? []).map((m) => m.content).join("\n")),
    logprobs: generation.topLogprobs ?? -1,
    temperature: temperature ?? null,
  };
}
