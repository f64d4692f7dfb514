import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { writeFileAtomic, writeJsonAtomic } from "../../core/atomic-write.ts";
import { CONFIG_FILE } from "../../core/config/load.ts";
import { configJsonSchema, DEFAULT_CONFIG_YAML } from "../../core/config/default-config.ts";
import { InputError } from "../../core/errors.ts";

export function registerInit(program: Command): void {
  program
    .command("init")
    .description("write a commented default avocado.yaml and its JSON Schema (avocado.schema.json)")
    .option("--force", "overwrite an existing avocado.yaml")
    .action(async (options: { force?: boolean }) => {
      const path = resolve(CONFIG_FILE);
      if (existsSync(path) && !options.force) throw new InputError(`${path} already exists (use --force to overwrite)`);
      await writeFileAtomic(path, DEFAULT_CONFIG_YAML);
      await writeJsonAtomic(resolve("avocado.schema.json"), configJsonSchema());
      process.stdout.write(`wrote ${path} and avocado.schema.json\n`);
    });
}
