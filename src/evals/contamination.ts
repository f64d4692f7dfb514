import { readFileSync } from "node:fs";
import { FileError, InputError } from "../core/errors.ts";

/** A text's words for n-gram matching: lower case, runs of letters and digits, all else a separator. */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

export interface ContaminationReport {
  n: number;
  records: number;
  /** Records that share an n-gram with some suite item (1-based line numbers, at most the first 100). */
  contaminated: number;
  lines: number[];
  /** Suite items that some record shares an n-gram with. */
  itemsTouched: number;
  items: number;
}

/**
 * N-gram overlap between a training set and an eval suite (13 words by default, as decontamination is usually
 * done): a record is contaminated when it holds any word n-gram of any suite item. An item shorter than n words
 * counts as one gram of its whole length, so a short question copied whole is still found. The distillation engine
 * runs the same function over every record it keeps.
 */
export class NgramIndex {
  /** gram → the suite items holding it, by gram length. */
  private readonly grams = new Map<number, Map<string, number[]>>();

  constructor(
    itemTexts: readonly string[],
    readonly n = 13,
  ) {
    if (!Number.isInteger(n) || n < 1)
      throw new InputError(`the n-gram length must be a positive integer (found ${n})`);
    itemTexts.forEach((text, item) => {
      const w = words(text);
      if (w.length === 0) return;
      const size = Math.min(n, w.length);
      let bySize = this.grams.get(size);
      if (!bySize) this.grams.set(size, (bySize = new Map()));
      for (let i = 0; i + size <= w.length; i++) {
        const gram = w.slice(i, i + size).join(" ");
        const holders = bySize.get(gram);
        if (!holders) bySize.set(gram, [item]);
        else if (holders.at(-1) !== item) holders.push(item);
      }
    });
  }

  /** The suite items a text shares a gram with (empty: clean). */
  matches(text: string): Set<number> {
    const found = new Set<number>();
    const w = words(text);
    for (const [size, bySize] of this.grams) {
      for (let i = 0; i + size <= w.length; i++) {
        const holders = bySize.get(w.slice(i, i + size).join(" "));
        if (holders) for (const item of holders) found.add(item);
      }
    }
    return found;
  }
}

/** Every string in a JSON value (a chat record's messages, a prompt and completion…), joined. */
function textOf(value: unknown): string {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.map(textOf).join("\n");
  if (value && typeof value === "object") return Object.values(value).map(textOf).join("\n");
  return "";
}

/** Checks a JSONL dataset against suite items; a line that is not JSON is an error naming it. */
export function contamination(datasetPath: string, itemTexts: readonly string[], n = 13): ContaminationReport {
  let text: string;
  try {
    text = readFileSync(datasetPath, "utf8");
  } catch (error) {
    throw new FileError(datasetPath, "cannot be read as a dataset", { cause: error });
  }
  const index = new NgramIndex(itemTexts, n);
  const touched = new Set<number>();
  const lines: number[] = [];
  let records = 0;
  let contaminated = 0;
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      throw new InputError(`${datasetPath}:${i + 1}: not JSON`);
    }
    records++;
    const found = index.matches(textOf(record));
    if (found.size === 0) return;
    contaminated++;
    if (lines.length < 100) lines.push(i + 1);
    for (const item of found) touched.add(item);
  });
  return { n, records, contaminated, lines, itemsTouched: touched.size, items: itemTexts.length };
}
