// Run by atomic-write.test.ts inside a mount namespace of its own, where `argv[2]` is a 64 KiB tmpfs:
// an atomic write larger than the disk must fail and leave the previous file, and no temporary file.
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../src/core/atomic-write.ts";

const folder = process.argv[2]!;
await writeFile(join(folder, "model.gguf"), "previous model");
const error = await writeFileAtomic(join(folder, "model.gguf"), new Uint8Array(1 << 20)).catch((e: unknown) => e);
process.stdout.write(
  JSON.stringify({
    error: error instanceof Error ? `${error.name}: ${error.message}` : null,
    content: await readFile(join(folder, "model.gguf"), "utf8"),
    temporary: (await readdir(folder)).filter((name) => name.endsWith(".tmp")),
  }),
);
