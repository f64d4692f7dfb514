"""The baseline for bench/trainer: the plainest PyTorch loop over the same model and batches.

No events, no checkpoints, no schedule bookkeeping: forward, loss, backward, clip, step.
Prints {"tokensPerSecond": ...} as the last line.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

from avocado_trainer.data import EpochCache, Shards
from avocado_trainer.model import Qwen3Config, Qwen3ForCausalLM


def main():
    job = json.load(open(sys.argv[1], encoding="utf-8"))
    torch.set_num_threads(job["threads"])
    torch.manual_seed(job["seed"])
    shards = Shards(job["shards"])
    model = Qwen3ForCausalLM(Qwen3Config.from_architecture(job["architecture"], shards.vocab_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=job["optimization"]["learningRate"])
    cache = EpochCache(shards, job["seed"])
    batch = job["optimization"]["batchSize"]
    tokens = 0
    started = time.time()
    for step in range(job["optimization"]["steps"]):
        inputs, targets, real = shards.collate(cache.batch_indices(step, batch), job["architecture"]["context"])
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens += real
    print(json.dumps({"tokensPerSecond": tokens / (time.time() - started), "loss": float(loss)}))


if __name__ == "__main__":
    main()
