import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { scratchFolder } from "../../test/fixtures.ts";
import { writeAtomicWith, writeFileAtomic } from "./atomic-write.ts";
import { FileError } from "./errors.ts";

const scratch = scratchFolder("atomic");

describe("atomic writes", () => {
  afterAll(() => rm(scratch, { recursive: true, force: true }));

  it("replaces a file only when the new content is complete", async () => {
    const path = join(scratch, "a", "data.json");
    await writeFileAtomic(path, "old");
    await expect(
      writeAtomicWith(path, async (handle) => {
        await handle.write("half of the new conte");
        throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      }),
    ).rejects.toThrow(new RegExp(`${path}: could not be written: ENOSPC`));
    expect(await readFile(path, "utf8")).toBe("old");
    expect((await readdir(join(scratch, "a"))).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("leaves nothing that looks complete when a real disk fills up", async () => {
    const mountPoint = join(scratch, "tiny-disk");
    await mkdir(mountPoint, { recursive: true });
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint]).status === 0;
    if (!mounted) {
      // Without permission to mount, the injected ENOSPC above covers the same path.
      expect(mounted).toBe(false);
      return;
    }
    try {
      await writeFile(join(mountPoint, "model.gguf"), "previous model");
      const error = await writeFileAtomic(join(mountPoint, "model.gguf"), new Uint8Array(1 << 20)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FileError);
      expect(String((error as Error).message)).toMatch(/model\.gguf: could not be written/);
      expect(await readFile(join(mountPoint, "model.gguf"), "utf8")).toBe("previous model");
      expect((await readdir(mountPoint)).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    } finally {
      spawnSync("umount", [mountPoint]);
    }
    expect(existsSync(mountPoint)).toBe(true);
  });
});
