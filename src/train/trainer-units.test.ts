import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";
import { PYTHON } from "../../test/fixtures.ts";
import { TRAINER_ROOT } from "../core/paths.ts";

// The trainer's own unit tests (KD losses: exactness, tail handling, ULD, temperature, gradients).
it("passes the Python trainer's unit tests", () => {
  const run = spawnSync(PYTHON, ["-m", "unittest", "discover", "-s", join(TRAINER_ROOT, "tests"), "-t", TRAINER_ROOT], {
    cwd: TRAINER_ROOT,
    encoding: "utf8",
    env: { ...process.env, PYTHONPATH: TRAINER_ROOT },
  });
  expect(run.stderr).toMatch(/\nOK\s*$/);
  expect(run.status).toBe(0);
});
