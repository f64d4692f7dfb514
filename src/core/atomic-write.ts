import { createWriteStream } from "node:fs";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { FileError, errorMessage } from "./errors.ts";

function temporaryPath(path: string): string {
  return `${path}.${process.pid}.${Date.now().toString(36)}.tmp`;
}

/**
 * Writes a file so that it is either absent, old, or complete: data goes to a
 * temporary file beside the target, is fsync'ed, then renamed over it. A full
 * disk or a crash leaves at most a `*.tmp` file, never a half-written target.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await writeAtomicWith(path, async (handle) => {
    await handle.writeFile(data);
  });
}

export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

type FileHandle = Awaited<ReturnType<typeof open>>;

/** Same guarantee as writeFileAtomic, for writers that produce data in chunks. */
export async function writeAtomicWith(path: string, write: (handle: FileHandle) => Promise<void>): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temporary = temporaryPath(path);
  let handle: FileHandle | undefined;
  try {
    handle = await open(temporary, "w");
    await write(handle);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temporary, path);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await rm(temporary, { force: true });
    throw new FileError(path, `could not be written: ${errorMessage(error)}`, { cause: error });
  }
}

/** A stream-based atomic writer, for large files written incrementally. */
export async function writeStreamAtomic(
  path: string,
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temporary = temporaryPath(path);
  try {
    await new Promise<void>((resolve, reject) => {
      const stream = createWriteStream(temporary);
      stream.on("error", reject);
      (async () => {
        for await (const chunk of chunks) {
          if (!stream.write(chunk)) await new Promise<void>((r) => stream.once("drain", () => r()));
        }
        stream.end(() => resolve());
      })().catch(reject);
    });
    const handle = await open(temporary, "r+");
    await handle.sync();
    await handle.close();
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw new FileError(path, `could not be written: ${errorMessage(error)}`, { cause: error });
  }
}
