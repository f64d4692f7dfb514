import { join } from "node:path";
import { PROJECT_ROOT } from "../src/core/paths.ts";

/** The test-size tiny world, built once by test/global-setup.ts and cached between runs. */
export const TEST_WORKSPACE = join(PROJECT_ROOT, ".avocado", "test-world");
export const TEST_SEED = 20261126;
export const PYTHON = process.env.AVOCADO_PYTHON ?? "/usr/bin/python3";

export function teacherGguf(name: string): string {
  return join(TEST_WORKSPACE, "teachers", name, "model.gguf");
}

export function scratchFolder(name: string): string {
  return join(PROJECT_ROOT, ".avocado", "test-scratch", `${name}-${process.pid}`);
}

/**
 * A raw prompt (Qwen's chat format) that the tiny Qwen continues until its length limit, a pattern it repeats:
 * a stream long enough to interrupt mid-way. (A real task ends: the test world's Qwen has learned to reverse words.)
 */
export const ENDLESS_QWEN_PROMPT = `<|im_start|>assistant\n<think>\nLetters:${" u g".repeat(12)}`;

/** How a call of the openai client failed (its status, error code and headers), or undefined when it succeeded. */
export async function failureOf(
  call: Promise<unknown>,
): Promise<{ status?: number; code?: string; headers?: Headers } | undefined> {
  return call.then(
    () => undefined,
    (error: unknown) => error as { status?: number; code?: string; headers?: Headers },
  );
}
