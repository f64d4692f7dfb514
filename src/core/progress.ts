import cliProgress from "cli-progress";

/** A task with progress: a bar (rate and ETA) in a terminal, JSON-lines events with `--json`. */
export interface ProgressTask {
  update(done: number, fields?: Record<string, string | number>): void;
  finish(fields?: Record<string, string | number>): void;
}

export interface Progress {
  task(label: string, total: number, unit?: string): ProgressTask;
  /** A one-off line: a message in a terminal, an event with --json. */
  log(message: string, fields?: Record<string, unknown>): void;
}

function jsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export class JsonProgress implements Progress {
  task(label: string, total: number, unit = "items"): ProgressTask {
    const started = Date.now();
    jsonLine({ event: "start", task: label, total, unit });
    return {
      update(done, fields) {
        const seconds = (Date.now() - started) / 1000;
        jsonLine({ event: "progress", task: label, done, total, rate: seconds > 0 ? done / seconds : 0, ...fields });
      },
      finish(fields) {
        jsonLine({ event: "finish", task: label, seconds: (Date.now() - started) / 1000, ...fields });
      },
    };
  }
  log(message: string, fields?: Record<string, unknown>): void {
    jsonLine({ event: "log", message, ...fields });
  }
}

export class TerminalProgress implements Progress {
  task(label: string, total: number, unit = "items"): ProgressTask {
    const interactive = process.stderr.isTTY === true;
    if (!interactive) {
      // Not a terminal (CI, pipes): a start and an end line, no redraws.
      const started = Date.now();
      process.stderr.write(`${label}: ${total} ${unit}\n`);
      let last: Record<string, string | number> = {};
      return {
        update(_done, fields) {
          if (fields) last = fields;
        },
        finish(fields) {
          const extra = Object.entries({ ...last, ...fields })
            .map(([k, v]) => `${k}=${v}`)
            .join(" ");
          process.stderr.write(`${label}: done in ${((Date.now() - started) / 1000).toFixed(1)} s ${extra}\n`);
        },
      };
    }
    const bar = new cliProgress.SingleBar(
      {
        format: `${label.padEnd(24)} {bar} {percentage}% | {value}/{total} ${unit} | {rate}/s | ETA {eta_formatted} {extra}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    const started = Date.now();
    bar.start(total, 0, { rate: "0", extra: "" });
    const format = (fields?: Record<string, string | number>) =>
      fields
        ? Object.entries(fields)
            .map(([k, v]) => `${k}=${v}`)
            .join(" ")
        : "";
    return {
      update(done, fields) {
        const seconds = (Date.now() - started) / 1000;
        bar.update(done, { rate: seconds > 0 ? (done / seconds).toFixed(1) : "0", extra: format(fields) });
      },
      finish(fields) {
        bar.update(total, { extra: format(fields) });
        bar.stop();
      },
    };
  }
  log(message: string): void {
    process.stderr.write(`${message}\n`);
  }
}

/** No output: for library use and tests. */
export class SilentProgress implements Progress {
  task(): ProgressTask {
    return { update() {}, finish() {} };
  }
  log(): void {}
}

export function createProgress(json: boolean): Progress {
  return json ? new JsonProgress() : new TerminalProgress();
}
