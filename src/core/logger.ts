/**
 * Structured logs: one JSON object per line (time, level, event, fields).
 * Secret values registered with `addSecret` are replaced in every line, so an
 * API key that reaches a message by accident still never reaches the log.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
  addSecret(secret: string): void;
}

export class JsonLogger implements Logger {
  private readonly secrets = new Set<string>();
  /**
   * Lines not yet written: those of this turn of the event loop, or of the last `flushMs`; written together (one
   * syscall instead of one per line).
   */
  private pending: string[] = [];
  private pendingChars = 0;
  /**
   * `flushMs`: how long a line may wait to be written with others (a busy
   * server's access log: one write every few milliseconds instead of one per
   * request). Without it, lines are written at the end of their turn. Errors
   * are written at once, and what is buffered is written when the process exits.
   */
  constructor(
    private readonly write: (line: string) => void = (line) => process.stderr.write(line),
    private readonly level: LogLevel = "info",
    private readonly options: { flushMs?: number } = {},
  ) {
    if (options.flushMs) process.once("exit", () => this.flush());
  }
  addSecret(secret: string): void {
    if (secret.length < 4) return;
    this.secrets.add(secret);
    // As it appears inside a JSON string (quotes and backslashes escaped).
    this.secrets.add(JSON.stringify(secret).slice(1, -1));
  }
  log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
    if (LEVELS[level] < LEVELS[this.level]) return;
    // A replacer slows JSON.stringify down several times: only for the lines that carry an Error.
    let carriesError = false;
    for (const key in fields) {
      if (fields[key] instanceof Error) {
        carriesError = true;
        break;
      }
    }
    const rest = carriesError
      ? JSON.stringify(fields, (_key, value: unknown) =>
          value instanceof Error ? { name: value.name, message: value.message } : value,
        )
      : JSON.stringify(fields);
    // Written as text around the fields' own JSON (the access log's line for every request: no merged copy of the
    // fields).
    let line = `{"time":"${new Date().toISOString()}","level":"${level}","event":${JSON.stringify(event)}${rest.length > 2 ? `,${rest.slice(1)}` : "}"}`;
    for (const secret of this.secrets) if (line.includes(secret)) line = line.split(secret).join("[redacted]");
    this.pending.push(`${line}\n`);
    this.pendingChars += line.length;
    if (level === "error" || this.pendingChars >= 64 * 1024) this.flush();
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
