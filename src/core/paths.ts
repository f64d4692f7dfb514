import { fileURLToPath } from "node:url";
import { join, resolve } from "node:path";

/** The project's root folder (where package.json and trainer/ live). */
export const PROJECT_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const TRAINER_ROOT = join(PROJECT_ROOT, "trainer");
