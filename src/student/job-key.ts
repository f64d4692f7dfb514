import { existsSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../core/atomic-write.ts";

/** Keeps a training folder (and its checkpoint) only when it was made for the same job; else starts it afresh. */
export async function resetUnlessSame(folder: string, key: string): Promise<void> {
  const keyFile = join(folder, "job-key");
  if (existsSync(keyFile) && readFileSync(keyFile, "utf8") === key) return;
  await rm(folder, { recursive: true, force: true });
  await writeFileAtomic(keyFile, key);
}
