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
