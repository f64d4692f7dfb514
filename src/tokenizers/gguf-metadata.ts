import type { MetadataValue } from "../export/gguf-writer.ts";
import type { TrimmedVocabulary } from "./trim.ts";

/** `tokenizer.ggml.*` metadata for a trimmed vocabulary, plus the id mapping back to the family's real ids. */
export function tokenizerMetadata(vocabulary: TrimmedVocabulary, chatTemplate: string): Record<string, MetadataValue> {
  const reference = vocabulary.reference;
  const kept = new Set(vocabulary.fullIds);
  const metadata: Record<string, MetadataValue> = {
    "tokenizer.ggml.model": { type: "string", value: reference.ggufModel },
    "tokenizer.ggml.pre": { type: "string", value: reference.ggufPre },
    "tokenizer.ggml.tokens": { type: "strings", value: vocabulary.fullIds.map((id) => reference.tokenString(id)) },
    "tokenizer.ggml.token_type": { type: "int32s", value: vocabulary.fullIds.map((id) => reference.tokenType(id)) },
  };
  if (reference.ggufModel === "llama") {
    metadata["tokenizer.ggml.scores"] = {
      type: "float32s",
      value: vocabulary.fullIds.map((id) => reference.tokenScore(id)),
    };
    metadata["tokenizer.ggml.add_space_prefix"] = { type: "bool", value: false };
  } else {
    metadata["tokenizer.ggml.merges"] = { type: "strings", value: reference.mergesFor(kept) };
  }
  const roles = [
    ["bos", "tokenizer.ggml.bos_token_id"],
    ["eos", "tokenizer.ggml.eos_token_id"],
    ["eot", "tokenizer.ggml.eot_token_id"],
    ["pad", "tokenizer.ggml.padding_token_id"],
    ["unk", "tokenizer.ggml.unknown_token_id"],
  ] as const;
  for (const [role, key] of roles) {
    const id = vocabulary.role(role);
    if (id !== undefined) metadata[key] = { type: "uint32", value: id };
  }
  metadata["tokenizer.ggml.add_bos_token"] = { type: "bool", value: reference.roles.addBos };
  metadata["tokenizer.ggml.add_eos_token"] = { type: "bool", value: false };
  metadata["tokenizer.chat_template"] = { type: "string", value: chatTemplate };
  metadata["avocado.tokenizer.family"] = { type: "string", value: reference.family };
  metadata["avocado.tokenizer.full_ids"] = { type: "uint32s", value: [...vocabulary.fullIds] };
  return metadata;
}
