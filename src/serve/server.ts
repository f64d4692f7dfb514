import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { hostname } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import type { FastifyInstance } from "fastify";
import type { ServeConfig } from "../core/config/serve-schema.ts";
import { InputError } from "../core/errors.ts";
import { SILENT_LOGGER, type Logger } from "../core/logger.ts";
import { buildApi } from "./app.ts";
import type { Limiter } from "./limits/limiter.ts";
import { MemoryLimiter } from "./limits/memory-limiter.ts";
import { RedisLimiter } from "./limits/redis-limiter.ts";
import { releaseVerdict } from "../export/model-card.ts";
import { EmbeddedServedModel } from "./models/embedded-model.ts";
import type { ServedModel } from "./models/served-model.ts";
import { UpstreamServedModel } from "./models/upstream-model.ts";
import { SettlementRetry } from "./settlement-retry.ts";
import { storeUrl } from "./store/store-url.ts";
import { Store } from "./store/store.ts";

/** Holds older than this are released whatever instance holds them (no request runs this long). */
const STALE_HOLD_MS = 60 * 60_000;

export interface RunningApi {
  app: FastifyInstance;
  url: string;
  store: Store;
  instance: string;
  recovered: number;
  close(): Promise<void>;
}

/**
 * Settles what a dead server left open: every hold of this instance
 * name (a server restarting on the same host and port is its successor), and
 * any hold older than an hour. They are released, refunding what they held:
 * the usage of a request that died with its server is unknown. (Those whose
 * usage is known, a settlement the store could not take before the server
 * died, are settled from the server's pending file first: `SettlementRetry.resumeDead`.)
 */
export async function recoverHolds(
  store: Store,
  instance: string | undefined,
  pending?: SettlementRetry,
): Promise<number> {
  const open = [
    ...(instance ? await store.openHolds({ instance }) : []),
    ...(await store.openHolds({ olderThanMs: STALE_HOLD_MS })),
  ];
  let recovered = 0;
  for (const hold of open) {
    // A hold whose settlement (its usage known) waits for the store to take it is not released.
    if (pending?.has(hold.request_id)) continue;
    if (
      await store.settle(hold.request_id, {
        promptTokens: 0,
        completionTokens: 0,
        cost: 0,
        outcome: "recovered",
      })
    )
      recovered++;
  }
  return recovered;
}

/** Where a server keeps the settlements its store could not take yet (see `SettlementRetry`). */
const pendingSettlementsFolder = (workspace: string) => join(workspace, ".avocado", "pending-settlements");

/** A student is sold only once its release gate passed (`avocado-card.json` beside its GGUF). */
function checkReleases(config: ServeConfig, allowUngated: boolean, logger: Logger): void {
  for (const model of config.models) {
    if (!model.gguf) continue;
    const path = isAbsolute(model.gguf) ? model.gguf : resolve(model.gguf);
    const release = releaseVerdict(path);
    if (!("reason" in release)) continue;
    const underpowered =
      release.verdict === "fail" && release.underpowered
        ? " (an underpowered suite needs more items, or to be left out of student.suites, not more training)"
        : "";
    if (!allowUngated)
      throw new InputError(
        `refusing to serve ${model.name} (${path}): ${release.reason}. Retrain until the gate passes${underpowered}, or pass --allow-ungated to serve it anyway (not for customers)`,
      );
    logger.log("warn", "api.ungated_model", { model: model.name, verdict: release.verdict, reason: release.reason });
  }
}

/** Listens, turning the usual failures into clear errors (the address taken, not allowed, not this machine's). */
async function listen(app: FastifyInstance, host: string, port: number): Promise<string> {
  try {
    return await app.listen({ host, port });
  } catch (error) {
    const code = (error as { code?: string }).code;
    const where = `${host}:${port}`;
    if (code === "EADDRINUSE")
      throw new InputError(
        `cannot listen on ${where}: the address is in use (another avocado serve?); choose another with --port or serve.port`,
        { cause: error },
      );
    if (code === "EACCES")
      throw new InputError(`cannot listen on ${where}: not allowed (ports below 1024 need privileges)`, {
        cause: error,
      });
    if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND")
      throw new InputError(
        `cannot listen on ${where}: ${host} is not an address of this machine (serve.host / --host)`,
        { cause: error },
      );
    throw error;
  }
}

