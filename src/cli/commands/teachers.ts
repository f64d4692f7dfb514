import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { InputError, NotBuiltError } from "../../core/errors.ts";
import { EmbeddedEngine } from "../../engine/embedded-engine.ts";
import type { TeacherCard } from "../../tinyworld/build-teacher.ts";
import { commandContext, type GlobalOptions } from "../context.ts";

/** A teacher by name (a built tiny teacher in the workspace) or by GGUF path. */
export function resolveTeacherPath(workspace: string, name: string): string {
  if (name.endsWith(".gguf")) return resolve(name);
  const path = join(workspace, "teachers", name, "model.gguf");
  if (!existsSync(path)) throw new InputError(`no teacher named '${name}' in ${workspace}/teachers (run 'avocado tinyworld build', or pass a .gguf path)`);
  return path;
}

const CHANNEL_LABELS: Record<string, { reasoning: string; content: string }> = {
  gptoss: { reasoning: "analysis channel", content: "final channel" },
  qwen: { reasoning: "<think>", content: "answer" },
  gemma: { reasoning: "reasoning", content: "answer" },
};

export function registerTeachers(program: Command): void {
  const teachers = program.command("teachers").description("the teacher models whose outputs are distilled");
  teachers
    .command("list")
    .description("list the built teachers with family, licence and skills")
    .action(async (_options: unknown, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const folder = join(context.workspace, "teachers");
      const names = existsSync(folder) ? (await readdir(folder, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name) : [];
      const cards: TeacherCard[] = [];
      for (const name of names.sort()) {
        const cardPath = join(folder, name, "card.json");
        if (existsSync(cardPath)) cards.push(JSON.parse(await readFile(cardPath, "utf8")) as TeacherCard);
      }
      if (cards.length === 0) return context.print(`no teachers in ${folder} (run 'avocado tinyworld build')`, { teachers: [] });
      const lines = cards.map((c) => `${c.name.padEnd(12)} ${c.family.padEnd(7)} ${c.licence.name.padEnd(22)} skills: ${c.skills.join(", ")}`);
      context.print(lines.join("\n"), { teachers: cards.map((c) => ({ name: c.name, family: c.family, licence: c.licence.name, skills: c.skills })) });
    });
  teachers
    .command("chat <name> <prompt>")
    .description("chat once with a teacher in its family's format (reasoning and answer shown separately)")
    .option("--system <text>", "system prompt")
    .option("--max-tokens <n>", "maximum tokens to generate", "256")
    .option("--temperature <t>", "sampling temperature (0 = greedy)", "0")
    .option("--seed <n>", "sampling seed")
    .option("--logprobs <k>", "also print the exact top-k log-probs of each generated token")
    .action(async (name: string, prompt: string, options: { system?: string; maxTokens: string; temperature: string; seed?: string; logprobs?: string }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const maxTokens = Number(options.maxTokens);
      const temperature = Number(options.temperature);
      if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new InputError(`--max-tokens must be a positive integer (found ${options.maxTokens})`);
      if (!Number.isFinite(temperature) || temperature < 0) throw new InputError(`--temperature must be >= 0 (found ${options.temperature})`);
      const topLogprobs = options.logprobs !== undefined ? Number(options.logprobs) : undefined;
      if (topLogprobs !== undefined && (!Number.isInteger(topLogprobs) || topLogprobs < 0 || topLogprobs > 20)) throw new InputError("--logprobs must be an integer from 0 to 20");
      const engine = await EmbeddedEngine.load(resolveTeacherPath(context.workspace, name));
      try {
        const labels = CHANNEL_LABELS[engine.family] ?? { reasoning: "reasoning", content: "answer" };
        let current: "reasoning" | "content" | undefined;
        const messages = [...(options.system !== undefined ? [{ role: "system" as const, content: options.system }] : []), { role: "user" as const, content: prompt }];
        const result = await engine.chat({
          messages,
          maxTokens,
          temperature,
          seed: options.seed !== undefined ? Number(options.seed) : undefined,
          topLogprobs,
          onChunk: context.json
            ? undefined
            : (chunk) => {
                if (chunk.kind !== current) {
                  process.stdout.write(`${current ? "\n" : ""}[${chunk.kind === "reasoning" ? labels.reasoning : labels.content}]\n`);
                  current = chunk.kind;
                }
                process.stdout.write(chunk.text);
              },
        });
        if (context.json) {
          context.print("", { teacher: name, family: engine.family, reasoning: result.reasoning, content: result.content, finishReason: result.finishReason, usage: result.usage, logprobs: result.logprobs });
        } else {
          process.stdout.write(`\n\n(${result.usage.promptTokens} prompt + ${result.usage.completionTokens} completion tokens, finish: ${result.finishReason})\n`);
          if (result.logprobs) {
            for (const lp of result.logprobs) process.stdout.write(`${JSON.stringify(lp.text).padEnd(16)} ${lp.logprob.toFixed(3)}  top: ${lp.top.map((t) => `${JSON.stringify(t.text)} ${t.logprob.toFixed(2)}`).join(", ")}\n`);
          }
        }
      } finally {
        await engine.dispose();
      }
    });
  teachers
    .command("probe <name>")
    .description("latency, tokens/s and logprob support of a teacher")
    .action(() => {
      throw new NotBuiltError("teachers probe", "the teachers issue (#3)");
    });
}
