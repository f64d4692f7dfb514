import { readFile } from "node:fs/promises";
import { z } from "zod";
import { FileError } from "../core/errors.ts";
import { fromFloat16Bits } from "./float16.ts";

const entrySchema = z.object({
  dtype: z.enum(["F32", "F16", "BF16"]),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});
const BYTES = { F32: 4, F16: 2, BF16: 2 } as const;

export interface LoadedTensor {
  shape: number[];
  data: Float32Array;
}

/** Reads a safetensors file into float32 tensors, validating the header against the file size. */
export async function readSafetensors(
  path: string,
): Promise<{ tensors: Map<string, LoadedTensor>; metadata: Record<string, string> }> {
  const buffer = await readFile(path).catch((error: unknown) => {
    throw new FileError(path, "cannot be read", { cause: error });
  });
  if (buffer.length < 8) throw new FileError(path, "is truncated (no safetensors header)");
  const headerLength = Number(buffer.readBigUInt64LE(0));
  if (headerLength > buffer.length - 8 || headerLength > 100_000_000)
    throw new FileError(path, "is truncated or corrupt (header length out of range)");
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buffer.subarray(8, 8 + headerLength).toString("utf8")) as Record<string, unknown>;
  } catch (error) {
    throw new FileError(path, "has a corrupt safetensors header", { cause: error });
  }
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, LoadedTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = value as Record<string, string>;
      continue;
    }
    const parsed = entrySchema.safeParse(value);
    if (!parsed.success)
      throw new FileError(path, `tensor ${name} has an unsupported header: ${parsed.error.issues[0]?.message}`);
    const {
      dtype,
      shape,
      data_offsets: [begin, end],
    } = parsed.data;
    const count = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== count * BYTES[dtype] || dataStart + end > buffer.length) {
      throw new FileError(path, `tensor ${name} is truncated or its offsets are wrong`);
    }
    const bytes = buffer.subarray(dataStart + begin, dataStart + end);
    const data = new Float32Array(count);
    if (dtype === "F32")
      data.set(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)));
    else if (dtype === "F16") for (let i = 0; i < count; i++) data[i] = fromFloat16Bits(bytes.readUInt16LE(i * 2));
    else {
      const view = new DataView(new ArrayBuffer(4));
      for (let i = 0; i < count; i++) {
        view.setUint32(0, bytes.readUInt16LE(i * 2) << 16, false);
        data[i] = view.getFloat32(0, false);
      }
    }
    tensors.set(name, { shape, data });
  }
  return { tensors, metadata };
}
