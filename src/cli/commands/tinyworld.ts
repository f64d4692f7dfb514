import type { Command } from "commander";
import { InputError } from "../../core/errors.ts";
import { parseWorldSize } from "../../tinyworld/world.ts";
import { commandContext, type GlobalOptions } from "../context.ts";
import { ensureTorch } from "../ensure-torch.ts";

export function registerTinyworld(program: Command): void {
  const tinyworld = program
    .command("tinyworld")
    .description("the miniature offline world: skills with verifiable answers and three tiny teachers");
  tinyworld
    .command("build")
    .description("generate the skills' splits and build tiny-qwen, tiny-gemma and tiny-gptoss (cached)")
    .option("--size <size>", "default | test (overrides tinyworld.size)")
    .option("--seed <n>", "seed (overrides tinyworld.seed)")
    .option("--only <names...>", "build only these teachers")
    .action(async (options: { size?: string; seed?: string; only?: string[] }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const size = parseWorldSize(options.size ?? context.config.tinyworld.size);
      const seed = options.seed !== undefined ? Number(options.seed) : context.config.tinyworld.seed;
      if (!Number.isInteger(seed) || seed < 0)
        throw new InputError(`--seed must be a non-negative integer (found ${JSON.stringify(options.seed)})`);
      ensureTorch(context.python);
      const built = await (
        await import("../../tinyworld/build.ts")
      ).buildTinyWorld({
        workspace: context.workspace,
        size,
        seed,
        python: context.python,
        threads: context.config.train.threads,
        progress: context.progress,
        only: options.only,
      });
      context.print(
        `\nPer-skill accuracy on the held-out split (saved to ${context.workspace}/teachers/accuracy.json):\n${built.table}\n\nTeachers: ${built.cards.map((c) => `${context.workspace}/teachers/${c.name}/`).join(", ")}`,
        { teachers: built.cards.map((c) => ({ name: c.name, accuracy: c.accuracy, gguf: c.files.gguf })) },
      );
    });
}