export async function startApi(options: {
  config: ServeConfig;
  workspace: string;
  adminToken?: string;
  logger?: Logger;
  models?: Map<string, ServedModel>;
  /** Serve a student whose release gate failed or never ran (its card says so): for trying it, not for customers. */
  allowUngated?: boolean;
}): Promise<RunningApi> {
  const { config } = options;
  const logger = options.logger ?? SILENT_LOGGER;
  if (!options.models) checkReleases(config, options.allowUngated === true, logger);
  // A long-running server: on SQLite its ledger journals each operation (one write) and commits its tables in batches.
  const store = await Store.open(storeUrl(config.store, options.workspace), {
    journal: true,
    logger,
    statementTimeoutMs: config.storeTimeoutMs,
  });
  // What is open so far, closed in reverse if the start fails (a failed start must not leave the process running).
  const opened: (() => Promise<void>)[] = [() => store.close()];
  const retries = new SettlementRetry(store, logger, pendingSettlementsFolder(options.workspace));
  opened.push(() => retries.close());
  let limiter: Limiter;
  const models = options.models ?? new Map<string, ServedModel>();
  let app: FastifyInstance;
  let instance: string;
  let recovered: number;
  let address: string;
  // Connections that have not sent a request yet: closing the server leaves them open (they are not idle to Node, and
  // the check that would time them out stops with the server), so a shutdown closes them itself.
  const waiting = new Set<Socket>();
  try {
    // A fixed port names the instance, so a restart recovers its predecessor; an ephemeral port is a one-off instance.
    instance =
      config.port === 0 ? `${hostname()}:ephemeral:${process.pid}:${Date.now()}` : `${hostname()}:${config.port}`;
    // Settlements a dead server of this workspace could not make (its store was away) land first, then the holds left
    // without usage are released.
    const resumed = await retries.resumeDead();
    if (resumed.files > 0)
      logger.log("warn", "api.resumed_settlements", {
        files: resumed.files,
        settled: resumed.settled,
        pending: retries.size,
      });
    recovered = await recoverHolds(store, instance, retries);
    if (recovered > 0) logger.log("warn", "api.recovered_holds", { instance, recovered });
    limiter = config.redis ? await RedisLimiter.connect(config.redis, config.redisPrefix, logger) : new MemoryLimiter();
    const opener = limiter;
    opened.push(() => opener.close());
    if (!options.models) {
      for (const model of config.models) {
        const served = model.gguf
          ? await EmbeddedServedModel.load(model, isAbsolute(model.gguf) ? model.gguf : resolve(model.gguf))
          : new UpstreamServedModel(model);
        models.set(model.name, served);
        opened.push(() => served.close());
        // Without per-event usage or a tokenizer, a stream cut before its usage can only be counted one token an event.
        if (model.upstreams && model.streamUsage === "final" && !model.tokenizer) {
          logger.log("warn", "api.stream_metering_by_event", {
            model: model.name,
            fix: "set streamUsage: continuous (vLLM) or the model's tokenizer family",
          });
        }
      }
    }
    if (models.size === 0)
      throw new InputError(
        "no models to serve: add serve.models to avocado.yaml (a gguf path or upstream URLs, with prices)",
      );
    const built = await buildApi({
      config,
      store,
      limiter,
      models,
      instance,
      retries,
      adminToken: options.adminToken,
      logger,
    });
    app = built;
    opened.push(() => built.close());
    app.server.on("connection", (socket: Socket) => {
      waiting.add(socket);
      socket.once("close", () => waiting.delete(socket));
    });
    app.server.prependListener("request", (request: IncomingMessage) => waiting.delete(request.socket));
    address = await listen(app, config.host, config.port);
  } catch (error) {
    for (const close of opened.reverse()) await close().catch(() => undefined);
    throw error;
  }
  // Every five minutes: only the stale holds (older than an hour), whoever left them.
  const sweep = setInterval(() => void recoverHolds(store, undefined, retries).catch(() => undefined), 5 * 60_000);
  sweep.unref();
  return {
    app,
    url: address,
    store,
    instance,
    recovered,
    /**
     * Stops taking connections, closes idle ones and ones that never sent a request, and lets the requests in flight
     * finish; past `shutdownGraceMs` their connections are closed too (each request is then settled as cancelled,
     * charged what it had generated). Then the models, the limiter and the store.
     */
    async close() {
      clearInterval(sweep);
      const closed = app.close();
      for (const socket of waiting) socket.destroy();
      const grace = setTimeout(() => {
        logger.log("warn", "api.shutdown_grace_over", { graceMs: config.shutdownGraceMs });
        app.server.closeAllConnections();
      }, config.shutdownGraceMs);
      await closed;
      clearTimeout(grace);
      for (const model of models.values()) await model.close();
      await limiter.close();
      await store.close();
    },
  };
}
