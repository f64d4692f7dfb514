import type { FastifyReply, FastifyRequest } from "fastify";
import type { ServeConfig } from "../core/config/serve-schema.ts";
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { countPromptTokens, type Admission } from "./admission.ts";
import { simhash } from "./extraction.ts";
import { ApiError } from "./http/api-error.ts";
import { generationError } from "./http/error-mapping.ts";
import { completionBody } from "./http/render.ts";
import type { ApiMetrics } from "./metrics.ts";
import { costOf, type GenerationRequest, type GenerationResult } from "./models/served-model.ts";
import { WITHHELD, type SettlementRetry } from "./settlement-retry.ts";
import type { SettleUsage } from "./store/ledger.ts";
import { InsufficientCreditError, type Hold, type Store } from "./store/store.ts";
import { streamResponse } from "./stream-response.ts";

export interface CompletionDependencies {
  config: ServeConfig;
  store: Store;
  admission: Admission;
  metrics: ApiMetrics;
  logger: Logger;
  retries: SettlementRetry;
  /** This server process (its holds are recovered after a crash). */
  instance: string;
  /** Told of each request let in (its errors are then counted with its model, not as refusals). */
  onAdmitted: (request: FastifyRequest) => void;
}

/**
 * A chat or text completion, admitted, then billed: reserve the worst case, generate (the generation starts while
 * the hold commits; nothing is sent before it has), settle the metered cost whatever way the request ends, and
 * report it (metrics, the access log).
 */
export class Completions {
  constructor(private readonly deps: CompletionDependencies) {}

  async handle(route: "chat" | "completions", request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const { config, store, metrics, logger, retries } = this.deps;
    const { started, auth, body, model, generation, n, stream, maxTokens, early, fewest, lease } =
      await this.deps.admission.admit(route, request);
    this.deps.onAdmitted(request);
    const abort = generation.cancel;
    // The extraction signals are needed only at settlement: worked out while the model generates.
    let signals: SettleUsage["signals"];
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
            instance: this.deps.instance,
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
