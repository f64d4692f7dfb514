import type { Price } from "../core/config/teacher-schema.ts";
import type { TeacherUsage } from "./teacher.ts";

export type { Price };

/**
 * The cost of one call. With a GPU-hour rate the server's time is shared by the
 * requests it runs at once: a call costs its latency × rate ÷ concurrency.
 */
export function callCost(
  price: Price | undefined,
  usage: TeacherUsage,
  latencyMs: number,
  concurrency: number,
): number {
  if (!price) return 0;
  if ("inputPerMillion" in price) {
    return Math.ceil(
      (usage.promptTokens * price.inputPerMillion + usage.completionTokens * price.outputPerMillion) / 1_000_000,
    );
  }
  return Math.ceil((price.gpuHour * price.gpus * latencyMs) / 3_600_000 / Math.max(1, concurrency));
}
