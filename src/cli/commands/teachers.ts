import type { Command } from "commander";
import { REASONING_EFFORTS, type ReasoningEffort } from "../../chat/reasoning-effort.ts";
import { InputError } from "../../core/errors.ts";
import { JsonLogger } from "../../core/logger.ts";
import type { TeacherEntry } from "../../teachers/registry.ts";
import type { TeacherMessage } from "../../teachers/teacher.ts";
import { commandContext, type CommandContext, type GlobalOptions } from "../context.ts";
import { positiveInteger } from "../options.ts";

const CHANNEL_LABELS: Record<string, { reasoning: string; content: string }> = {
  gptoss: { reasoning: "analysis channel", content: "final channel" },
  qwen: { reasoning: "<think>", content: "answer" },
};

/** Opens a teacher with warnings (retries, breaker) logged as JSON lines on stderr, secrets redacted. */
async function open(context: CommandContext, entry: TeacherEntry) {
  const { openTeacher } = await import("../../teachers/registry.ts");
  return openTeacher(entry.config, {
    baseDirectory: context.configFile ? `${context.configFile}/..` : process.cwd(),
    logger: new JsonLogger(undefined, "warn"),
  });
}

export function registerTeachers(program: Command): void {
  const teachers = program
    .command("teachers")
    .description(
      "the teacher models whose outputs are distilled (configured servers and GGUFs, and the built tiny teachers)",
    );
  teachers
    .command("list")
    .description("every teacher with its health, family, licence, transport and capabilities")
    .option("--no-health", "skip the health checks (no model loads, no requests)")
    .action(async (options: { health: boolean }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const { teacherEntries } = await import("../../teachers/registry.ts");
      const entries = await teacherEntries(context.config, context.workspace);
      if (entries.length === 0)
        return context.print(`no teachers: run 'avocado tinyworld build', or add teachers to avocado.yaml`, {
          teachers: [],
        });
      const rows = [];
      for (const entry of entries) {
        const c = entry.config;
        const row = {
          name: c.name,
          family: c.family,
          licence: entry.licence,
          refused: entry.refused,
          transport: c.transport === "http" ? `http/${c.engine}` : "embedded",
          source: entry.source,
          health: undefined as string | undefined,
          healthy: undefined as boolean | undefined,
          capabilities: undefined as unknown,
        };
        if (options.health) {
          try {
            const teacher = await open(context, entry);
            try {
              const health = await teacher.health(AbortSignal.timeout(10_000));
              row.healthy = health.ok;
              row.health =
                `${health.ok ? "ok" : "DOWN"} (${health.latencyMs.toFixed(0)} ms) ${health.ok ? "" : health.detail}`.trim();
              row.capabilities = teacher.capabilities;
            } finally {
              await teacher.close();
            }
          } catch (error) {
            row.healthy = false;
            row.health = `DOWN ${(error as Error).message}`;
          }
        }
        rows.push(row);
      }
      const caps = (c: unknown) => {
        const k = c as { logprobs: boolean; maxTopLogprobs: number; score: boolean; reasoning: boolean } | undefined;
        return k
          ? [k.logprobs ? `logprobs≤${k.maxTopLogprobs}` : "", k.score ? "score" : "", k.reasoning ? "reasoning" : ""]
              .filter(Boolean)
              .join(",")
          : "-";
      };
      const lines = rows.map(
        (r) =>
          `${r.name.padEnd(16)} ${r.family.padEnd(8)} ${r.transport.padEnd(14)} ${r.licence.padEnd(24)} ${caps(r.capabilities).padEnd(30)} ${r.health ?? ""}${r.refused ? `\n${" ".repeat(17)}refused as a teacher: ${r.refused}` : ""}`,
      );
      context.print(
        [
          `${"name".padEnd(16)} ${"family".padEnd(8)} ${"transport".padEnd(14)} ${"licence".padEnd(24)} ${"capabilities".padEnd(30)} health`,
          ...lines,
        ].join("\n"),
        { teachers: rows },
      );
    });

  teachers
    .command("chat <name> <prompt>")
    .description(
      "chat once with a teacher in its family's format (reasoning and answer shown separately); <name> may be a .gguf path",
    )
    .option("--system <text>", "system prompt (Gemma: merged into the first user turn)")
    .option("--developer <text>", "developer instructions (harmony); other families receive them as a system prompt")
    .option("--max-tokens <n>", "maximum tokens to generate", "256")
    .option("--temperature <t>", "sampling temperature (0 = greedy)", "0")
    .option("--seed <n>", "sampling seed")
    .option("--logprobs <k>", "also print the top-k log-probs of each generated token")
    .option("--no-thinking", "Qwen: turn thinking off (enable_thinking=false)")
    .option("--effort <level>", `gpt-oss reasoning effort (${REASONING_EFFORTS.join(", ")})`)
    .action(
      async (
        name: string,
        prompt: string,
        options: {
          system?: string;
          developer?: string;
          maxTokens: string;
          temperature: string;
          seed?: string;
          logprobs?: string;
          thinking: boolean;
          effort?: string;
        },
        command: Command,
      ) => {
        const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
        const maxTokens = positiveInteger(options.maxTokens, "--max-tokens");
        const temperature = Number(options.temperature);
        if (!Number.isFinite(temperature) || temperature < 0)
          throw new InputError(`--temperature must be >= 0 (found ${options.temperature})`);
        const topLogprobs = options.logprobs !== undefined ? Number(options.logprobs) : undefined;
        if (topLogprobs !== undefined && (!Number.isInteger(topLogprobs) || topLogprobs < 0 || topLogprobs > 20))
          throw new InputError("--logprobs must be an integer from 0 to 20");
        if (options.effort !== undefined && !(REASONING_EFFORTS as readonly string[]).includes(options.effort))
          throw new InputError(`--effort must be one of ${REASONING_EFFORTS.join(", ")}`);
        const { findTeacher } = await import("../../teachers/registry.ts");
        const entry = await findTeacher(context.config, context.workspace, name);
        const teacher = await open(context, entry);
        try {
          const labels = CHANNEL_LABELS[teacher.family] ?? { reasoning: "reasoning", content: "answer" };
          const messages: TeacherMessage[] = [
            ...(options.system !== undefined ? [{ role: "system" as const, content: options.system }] : []),
            ...(options.developer !== undefined ? [{ role: "developer" as const, content: options.developer }] : []),
            { role: "user", content: prompt },
          ];
          let current: "reasoning" | "content" | undefined;
          const request = {
            messages,
            maxTokens,
            temperature,
            seed: options.seed !== undefined ? Number(options.seed) : undefined,
            topLogprobs,
            thinking: options.thinking === false ? false : undefined,
            reasoningEffort: options.effort as ReasoningEffort | undefined,
          };
          for await (const event of teacher.stream(request)) {
            if (event.type !== "done") {
              if (context.json) continue;
              if (event.type !== current) {
                process.stdout.write(
                  `${current ? "\n" : ""}[${event.type === "reasoning" ? labels.reasoning : labels.content}]\n`,
                );
                current = event.type;
              }
              process.stdout.write(event.text);
              continue;
            }
            const result = event.response;
            if (context.json) {
              context.print("", { family: teacher.family, ...result });
              continue;
            }
            const usage = result.usage;
            process.stdout.write(
              `\n\n(${usage.promptTokens} prompt + ${usage.completionTokens} completion tokens, ${usage.reasoningTokens} of them reasoning; finish: ${result.finishReason}; ${result.latencyMs.toFixed(0)} ms${result.costMicros ? `; cost ${result.costMicros} micro-units` : ""})\n`,
            );
            for (const lp of result.logprobs ?? []) {
              process.stdout.write(
                `${JSON.stringify(lp.text).padEnd(16)} ${lp.logprob.toFixed(3)}  top: ${lp.top.map((t) => `${JSON.stringify(t.text)} ${t.logprob.toFixed(2)}`).join(", ")}\n`,
              );
            }
          }
        } finally {
          await teacher.close();
        }
      },
    );

  teachers
    .command("probe <name>")
    .description("health, time to first token, latency, tokens/s, and log-prob and scoring support of a teacher")
    .option("--prompt <text>", "the prompt to send", "What is 25*12?")
    .option("--requests <n>", "requests to time", "8")
    .option("--concurrency <n>", "requests at once", "2")
    .option("--max-tokens <n>", "tokens per request", "64")
    .action(
      async (
        name: string,
        options: { prompt: string; requests: string; concurrency: string; maxTokens: string },
        command: Command,
      ) => {
        const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
        const requests = positiveInteger(options.requests, "--requests");
        const concurrency = positiveInteger(options.concurrency, "--concurrency");
        const maxTokens = positiveInteger(options.maxTokens, "--max-tokens");
        const { findTeacher } = await import("../../teachers/registry.ts");
        const { probeTeacher } = await import("../../teachers/probe.ts");
        const teacher = await open(context, await findTeacher(context.config, context.workspace, name));
        try {
          const result = await probeTeacher(teacher, { prompt: options.prompt, requests, concurrency, maxTokens });
          const text = [
            `${result.teacher} (${result.family})`,
            `  health          ${result.health.ok ? "ok" : "DOWN"} — ${result.health.detail}`,
            `  first token     ${result.firstTokenMs.toFixed(1)} ms (median of ${requests}, ${concurrency} at once)`,
            `  latency         ${result.latencyMs.toFixed(1)} ms (median)`,
            `  throughput      ${result.tokensPerSecond.toFixed(1)} completion tokens/s`,
            `  logprobs        ${result.logprobs.supported ? "yes" : "no"} — ${result.logprobs.detail}`,
            `  score           ${result.score.supported ? "yes" : "no"} — ${result.score.detail}`,
          ].join("\n");
          context.print(text, result);
        } finally {
          await teacher.close();
        }
      },
    );
}
