import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { scratchFolder, teacherGguf } from "../../test/fixtures.ts";
import { serveSchema } from "../core/config/serve-schema.ts";
import { CARD_FILE, type ModelCard } from "../export/model-card.ts";
import { startApi } from "./server.ts";

describe("avocado serve sells a student only once its release gate passed", () => {
  const folder = scratchFolder("release-gate");
  const model = join(folder, "models", "avocado-student");
  mkdirSync(model, { recursive: true });
  symlinkSync(teacherGguf("tiny-qwen"), join(model, "model.gguf"));
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  const config = serveSchema.parse({
    port: 0,
    store: `sqlite:${join(folder, "serve.db")}`,
    models: [
      {
        name: "avocado-student",
        gguf: join(model, "model.gguf"),
        price: { inputPerMillion: 1, outputPerMillion: 1 },
      },
    ],
  });
  const card = (gate: ModelCard["gate"]) =>
    writeFileSync(join(model, CARD_FILE), JSON.stringify({ format: "avocado-card/1", name: "avocado-student", gate }));
  const starts = async (allowUngated = false) => {
    const api = await startApi({ config, workspace: folder, allowUngated });
    await api.close();
  };

  it("refuses a failed gate, naming the failure and the way out", async () => {
    card({ pass: false, margin: 0.05, failures: ["tinyworld vs tiny-qwen: correct worse"], reports: [] });
    await expect(starts()).rejects.toThrow(
      /refusing to serve avocado-student .*the release gate failed: tinyworld vs tiny-qwen: correct worse.*--allow-ungated/,
    );
    await starts(true);
  }, 60_000);

  it("says when the gate failed for want of items, which retraining cannot fix", async () => {
    card({ pass: false, margin: 0.05, failures: ["a", "b", "c", "d"], underpowered: true, reports: [] });
    await expect(starts()).rejects.toThrow(/failed: a; b; c \(and 1 more in its card\)\. .*needs more items/);
  }, 60_000);

  it("refuses a student that was never evaluated", async () => {
    card(null);
    await expect(starts()).rejects.toThrow(/never evaluated against its teachers/);
  }, 60_000);

  it("serves a student whose gate passed", async () => {
    card({ pass: true, margin: 0.05, failures: [], reports: ["evals/tinyworld/report.html"] });
    await starts();
  }, 60_000);
});
