import type { Command } from "commander";
import { parseWorldSize } from "../../tinyworld/world.ts";
import { commandContext, type GlobalOptions } from "../context.ts";
import { ensureTorch } from "../ensure-torch.ts";

const QUESTIONS: Record<string, string> = {
  "tiny-qwen": "Reverse the word 'kalomi'.",
  "tiny-gemma": "Convert 7 km to m.",
  "tiny-gptoss": "What is 17*23?",
};

export function registerQuickstart(program: Command): void {
  program
    .command("quickstart")
    .description("the main job on the embedded default: build the tiny world, then chat with each teacher")
    .option("--size <size>", "default | test", undefined)
    .action(async (options: { size?: string }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const { buildTinyWorld } = await import("../../tinyworld/build.ts");
      const { findTeacher, openTeacher } = await import("../../teachers/registry.ts");
      const size = parseWorldSize(options.size ?? context.config.tinyworld.size);
      ensureTorch(context.python);
      const built = await buildTinyWorld({
        workspace: context.workspace,
        size,
        seed: context.config.tinyworld.seed,
        python: context.python,
        threads: context.config.train.threads,
        progress: context.progress,
      });
      context.print(`\nPer-skill accuracy on the held-out split:\n${built.table}\n`, {
        accuracy: Object.fromEntries(built.cards.map((c) => [c.name, c.accuracy])),
      });
      for (const card of built.cards) {
        const question = QUESTIONS[card.name] ?? "What is 2+2?";
        const teacher = await openTeacher((await findTeacher(context.config, context.workspace, card.name)).config);
        try {
          const result = await teacher.generate({ messages: [{ role: "user", content: question }], maxTokens: 128 });
          const reasoning = result.reasoning ? `  reasoning: ${result.reasoning}\n` : "";
          context.print(
            `${card.name} (${card.family}) — ${question}\n${reasoning}  answer:    ${result.content.trim()}\n`,
            { teacher: card.name, question, reasoning: result.reasoning, content: result.content },
          );
        } finally {
          await teacher.close();
        }
      }
      context.print(
        `Next: npx avocado teachers chat tiny-gptoss "What is 17*23?"  (cards and loss curves in ${context.workspace}/teachers/)\n` +
          `      npx avocado keys create --org me && npx avocado billing credit --org me --amount 1000000 --idempotency-key first && npx avocado serve`,
        {},
      );
    });
}
