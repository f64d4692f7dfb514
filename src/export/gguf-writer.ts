import { GGUFValueType, serializeGgufMetadata, type GGUFTypedMetadata } from "@huggingface/gguf";
import { writeStreamAtomic } from "../core/atomic-write.ts";
import { InputError } from "../core/errors.ts";
import { toFloat16Bits } from "./float16.ts";

export type TensorEncoding = "f32" | "f16" | "q8_0";
/** ggml type ids (ggml.h `enum ggml_type`). */
const GGML_TYPE: Record<TensorEncoding, number> = { f32: 0, f16: 1, q8_0: 8 };
const ALIGNMENT = 32;
const Q8_BLOCK = 32;

export interface GgufTensor {
  name: string;
  /** PyTorch order (outermost first); GGUF stores it reversed. */
  shape: readonly number[];
  data: Float32Array;
  encoding: TensorEncoding;
}

export type MetadataValue =
  | { type: "string"; value: string }
  | { type: "uint32"; value: number }
  | { type: "int32"; value: number }
  | { type: "float32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "strings"; value: string[] }
  | { type: "int32s"; value: number[] }
  | { type: "uint32s"; value: number[] }
  | { type: "float32s"; value: number[] };

function typed(entry: MetadataValue): { value: unknown; type: GGUFValueType; subType?: GGUFValueType } {
  switch (entry.type) {
    case "string":
      return { value: entry.value, type: GGUFValueType.STRING };
    case "uint32":
      return { value: entry.value, type: GGUFValueType.UINT32 };
    case "int32":
      return { value: entry.value, type: GGUFValueType.INT32 };
    case "float32":
      return { value: entry.value, type: GGUFValueType.FLOAT32 };
    case "bool":
      return { value: entry.value, type: GGUFValueType.BOOL };
    case "strings":
      return { value: entry.value, type: GGUFValueType.ARRAY, subType: GGUFValueType.STRING };
    case "int32s":
      return { value: entry.value, type: GGUFValueType.ARRAY, subType: GGUFValueType.INT32 };
    case "uint32s":
      return { value: entry.value, type: GGUFValueType.ARRAY, subType: GGUFValueType.UINT32 };
    case "float32s":
      return { value: entry.value, type: GGUFValueType.ARRAY, subType: GGUFValueType.FLOAT32 };
  }
}

function encodeTensor(tensor: GgufTensor): Uint8Array {
  const { data, encoding } = tensor;
  if (encoding === "f32") return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  if (encoding === "f16") {
    const out = new Uint16Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = toFloat16Bits(data[i] as number);
    return new Uint8Array(out.buffer);
  }
  const rowLength = tensor.shape[tensor.shape.length - 1] ?? 0;
  if (rowLength % Q8_BLOCK !== 0)
    throw new InputError(`${tensor.name}: q8_0 needs rows that are a multiple of ${Q8_BLOCK} (got ${rowLength})`);
  const blocks = data.length / Q8_BLOCK;
  const out = new Uint8Array(blocks * (2 + Q8_BLOCK));
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < Q8_BLOCK; i++) amax = Math.max(amax, Math.abs(data[b * Q8_BLOCK + i] as number));
    const scale = amax / 127;
    const inverse = scale ? 1 / scale : 0;
    const base = b * (2 + Q8_BLOCK);
    view.setUint16(base, toFloat16Bits(scale), true);
    for (let i = 0; i < Q8_BLOCK; i++)
      view.setInt8(base + 2 + i, Math.round((data[b * Q8_BLOCK + i] as number) * inverse));
  }
  return out;
}

function padding(length: number): number {
  return (ALIGNMENT - (length % ALIGNMENT)) % ALIGNMENT;
}

/** Serialises a GGUF v3 file (metadata, tensor infos, aligned tensor data) atomically. */
export async function writeGguf(
  path: string,
  metadata: Record<string, MetadataValue>,
  tensors: readonly GgufTensor[],
): Promise<void> {
  const typedMetadata = {
    version: { value: 3, type: GGUFValueType.UINT32 },
    tensor_count: { value: BigInt(tensors.length), type: GGUFValueType.UINT64 },
    kv_count: { value: BigInt(Object.keys(metadata).length), type: GGUFValueType.UINT64 },
    ...Object.fromEntries(Object.entries(metadata).map(([key, entry]) => [key, typed(entry)])),
  } as unknown as GGUFTypedMetadata;
  const head = serializeGgufMetadata(typedMetadata, { alignment: 1 });

  const encoded = tensors.map(encodeTensor);
  const infoChunks: Buffer[] = [];
  let offset = 0;
  tensors.forEach((tensor, index) => {
    const name = Buffer.from(tensor.name, "utf8");
    const dims = [...tensor.shape].reverse();
    const info = Buffer.alloc(8 + name.length + 4 + dims.length * 8 + 4 + 8);
    let p = info.writeBigUInt64LE(BigInt(name.length), 0);
    p += name.copy(info, p);
    p = info.writeUInt32LE(dims.length, p);
    for (const d of dims) p = info.writeBigUInt64LE(BigInt(d), p);
    p = info.writeUInt32LE(GGML_TYPE[tensor.encoding], p);
    info.writeBigUInt64LE(BigInt(offset), p);
    infoChunks.push(info);
    const size = (encoded[index] as Uint8Array).length;
    offset += size + padding(size);
  });
  const headerLength = head.length + infoChunks.reduce((sum, c) => sum + c.length, 0);

  function* chunks(): Generator<Uint8Array> {
    yield head;
    yield* infoChunks;
    yield new Uint8Array(padding(headerLength));
    for (const data of encoded) {
      yield data;
      yield new Uint8Array(padding(data.length));
    }
  }
  await writeStreamAtomic(path, chunks());
}
