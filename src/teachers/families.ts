import type { Family } from "../core/family.ts";

/** The control markers each family's raw output can contain. */
const MARKERS: Record<Exclude<Family, "generic">, readonly string[]> = {
  qwen: ["<|im_start|>", "<|im_end|>", "<think>", "</think>"],
  gemma: ["<start_of_turn>", "<end_of_turn>"],
  gptoss: ["<|channel|>", "<|message|>", "<|start|>", "<|return|>"],
};

/** The family whose chat template this is, judged by its turn markers; undefined for an unknown template. */
export function familyOfTemplate(template: string): Exclude<Family, "generic"> | undefined {
  if (template.includes("<|channel|>") || template.includes("<|start|>")) return "gptoss";
  if (template.includes("<start_of_turn>")) return "gemma";
  if (template.includes("<|im_start|>")) return "qwen";
  return undefined;
}

/**
 * Another family whose control markers appear in a model's raw output: the sign
 * of a wrongly declared family (e.g. a Qwen server declared as gpt-oss). The
 * generic family makes no claim, so nothing is foreign to it.
 */
export function foreignFamilyIn(declared: Family, text: string): Exclude<Family, "generic"> | undefined {
  if (declared === "generic") return undefined;
  for (const [family, markers] of Object.entries(MARKERS) as [Exclude<Family, "generic">, readonly string[]][]) {
    if (family === declared) continue;
    if (markers.some((marker) => !MARKERS[declared].includes(marker) && text.includes(marker))) return family;
  }
  return undefined;
}

export interface SplitText {
  reasoning: string;
  content: string;
}

const HARMONY_FINAL = /<\|channel\|>final<\|message\|>/;

/**
 * Reasoning and content of a raw completion, for engines that do not separate
 * them (vLLM without a reasoning parser, /v1/completions):
 * - Qwen / generic: a `<think>…</think>` block, or text before a lone `</think>`
 *   (templates that open the block in the prompt).
 * - gpt-oss: harmony's analysis channel, then the final channel.
 */
export function splitReasoning(family: Family, raw: string): SplitText {
  if (family === "gptoss") {
    const final = HARMONY_FINAL.exec(raw);
    const analysis = /<\|channel\|>analysis<\|message\|>([\s\S]*?)(?:<\|end\|>|$)/.exec(raw);
    // Until the final channel opens, a text with channel markers has no content yet.
    const content = final ? raw.slice(final.index + final[0].length) : raw.includes("<|channel|>") ? "" : raw;
    return { reasoning: (analysis?.[1] ?? "").trim(), content: content.replace(/<\|(?:return|end|call)\|>\s*$/, "") };
  }
  if (family === "gemma") return { reasoning: "", content: raw };
  const close = raw.indexOf("</think>");
  if (close < 0) {
    const open = raw.indexOf("<think>");
    // An unfinished thought (the length limit hit inside it) is all reasoning.
    return open >= 0 && raw.slice(0, open).trim() === ""
      ? { reasoning: raw.slice(open + 7).trim(), content: "" }
      : { reasoning: "", content: raw };
  }
  const open = raw.lastIndexOf("<think>", close);
  const reasoning = raw.slice(open >= 0 ? open + 7 : 0, close);
  return { reasoning: reasoning.trim(), content: raw.slice(close + 8).replace(/^\s+/, "") };
}

const LONGEST_MARKER = 32;

/**
 * Splits a raw text stream into reasoning and content deltas as it arrives:
 * each feed re-splits the text so far (minus a tail that may be the start of a
 * marker) and emits what is new. The final response is always split from the
 * whole text, so deltas are a best-effort preview of it.
 */
export class StreamingReasoningSplitter {
  private raw = "";
  private emitted: SplitText = { reasoning: "", content: "" };
  constructor(private readonly family: Family) {}

  feed(delta: string): { type: "reasoning" | "content"; text: string }[] {
    this.raw += delta;
    const lastOpen = this.raw.lastIndexOf("<", this.raw.length - 1);
    const safe =
      lastOpen >= 0 && this.raw.length - lastOpen < LONGEST_MARKER && !this.raw.slice(lastOpen).includes(">")
        ? this.raw.slice(0, lastOpen)
        : this.raw;
    return this.diff(splitReasoning(this.family, safe));
  }

  finish(): SplitText {
    return splitReasoning(this.family, this.raw);
  }

  private diff(next: SplitText): { type: "reasoning" | "content"; text: string }[] {
    const events: { type: "reasoning" | "content"; text: string }[] = [];
    for (const type of ["reasoning", "content"] as const) {
      if (next[type].startsWith(this.emitted[type]) && next[type].length > this.emitted[type].length) {
        events.push({ type, text: next[type].slice(this.emitted[type].length) });
        this.emitted[type] = next[type];
      }
    }
    return events;
  }
}

export { loadGenericTemplate, type GenericTemplate } from "../chat/generic-template.ts";
