import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { scratchFolder } from "../../../test/fixtures.ts";
import { StageRunner } from "./stages.ts";

describe("the quickstart's stage runner", () => {
  const folder = scratchFolder("quickstart-stages");
  mkdirSync(folder, { recursive: true });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));
  const file = join(folder, "state.json");

  /** Runs stages a, b, c (a's output is `a.out`), and says which ran. */
  async function pipeline(config = "one"): Promise<string[]> {
    const ran: string[] = [];
    const runner = new StageRunner(file, config, () => undefined);
    const work = (name: string) => async () => {
      ran.push(name);
      if (name === "a") writeFileSync(join(folder, "a.out"), "a");
      return name;
    };
    await runner.run("a", work("a"), { done: () => existsSync(join(folder, "a.out")) });
    await runner.run("b", work("b"));
    await runner.run("c", work("c"), { always: true });
    return ran;
  }
  it("skips what finished with the same config; a stage that runs again runs every stage after it", async () => {
    expect(await pipeline()).toEqual(["a", "b", "c"]);
    expect(await pipeline()).toEqual(["c"]);
    rmSync(join(folder, "a.out"));
    expect(await pipeline()).toEqual(["a", "b", "c"]);
    expect(await pipeline("two")).toEqual(["a", "b", "c"]);
  });

  it("an unreadable state file runs every stage again", async () => {
    writeFileSync(file, "{ not json");
    expect(await pipeline()).toEqual(["a", "b", "c"]);
  });
});
