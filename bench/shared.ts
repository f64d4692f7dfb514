import { SilentProgress } from "../src/core/progress.ts";
import { buildTinyWorld } from "../src/tinyworld/build.ts";
import { PYTHON, TEST_SEED, TEST_WORKSPACE } from "../test/fixtures.ts";

/** The benchmarks run on the test-size tiny world (built and cached like the test suite's). */
export async function benchWorld(): Promise<string> {
  await buildTinyWorld({
    workspace: TEST_WORKSPACE,
    size: "test",
    seed: TEST_SEED,
    python: PYTHON,
    threads: 1,
    progress: new SilentProgress(),
  });
  return TEST_WORKSPACE;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

export function verdict(name: string, ratio: number, target: number): string {
  return `${name}: ratio ${ratio.toFixed(3)} (target ≥ ${target}) ${ratio >= target ? "PASS" : "FAIL"}`;
}
