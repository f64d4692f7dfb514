"""Token-id shards written by the TypeScript side.

A shard folder holds `index.json`, `tokens.bin` (uint32 LE), `mask.bin` (uint8:
1 where the token is a training target) and `offsets.bin` (uint64 LE, N+1
sequence boundaries). Batches are a pure function of (seed, step), so a resumed
run sees exactly the batches it would have seen.
"""
import json
import os

import numpy as np
import torch

FORMAT = "avocado-shards/1"


class ShardError(Exception):
    pass


KD_FORMAT = "avocado-kd/1"


class Shards:
    def __init__(self, folder):
        index_path = os.path.join(folder, "index.json")
        try:
            with open(index_path, "r", encoding="utf-8") as handle:
                self.index = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise ShardError(f"{index_path}: cannot be read ({error})") from error
        if self.index.get("format") != FORMAT:
            raise ShardError(f"{index_path}: format is {self.index.get('format')!r}, expected {FORMAT!r}")
        self.vocab_size = int(self.index["vocabularySize"])
        count = int(self.index["sequences"])
        total = int(self.index["tokens"])
        self.tokens = self._load(folder, "tokens.bin", np.uint32, total)
        self.mask = self._load(folder, "mask.bin", np.uint8, total)
        self.offsets = self._load(folder, "offsets.bin", np.uint64, count + 1).astype(np.int64)
        if self.offsets[-1] != total or np.any(np.diff(self.offsets) <= 0):
            raise ShardError(f"{os.path.join(folder, 'offsets.bin')}: offsets are inconsistent with {total} tokens")
        if total and int(self.tokens.max()) >= self.vocab_size:
            raise ShardError(f"{os.path.join(folder, 'tokens.bin')}: a token id is outside the vocabulary of {self.vocab_size}")
        self.weights = np.ones(count, dtype=np.float32)
        self.kd = None
        if os.path.exists(os.path.join(folder, "kd.json")):
            self._load_kd(folder, count, total)

    def _load_kd(self, folder, count, total):
        """The teacher top-k sidecar (`kd.json`): a row per KD position, indexed from the token stream."""
        path = os.path.join(folder, "kd.json")
        try:
            with open(path, "r", encoding="utf-8") as handle:
                meta = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise ShardError(f"{path}: cannot be read ({error})") from error
        if meta.get("format") != KD_FORMAT:
            raise ShardError(f"{path}: format is {meta.get('format')!r}, expected {KD_FORMAT!r}")
        k, rows = int(meta["k"]), int(meta["rows"])
        self.kd_k = k
        self.kd_index = self._load(folder, "kd_index.bin", np.int32, total)
        self.kd_ids = self._load(folder, "kd_ids.bin", np.int32, rows * k).reshape(rows, k)
        self.kd_logp = self._load(folder, "kd_logp.bin", np.float32, rows * k).reshape(rows, k)
        self.kd_mode = self._load(folder, "kd_mode.bin", np.uint8, rows)
        self.weights = self._load(folder, "weights.bin", np.float32, count)
        if rows and (int(self.kd_index.max()) >= rows or int(self.kd_ids.max()) >= self.vocab_size):
            raise ShardError(f"{folder}: the KD sidecar points outside its rows or the vocabulary")
        self.kd = meta

    @staticmethod
    def _load(folder, name, dtype, expected):
        path = os.path.join(folder, name)
        try:
            array = np.fromfile(path, dtype=np.dtype(dtype).newbyteorder("<"))
        except OSError as error:
            raise ShardError(f"{path}: cannot be read ({error})") from error
        if array.shape[0] != expected:
            raise ShardError(f"{path}: holds {array.shape[0]} values, index.json says {expected} (truncated?)")
        return array

    def __len__(self):
        return len(self.offsets) - 1

    def order(self, seed, epoch):
        return np.random.RandomState((seed * 1_000_003 + epoch) % (2**32)).permutation(len(self))

    def collate(self, indices, context, pad_id=0):
        """Right-padded inputs and targets (-100 where the mask is 0 or padded), and the count of real input tokens."""
        sequences = []
        for i in indices:
            begin, end = int(self.offsets[i]), int(self.offsets[i + 1])
            end = min(end, begin + context + 1)
            sequences.append((self.tokens[begin:end].astype(np.int64), self.mask[begin:end]))
        return self._pad(sequences, pad_id)

    def collate_kd(self, indices, context, pad_id=0):
        """collate, plus per target the sequence weight and the KD row (-1: none), and the rows themselves."""
        inputs, targets, real = self.collate(indices, context, pad_id)
        rows = np.full(targets.shape, -1, dtype=np.int64)
        weights = np.zeros(targets.shape, dtype=np.float32)
        for row, i in enumerate(indices):
            begin, end = int(self.offsets[i]), int(self.offsets[i + 1])
            end = min(end, begin + context + 1)
            n = end - begin - 1
            weights[row, :n] = self.weights[i]
            if self.kd is not None:
                rows[row, :n] = self.kd_index[begin + 1:end]
        return inputs, targets, real, torch.from_numpy(rows), torch.from_numpy(weights)

    def kd_rows(self, rows):
        """The teacher top-k of the given KD rows: ids, log-probs, modes."""
        return (torch.from_numpy(self.kd_ids[rows].astype(np.int64)), torch.from_numpy(self.kd_logp[rows]),
                torch.from_numpy(self.kd_mode[rows].astype(np.int64)))

    @staticmethod
    def _pad(sequences, pad_id):
        length = max(len(t) for t, _ in sequences) - 1
        inputs = np.full((len(sequences), length), pad_id, dtype=np.int64)
        targets = np.full((len(sequences), length), -100, dtype=np.int64)
        for row, (tokens, mask) in enumerate(sequences):
            n = len(tokens) - 1
            inputs[row, :n] = tokens[:-1]
            target = tokens[1:].copy()
            target[mask[1:] == 0] = -100
            targets[row, :n] = target
        real = sum(len(t) - 1 for t, _ in sequences)
        return torch.from_numpy(inputs), torch.from_numpy(targets), real


class EpochCache:
    """Caches the permutation of the current epoch (batch_indices recomputes it otherwise)."""

    def __init__(self, shards, seed):
        self.shards = shards
        self.seed = seed
        self.cache = {}

    def batch_indices(self, step, batch_size):
        count = len(self.shards)
        out = []
        for position in range(step * batch_size, (step + 1) * batch_size):
            epoch, within = divmod(position, count)
            if epoch not in self.cache:
                self.cache = {epoch: self.shards.order(self.seed, epoch)}
            out.append(int(self.cache[epoch][within]))
        return out
