import type { Architecture } from "../core/config/schema.ts";
import { FileError } from "../core/errors.ts";
import { writeGguf, type GgufTensor, type MetadataValue, type TensorEncoding } from "./gguf-writer.ts";
import type { LoadedTensor } from "./safetensors.ts";

/** Hugging Face Qwen3 tensor names → llama.cpp GGUF names (per layer). */
const LAYER_TENSORS: Record<string, string> = {
  "input_layernorm.weight": "attn_norm.weight",
  "self_attn.q_proj.weight": "attn_q.weight",
  "self_attn.k_proj.weight": "attn_k.weight",
  "self_attn.v_proj.weight": "attn_v.weight",
  "self_attn.o_proj.weight": "attn_output.weight",
  "self_attn.q_norm.weight": "attn_q_norm.weight",
  "self_attn.k_norm.weight": "attn_k_norm.weight",
  "post_attention_layernorm.weight": "ffn_norm.weight",
  "mlp.gate_proj.weight": "ffn_gate.weight",
  "mlp.up_proj.weight": "ffn_up.weight",
  "mlp.down_proj.weight": "ffn_down.weight",
};
/** general.file_type (llama_ftype) per encoding. */
const FILE_TYPE: Record<TensorEncoding, number> = { f32: 0, f16: 1, q8_0: 7 };

export function qwen3ArchitectureMetadata(
  name: string,
  architecture: Architecture,
  encoding: TensorEncoding,
): Record<string, MetadataValue> {
  return {
    "general.architecture": { type: "string", value: "qwen3" },
    "general.name": { type: "string", value: name },
    "general.file_type": { type: "uint32", value: FILE_TYPE[encoding] },
    "qwen3.block_count": { type: "uint32", value: architecture.layers },
    "qwen3.context_length": { type: "uint32", value: architecture.context },
    "qwen3.embedding_length": { type: "uint32", value: architecture.hidden },
    "qwen3.feed_forward_length": { type: "uint32", value: architecture.ffn },
    "qwen3.attention.head_count": { type: "uint32", value: architecture.heads },
    "qwen3.attention.head_count_kv": { type: "uint32", value: architecture.kvHeads },
    "qwen3.attention.key_length": { type: "uint32", value: architecture.headDim },
    "qwen3.attention.value_length": { type: "uint32", value: architecture.headDim },
    "qwen3.rope.freq_base": { type: "float32", value: architecture.ropeTheta },
    "qwen3.attention.layer_norm_rms_epsilon": { type: "float32", value: architecture.rmsNormEps },
  };
}

/**
 * Maps Hugging Face Qwen3 weights onto GGUF tensors. A Qwen3 GGUF needs no q/k
 * permutation (NEOX RoPE). Norms stay f32; 2-D weights take the requested encoding.
 */
export function qwen3Tensors(
  weights: Map<string, LoadedTensor>,
  architecture: Architecture,
  encoding: TensorEncoding,
  source: string,
): GgufTensor[] {
  const take = (name: string): LoadedTensor => {
    const tensor = weights.get(name);
    if (!tensor) throw new FileError(source, `is missing tensor ${name}`);
    return tensor;
  };
  const tensor = (ggufName: string, loaded: LoadedTensor): GgufTensor => ({
    name: ggufName,
    shape: loaded.shape,
    data: loaded.data,
    encoding: loaded.shape.length === 1 ? "f32" : encoding,
  });
  const out: GgufTensor[] = [tensor("token_embd.weight", take("model.embed_tokens.weight"))];
  for (let layer = 0; layer < architecture.layers; layer++) {
    for (const [hf, gguf] of Object.entries(LAYER_TENSORS))
      out.push(tensor(`blk.${layer}.${gguf}`, take(`model.layers.${layer}.${hf}`)));
  }
  out.push(tensor("output_norm.weight", take("model.norm.weight")));
  if (!architecture.tieEmbeddings) out.push(tensor("output.weight", take("lm_head.weight")));
  return out;
}

export async function writeQwen3Gguf(options: {
  path: string;
  name: string;
  architecture: Architecture;
  weights: Map<string, LoadedTensor>;
  encoding: TensorEncoding;
  tokenizer: Record<string, MetadataValue>;
  extra?: Record<string, MetadataValue>;
  source: string;
}): Promise<void> {
  const metadata = {
    ...qwen3ArchitectureMetadata(options.name, options.architecture, options.encoding),
    ...options.tokenizer,
    ...options.extra,
  };
  await writeGguf(
    options.path,
    metadata,
    qwen3Tensors(options.weights, options.architecture, options.encoding, options.source),
  );
}
