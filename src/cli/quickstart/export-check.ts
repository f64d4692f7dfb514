import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { StageFailed } from "./stages.ts";

/** What a released student's folder must hold: what vLLM loads, what llama.cpp loads, and what it is sold under. */
const RELEASE_FILES = [
  "config.json",
  "model.safetensors",
  "model.gguf",
  "MODEL_CARD.md",
  "avocado-card.json",
  "licenses.json",
];

/** Checks the student's folder is complete; its sizes, as the stage's summary. */
export function verifyExport(folder: string): Promise<string> {
  const missing = RELEASE_FILES.filter((file) => !existsSync(join(folder, file)));
  if (missing.length > 0)
    throw new StageFailed("export_incomplete", `${folder} lacks ${missing.join(", ")}: run the quickstart again`);
  const mb = (file: string) => (statSync(join(folder, file)).size / 1e6).toFixed(1);
  return Promise.resolve(
    `${folder}: safetensors ${mb("model.safetensors")} MB, GGUF ${mb("model.gguf")} MB, card, licences`,
  );
}
