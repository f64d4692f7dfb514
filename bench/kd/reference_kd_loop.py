"""The baseline for bench/kd: the plainest PyTorch loop with top-k KD over the same model and batches.

Forward, cross-entropy plus forward KL on the stored top-k (gathered student log-probs, renormalised teacher),
backward, clip, step. No weights, no modes, no tail, no events. Run alone it trains a whole run and prints
{"tokensPerSecond": ..., "stepSeconds": [...]} last (each step's wall time, from the batch's collation to the
optimizer step, as the trainer reports it); interleaved.py imports its step.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

from avocado_trainer.data import EpochCache, Shards
from avocado_trainer.model import Qwen3Config, Qwen3ForCausalLM


class ReferenceLoop:
    def __init__(self, job, shards):
        torch.manual_seed(job["seed"])
        self.job, self.shards = job, shards
        self.model = Qwen3ForCausalLM(Qwen3Config.from_architecture(job["architecture"], shards.vocab_size))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=job["optimization"]["learningRate"])
        self.cache = EpochCache(shards, job["seed"])

    def step(self, step):
        """Trains on global batch `step`; returns (loss, real tokens)."""
        shards, batch = self.shards, self.job["optimization"]["batchSize"]
        inputs, targets, real, rows, _ = shards.collate_kd(self.cache.batch_indices(step, batch),
                                                           self.job["architecture"]["context"])
        logits = self.model(inputs).reshape(-1, shards.vocab_size)
        loss = F.cross_entropy(logits, targets.reshape(-1), ignore_index=-100)
        at = (rows.reshape(-1) >= 0).nonzero().squeeze(1)
        ids, logp, _ = shards.kd_rows(rows.reshape(-1)[at].numpy())
        student = F.log_softmax(logits[at], dim=1).gather(1, ids.clamp(min=0))
        teacher = F.log_softmax(logp, dim=1)
        loss = loss + (teacher.exp() * (teacher - student)).sum(1).mean()
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return float(loss), real


def main():
    job = json.load(open(sys.argv[1], encoding="utf-8"))
    torch.set_num_threads(job["threads"])
    loop = ReferenceLoop(job, Shards(job["shards"]))
    tokens = 0
    started = time.time()
    seconds = []
    for step in range(job["optimization"]["steps"]):
        step_started = time.time()
        loss, real = loop.step(step)
        tokens += real
        seconds.append(time.time() - step_started)
    print(json.dumps({"tokensPerSecond": tokens / (time.time() - started), "loss": loss, "stepSeconds": seconds}))


if __name__ == "__main__":
    main()
