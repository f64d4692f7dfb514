import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { z } from "zod";

/** `avocado-card.json` beside a student's GGUF: what `avocado serve` reads to decide whether it may be sold. */
export const CARD_FILE = "avocado-card.json";

export const modelCardSchema = z.object({
  format: z.literal("avocado-card/1"),
  name: z.string(),
  gate: z
    .object({
      pass: z.boolean(),
      margin: z.number(),
      /** One line per failed check (empty when it passed). */
      failures: z.array(z.string()),
      /** Whether a failed check's suite was too small to tell a change of the margin (retraining cannot pass it). */
      underpowered: z.boolean().optional(),
      reports: z.array(z.string()),
    })
    .nullable()
    .describe("null: not evaluated (ungated)"),
});
export type ModelCard = z.infer<typeof modelCardSchema>;

/**
 * The release verdict of the model whose GGUF is at `gguf`: "pass", "fail" (with the reasons) or "ungated" (a card
 * without an evaluation). A GGUF without a card is no student of ours (a teacher, a file brought in): "no-card".
 */
export function releaseVerdict(
  gguf: string,
):
  | { verdict: "pass" | "no-card" }
  | { verdict: "ungated"; reason: string }
  | { verdict: "fail"; reason: string; underpowered: boolean } {
  const path = join(dirname(gguf), CARD_FILE);
  if (!existsSync(path)) return { verdict: "no-card" };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return { verdict: "ungated", reason: `${path} is not valid JSON` };
  }
  const parsed = modelCardSchema.safeParse(raw);
  if (!parsed.success) return { verdict: "ungated", reason: `${path} is not a model card` };
  const { gate } = parsed.data;
  if (gate === null) return { verdict: "ungated", reason: "it was never evaluated against its teachers" };
  if (!gate.pass) {
    const more = gate.failures.length > 3 ? ` (and ${gate.failures.length - 3} more in its card)` : "";
    return {
      verdict: "fail",
      reason: `the release gate failed: ${gate.failures.slice(0, 3).join("; ")}${more}`,
      underpowered: gate.underpowered ?? false,
    };
  }
  return { verdict: "pass" };
}
