import { SilentProgress } from "../src/core/progress.ts";
import { buildTinyWorld } from "../src/tinyworld/build.ts";
import { PYTHON, TEST_SEED, TEST_WORKSPACE } from "./fixtures.ts";

/** Builds the test-size tiny world once (cached by build key), so every suite can load real teachers. */
export default async function setup(): Promise<void> {
  const started = Date.now();
  await buildTinyWorld({
    workspace: TEST_WORKSPACE,
    size: "test",
    seed: TEST_SEED,
    python: PYTHON,
    threads: 1,
    progress: new SilentProgress(),
  });
  process.stderr.write(
    `test tiny world ready in ${((Date.now() - started) / 1000).toFixed(1)} s (${TEST_WORKSPACE})\n`,
  );
}
