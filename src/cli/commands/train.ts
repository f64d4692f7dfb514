import { join, resolve } from "node:path";
import type { Command } from "commander";
import { writeJsonAtomic } from "../../core/atomic-write.ts";
import { architectureSchema, optimizationSchema } from "../../core/config/schema.ts";
import { InputError } from "../../core/errors.ts";
import { readShardIndex } from "../../train/shards.ts";
import { commandContext, type GlobalOptions } from "../context.ts";
import { positiveInteger } from "../options.ts";
import { ensureTorch } from "../ensure-torch.ts";

const DEFAULT_ARCHITECTURE = { layers: 2, hidden: 128, heads: 4, kvHeads: 2, headDim: 32, ffn: 384, context: 256 };
const DEFAULT_OPTIMIZATION = { steps: 600, batchSize: 32, learningRate: 3e-3 };

export function registerTrain(program: Command): void {
  program
    .command("train")
    .description(
      "train a Qwen3-architecture student on token-id shards (PyTorch; resumable; data parallel with --processes)",
    )
    .requiredOption("--shards <dir>", "token-id shards folder (index.json, tokens.bin, mask.bin, offsets.bin)")
    .requiredOption("--out <dir>", "output folder: checkpoint, HF weights, loss curve")
    .option("--name <name>", "model name", "student")
    .option("--processes <n>", "data-parallel processes (gloo)", "1")
    .option("--steps <n>", "override optimization.steps")
    .option("--init-from <dir>", "initialise from a Hugging Face Qwen3 folder (config.json + safetensors)")
    .action(
      async (
        options: { shards: string; out: string; name: string; processes: string; steps?: string; initFrom?: string },
        command: Command,
      ) => {
        const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
        const shards = resolve(options.shards);
        const index = await readShardIndex(shards);
        const processes = positiveInteger(options.processes, "--processes");
        const architecture = architectureSchema.parse(context.config.train.architecture ?? DEFAULT_ARCHITECTURE);
        const parsed = optimizationSchema.safeParse({
          ...(context.config.train.optimization ?? DEFAULT_OPTIMIZATION),
          ...(options.steps ? { steps: Number(options.steps) } : {}),
        });
        if (!parsed.success)
          throw new InputError(
            `--steps / train.optimization: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
          );
        const optimization = parsed.data;
        ensureTorch(context.python);
        const out = resolve(options.out);
        const result = await (
          await import("../../train/launcher.ts")
        ).runTrainer(
          {
            shards,
            out,
            architecture: { ...architecture, context: Math.max(architecture.context, index.maxLength) },
            optimization,
            seed: context.config.train.seed,
            threads: context.config.train.threads,
            initFrom: options.initFrom ? resolve(options.initFrom) : undefined,
          },
          { python: context.python, label: `train ${options.name}`, progress: context.progress, processes },
        );
        if (index.tokenizer)
          await writeJsonAtomic(join(out, "avocado-model.json"), { name: options.name, ...index.tokenizer });
        context.print(
          `trained ${options.name}: final loss ${result.finalLoss?.toFixed(4)}; weights, loss.json and loss-curve.svg in ${out}`,
          { out, finalLoss: result.finalLoss, seconds: result.seconds },
        );
      },
    );
}
