import { resolve } from "node:path";
import type { Command } from "commander";
import { InputError } from "../../core/errors.ts";
import type { TensorEncoding } from "../../export/gguf-writer.ts";
import { commandContext, type GlobalOptions } from "../context.ts";

const ENCODINGS: readonly TensorEncoding[] = ["f32", "f16", "q8_0"];

export function registerExport(program: Command): void {
  program
    .command("export <folder>")
    .description("export trained weights to the Hugging Face layout and GGUF (f32, f16, q8_0)")
    .option("--out <dir>", "output folder (default: the input folder)")
    .option("--gguf <types>", "comma-separated GGUF encodings", "f32,f16,q8_0")
    .action(async (folder: string, options: { out?: string; gguf: string }, command: Command) => {
      const context = await commandContext(command.optsWithGlobals<GlobalOptions>());
      const encodings = options.gguf
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      for (const e of encodings)
        if (!ENCODINGS.includes(e as TensorEncoding))
          throw new InputError(`--gguf: unknown encoding '${e}' (expected ${ENCODINGS.join(", ")})`);
      const result = await (
        await import("../../export/export-model.ts")
      ).exportModel({
        source: resolve(folder),
        out: resolve(options.out ?? folder),
        encodings: encodings as TensorEncoding[],
      });
      context.print(`exported to ${result.folder}: ${result.files.join(", ")}`, result);
    });
}
