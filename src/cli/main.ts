import { Command, CommanderError } from "commander";
import { AvocadoError, FileError, InputError, errorMessage } from "../core/errors.ts";
import { registerBilling } from "./commands/billing.ts";
import { registerDistill } from "./commands/distill.ts";
import { registerEval } from "./commands/eval.ts";
import { registerExport } from "./commands/export.ts";
import { registerInit } from "./commands/init.ts";
import { registerKeys } from "./commands/keys.ts";
import { registerQuickstart } from "./commands/quickstart.ts";
import { registerServe } from "./commands/serve.ts";
import { registerTeachers } from "./commands/teachers.ts";
import { registerTinyworld } from "./commands/tinyworld.ts";
import { registerTrain } from "./commands/train.ts";

/** Exit codes: 0 ok, 1 failure, 2 bad input. */
export function exitCode(error: unknown): number {
  if (error instanceof InputError || error instanceof FileError) return 2;
  return 1;
}

/**
 * SQLite's write lock stayed taken past its busy timeout: another process (a server under load) is writing the store.
 */
const isSqliteBusy = (error: unknown) => (error as { code?: unknown } | null)?.code === "SQLITE_BUSY";
const SQLITE_BUSY_MESSAGE =
  "the SQLite store is busy: another process is writing it and held its write lock for 5 s (a running `avocado serve` holds it only while it commits, a few milliseconds at a time). Retry, make the change through that server's admin API (POST /admin/keys, /admin/keys/:id/revoke, /admin/credits), or use a PostgreSQL store for a store several processes write";

export function buildProgram(): Command {
  const program = new Command("avocado")
    .description(
      "Distil open-weight teachers into a proprietary student, test it, and sell it through a metered, paid API.",
    )
    .option("-c, --config <file>", "config file (default: ./avocado.yaml when present)")
    .option("--json", "JSON-lines events and results instead of bars and text")
    .showHelpAfterError()
    .exitOverride();
  registerInit(program);
  registerTinyworld(program);
  registerTeachers(program);
  registerDistill(program);
  registerTrain(program);
  registerExport(program);
  registerQuickstart(program);
  registerServe(program);
  registerKeys(program);
  registerBilling(program);
  registerEval(program);
  const order = [
    "init",
    "tinyworld",
    "teachers",
    "distill",
    "train",
    "export",
    "eval",
    "serve",
    "keys",
    "billing",
    "quickstart",
  ];
  (program.commands as Command[]).sort((a, b) => order.indexOf(a.name()) - order.indexOf(b.name()));
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    const message =
      error instanceof AvocadoError
        ? error.message
        : isSqliteBusy(error)
          ? SQLITE_BUSY_MESSAGE
          : `unexpected error: ${errorMessage(error)}`;
    process.stderr.write(`avocado: ${message}\n`);
    if (!(error instanceof AvocadoError) && process.env.AVOCADO_DEBUG && error instanceof Error)
      process.stderr.write(`${error.stack}\n`);
    return exitCode(error);
  }
}

/**
 * A reader of stdout or stderr that goes away (`avocado billing usage | head`, a log shipper
 * restarting under `avocado serve`) must not end the process: what it would have read is
 * dropped. Without a listener, the EPIPE is an uncaught 'error' event (a server would stop serving).
 */
export function survivePipeReaders(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE" && error.code !== "ERR_STREAM_DESTROYED") throw error;
    });
  }
}

if (process.argv[1] && /avocado(\.js)?$|main\.ts$/.test(process.argv[1])) {
  survivePipeReaders();
  process.exitCode = await main(process.argv.slice(2));
}
