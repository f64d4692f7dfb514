import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import { servedModelSchema, type ServeConfig } from "../../core/config/serve-schema.ts";
import { InputError } from "../../core/errors.ts";
import { JsonLogger } from "../../core/logger.ts";
import { commandContext, type GlobalOptions } from "../context.ts";

/** The embedded default when no model is configured: the built tiny models, at a demonstration price. */
async function defaultModels(workspace: string): Promise<ServeConfig["models"]> {
  const folder = join(workspace, "teachers");
  if (!existsSync(folder)) return [];
  const names = (await readdir(folder, { withFileTypes: true }))
    .filter((d) => d.isDirectory() && existsSync(join(folder, d.name, "model.gguf")))
    .map((d) => d.name);
  return names.sort().map((name) =>
    servedModelSchema.parse({
      name,
      gguf: join(folder, name, "model.gguf"),
      price: { inputPerMillion: 1_000_000, outputPerMillion: 2_000_000 },
      maxTokens: 256,
    }),
  );
}

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("the official metered, paid OpenAI-compatible API (keys, limits, credit ledger)")
    .option("--port <port>", "port (default from avocado.yaml serve.port)")
    .option("--host <host>", "address to listen on")
    .option("--store <url>", "sqlite:<path> or postgres://…")
    .option("--redis <url>", "share limits across replicas through Redis")
    .option("--gguf <name=path...>", "serve a local GGUF under a name (repeatable), at --price")
    .option("--price <in,out>", "micro-units per million input,output tokens for --gguf models", "1000000,2000000")
    .option("--allow-ungated", "serve a student whose release gate failed or never ran (its card says so)")
    .action(
      async (
        options: {
          port?: string;
          host?: string;
          store?: string;
          redis?: string;
          gguf?: string[];
          price: string;
          allowUngated?: boolean;
        },
        command: Command,
      ) => {
        const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
        const config: ServeConfig = { ...context.config.serve };
        if (options.port !== undefined) config.port = Number(options.port);
        if (!Number.isInteger(config.port) || config.port < 0 || config.port > 65535)
          throw new InputError(`--port must be a port number (found ${options.port})`);
        if (options.host) config.host = options.host;
        if (options.store) config.store = options.store;
        if (options.redis) config.redis = options.redis;
        const [input, output] = options.price.split(",").map(Number);
        if (options.gguf) {
          config.models = options.gguf.map((spec) => {
            const [name, path] = spec.split("=");
            if (!name || !path) throw new InputError(`--gguf takes name=path (found ${spec})`);
            const parsed = servedModelSchema.safeParse({
              name,
              gguf: path,
              price: { inputPerMillion: input, outputPerMillion: output },
            });
            if (!parsed.success) throw new InputError(`--gguf ${spec} / --price: ${parsed.error.issues[0]?.message}`);
            return parsed.data;
          });
        }
        if (config.models.length === 0) config.models = await defaultModels(context.workspace);
        // The access log is written every 50 ms (one write for all the requests of that time), not once per request.
        const logger = new JsonLogger(undefined, "info", { flushMs: 50 });
        const adminToken = process.env[config.adminTokenEnv];
        if (adminToken) logger.addSecret(adminToken);
        const { startApi } = await import("../../serve/server.ts");
        const api = await startApi({
          config,
          workspace: context.workspace,
          adminToken,
          logger,
          allowUngated: options.allowUngated === true,
        });
        logger.log("info", "api.listening", {
          url: api.url,
          instance: api.instance,
          models: config.models.map((m) => m.name),
          store: config.store.replace(/\/\/[^@]*@/, "//…@"),
          redis: Boolean(config.redis),
          recovered: api.recovered,
          admin: Boolean(adminToken),
        });
        context.print(
          `avocado serve: ${api.url}/v1 (${config.models.map((m) => m.name).join(", ")}); recovered ${api.recovered} open hold(s)`,
          { url: api.url, recovered: api.recovered },
        );
        const stop = async () => {
          await api.close();
          process.exit(0);
        };
        process.once("SIGINT", () => void stop());
        process.once("SIGTERM", () => void stop());
        await new Promise(() => undefined);
      },
    );
}
