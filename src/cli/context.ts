import { resolve } from "node:path";
import { loadConfig } from "../core/config/load.ts";
import type { AvocadoConfig } from "../core/config/schema.ts";
import { environment } from "../core/environment.ts";
import { createProgress, type Progress } from "../core/progress.ts";
import { pythonExecutable } from "../core/python.ts";

export interface GlobalOptions {
  config?: string;
  json?: boolean;
}

export interface CommandContext {
  config: AvocadoConfig;
  configFile: string | null;
  workspace: string;
  python: string;
  progress: Progress;
  json: boolean;
  /** Prints a result: JSON with --json, text otherwise. */
  print(text: string, value?: unknown): void;
}

export async function commandContext(options: GlobalOptions): Promise<CommandContext> {
  const { config, file } = await loadConfig(options.config);
  const json = options.json === true;
  return {
    config,
    configFile: file,
    workspace: resolve(environment().AVOCADO_WORKSPACE ?? config.workspace),
    python: pythonExecutable(config),
    progress: createProgress(json),
    json,
    print(text, value) {
      if (json) process.stdout.write(`${JSON.stringify({ event: "result", ...(value as object) })}\n`);
      else process.stdout.write(`${text}\n`);
    },
  };
}
