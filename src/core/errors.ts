/**
 * One error base class for the whole project, with a few meaningful subclasses.
 * Every error carries a stable `code` that the CLI maps to exit codes and the
 * HTTP layer maps to the OpenAI error shape.
 */
export class AvocadoError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad user input: a config file, a CLI argument, a data file. Exit code 2 in the CLI. */
export class InputError extends AvocadoError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("invalid_input", message, options);
  }
}

/** A prompt longer than the model's context: the request, not the engine, is at fault. */
export class ContextLengthError extends InputError {
  constructor(
    readonly promptTokens: number,
    readonly contextTokens: number,
    /** Counted from its size alone (a lower bound), before any tokenizer ran. */
    atLeast = false,
  ) {
    super(
      `the prompt is ${atLeast ? "at least " : ""}${promptTokens} tokens; the model's context is ${contextTokens} tokens`,
    );
  }
}

/** A file the project reads is missing, truncated or corrupt. */
export class FileError extends AvocadoError {
  readonly file: string;
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super("file_error", `${file}: ${message}`, options);
    this.file = file;
  }
}

/** An engine (llama.cpp, PyTorch trainer, remote server) failed or misbehaved. */
export class EngineError extends AvocadoError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("engine_error", message, options);
  }
}

/** A stage of the pipeline that does not exist yet. Exit code 2 in the CLI. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
