import { stat } from "node:fs/promises";
import { readGgufFileInfo, type GgufFileInfo } from "node-llama-cpp";
import { FileError, errorMessage } from "../core/errors.ts";

/** ggml type → (block size in elements, bytes per block), for the types the project writes or reads. */
const TYPE_SIZES: Record<number, [number, number]> = { 0: [1, 4], 1: [1, 2], 8: [32, 34], 30: [1, 2] };

/**
 * Reads a GGUF's header and checks that the file holds all its tensor data, so
 * that a corrupt or truncated file is reported with its name before llama.cpp
 * sees it.
 */
export async function checkGguf(path: string): Promise<GgufFileInfo> {
  const size = await stat(path).then(
    (s) => s.size,
    (error: unknown) => {
      throw new FileError(path, `cannot be opened (${(error as NodeJS.ErrnoException).code ?? errorMessage(error)})`);
    },
  );
  let info: GgufFileInfo;
  try {
    info = await readGgufFileInfo(path, { readTensorInfo: true, logWarnings: false });
  } catch (error) {
    throw new FileError(path, `is not a valid GGUF file (${errorMessage(error)})`, { cause: error });
  }
  const tensors = info.fullTensorInfo ?? [];
  let end = 0;
  for (const tensor of tensors) {
    const sizes = TYPE_SIZES[tensor.ggmlType];
    if (!sizes) continue;
    const elements = tensor.dimensions.reduce<number>((a, b) => a * Number(b), 1);
    const bytes = (elements / sizes[0]) * sizes[1];
    end = Math.max(end, Number(tensor.offset) + bytes);
  }
  const alignment = Number(info.metadata.general?.alignment ?? 32);
  const headerBytes = info.metadataSize + (info.tensorInfoSize ?? 0);
  const dataStart = Math.ceil(headerBytes / alignment) * alignment;
  if (tensors.length > 0 && dataStart + end > size)
    throw new FileError(path, `is truncated: its tensors need more than the file's ${size} bytes`);
  return info;
}
