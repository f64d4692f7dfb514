import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { scratchFolder } from "../../test/fixtures.ts";
import { writeAtomicWith, writeFileAtomic } from "./atomic-write.ts";
import { PROJECT_ROOT } from "./paths.ts";

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

  it("leaves nothing that looks complete when a real disk fills up", async (context) => {
    const mountPoint = join(scratch, "tiny-disk");
    await mkdir(mountPoint, { recursive: true });
    // A 64 KiB tmpfs in a mount namespace of the check's own (unshare -rm: no root needed where user namespaces are
    // allowed).
    const script = 'mount -t tmpfs -o size=64k tmpfs "$1" && exec node bin/run-ts.js test/disk-full-check.ts "$1"';
    const run = spawnSync("unshare", ["-rm", "sh", "-c", script, "sh", mountPoint], {
      cwd: PROJECT_ROOT,
      encoding: "utf8",
    });
    if (run.error || (run.status !== 0 && !run.stdout && /unshare|mount/.test(run.stderr ?? ""))) {
      context.skip(
        `no tmpfs can be mounted here (${(run.stderr ?? run.error?.message ?? "").trim().split("\n")[0]}); the injected ENOSPC above covers the same path`,
      );
    }
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { error: string | null; content: string; temporary: string[] };
    expect(result.error).toMatch(/^FileError: .*model\.gguf: could not be written/);
    expect(result.content).toBe("previous model");
    expect(result.temporary).toEqual([]);
  });
});
