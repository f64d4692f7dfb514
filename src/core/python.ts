import { spawnSync } from "node:child_process";
import type { AvocadoConfig } from "./config/schema.ts";
import { environment } from "./environment.ts";

/** The Python that runs the trainer: AVOCADO_PYTHON, else the config's `python` (default /usr/bin/python3). */
export function pythonExecutable(config?: Pick<AvocadoConfig, "python">): string {
  return environment().AVOCADO_PYTHON ?? config?.python ?? "/usr/bin/python3";
}

/** The torch version the Python sees, or null when it cannot import torch. */
export function torchVersion(python: string): string | null {
  const result = spawnSync(python, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
  return result.status === 0 ? result.stdout.trim() : null;
}
