import pino from "pino";

/**
 * Structured logs: one JSON object per line (level, time, the fields, event), written by pino. Secret values
 * registered with `addSecret` are replaced in every line, so an API key that reaches a message by accident still
 * never reaches the log.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Logger {
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
  addSecret(secret: string): void;
}

/** An Error in a field is logged as its name and message (its stack stays out of the access log). */
const errorFields = (value: unknown) => (value instanceof Error ? { name: value.name, message: value.message } : value);

export class JsonLogger implements Logger {
  private readonly secrets = new Set<string>();
  private readonly pino: pino.Logger<never, boolean>;
  /**
   * Lines not yet written: those of this turn of the event loop, or of the last `flushMs`; written together (one
   * syscall instead of one per line). Batched here rather than by pino's asynchronous destination: a reader of
   * stderr that goes away (EPIPE) must cost lines, never the process, and an error is written at once.
   */
  private pending: string[] = [];
  private pendingChars = 0;
  private urgent = false;

  /**
   * `flushMs`: how long a line may wait to be written with others (a busy server's access log: one write every few
   * milliseconds instead of one per request). Without it, lines are written at the end of their turn. Errors are
   * written at once, and what is buffered is written when the process exits.
   */
  constructor(
    private readonly write: (text: string) => void = (text) => process.stderr.write(text),
    level: LogLevel = "info",
    private readonly options: { flushMs?: number } = {},
  ) {
    this.pino = pino(
      {
        level,
        base: null,
        messageKey: "event",
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
        serializers: { error: errorFields, err: errorFields, cause: errorFields },
        hooks: { streamWrite: (line) => this.redact(line) },
      },
      { write: (line: string) => this.buffer(line) },
    );
    if (options.flushMs) process.once("exit", () => this.flush());
  }

  addSecret(secret: string): void {
    if (secret.length < 4) return;
    this.secrets.add(secret);
    // As it appears inside a JSON string (quotes and backslashes escaped).
    this.secrets.add(JSON.stringify(secret).slice(1, -1));
  }

  log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
    this.urgent = level === "error";
    this.pino[level](fields, event);
  }

  private redact(line: string): string {
    for (const secret of this.secrets) if (line.includes(secret)) line = line.split(secret).join("[redacted]");
    return line;
  }

  private buffer(line: string): void {
    this.pending.push(line);
    this.pendingChars += line.length;
    if (this.urgent || this.pendingChars >= 64 * 1024) this.flush();
    else if (this.pending.length === 1) {
      if (this.options.flushMs) setTimeout(() => this.flush(), this.options.flushMs).unref();
      else setImmediate(() => this.flush());
    }
  }

  /** Writes what is buffered (called on the next turn of the event loop, and at once for errors). */
  flush(): void {
    if (this.pending.length === 0) return;
    const text = this.pending.join("");
    this.pending = [];
    this.pendingChars = 0;
    this.write(text);
  }
}

/** Logs nowhere (the default for library use). */
export const SILENT_LOGGER: Logger = { log() {}, addSecret() {} };
