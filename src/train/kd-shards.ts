/**
 * The teacher top-k beside token shards (`avocado-kd/1`), read by the trainer's data.py:
 *
 *   kd.json        format, k, rows, counts per mode
 *   kd_index.bin   int32 per token of tokens.bin: the KD row whose distribution that token is drawn from, or -1
 *   kd_ids.bin     int32 [rows, k]: the student's ids, -1 where a teacher token has no student token (and for ULD)
 *   kd_logp.bin    float32 [rows, k]: the teacher's log-probs, most likely first
 *   kd_mode.bin    uint8 [rows]: 1 same tokenizer, 2 other tokenizer mapped by text, 3 other tokenizer sorted (ULD)
 *   weights.bin    float32 per sequence: the weight of its every loss term
 */
export const KD_FORMAT = "avocado-kd/1";

export interface KdSequenceRows {
  /** Position in the sequence of the token the row is the target distribution for. */
  position: number;
  mode: number;
  ids: readonly number[];
  logprobs: readonly number[];
}

export function kdSidecar(
  lengths: readonly number[],
  rows: readonly (readonly KdSequenceRows[])[],
  weights: readonly number[],
  k: number,
): Record<string, Uint8Array> {
  const total = lengths.reduce((sum, n) => sum + n, 0);
  const count = rows.reduce((sum, r) => sum + r.length, 0);
  const index = new Int32Array(total).fill(-1);
  const ids = new Int32Array(count * k);
  const logp = new Float32Array(count * k);
  const mode = new Uint8Array(count);
  const modes: Record<string, number> = {};
  let start = 0;
  let row = 0;
  lengths.forEach((length, sequence) => {
    for (const entry of rows[sequence] ?? []) {
      index[start + entry.position] = row;
      for (let i = 0; i < k; i++) {
        ids[row * k + i] = entry.ids[i] ?? -1;
        logp[row * k + i] = entry.logprobs[i] ?? -1e4;
      }
      mode[row] = entry.mode;
      modes[entry.mode] = (modes[entry.mode] ?? 0) + 1;
      row++;
    }
    start += length;
  });
  const bytes = (array: ArrayBufferView) => new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  return {
    "kd.json": new TextEncoder().encode(JSON.stringify({ format: KD_FORMAT, k, rows: count, modes })),
    "kd_index.bin": bytes(index),
    "kd_ids.bin": bytes(ids),
    "kd_logp.bin": bytes(logp),
    "kd_mode.bin": mode,
    "weights.bin": bytes(Float32Array.from(weights)),
  };
}
