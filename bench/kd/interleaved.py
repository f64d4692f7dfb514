"""bench/kd in one process: the trainer's own step (`Stepper.step`, as `run` calls it) with KD, the same without KD
(SFT), and the reference loop's step, each on its own model and optimizer from the same initial weights, taking
turns on the same batch at every step (the order rotates from step to step).

The same job differs in speed from one process to the next here by more than the 5 % the bench must resolve; three
loops taking turns within each step share one process and the machine's load of the moment. Prints {"sft": [...],
"kd": [...], "reference": [...]}: each step's wall time, from collation to the optimizer step.
"""
import json
import sys
import time

import torch

from avocado_trainer.data import Shards
from avocado_trainer.model import Qwen3Config, Qwen3ForCausalLM
from avocado_trainer.train import Stepper, build_optimizer, learning_rate
from reference_kd_loop import ReferenceLoop


def trainer_step(job, shards, kd):
    loss = dict(job.get("loss") or {})
    if not kd:
        loss.update(kd=0, crossKd=0)
    job = {**job, "loss": loss}
    torch.manual_seed(job["seed"])
    model = Qwen3ForCausalLM(Qwen3Config.from_architecture(job["architecture"], shards.vocab_size))
    model.train()
    stepper = Stepper(job, shards, model, model, build_optimizer(model, job["optimization"]))
    return lambda step: stepper.step(step, learning_rate(step, job["optimization"]))


def main():
    job = json.load(open(sys.argv[1], encoding="utf-8"))
    torch.set_num_threads(job["threads"])
    shards = Shards(job["shards"])
    reference = ReferenceLoop(job, shards)
    reference.model.train()
    loops = {"sft": trainer_step(job, shards, False), "kd": trainer_step(job, shards, True), "reference": reference.step}
    names = list(loops)
    seconds = {name: [] for name in names}
    for step in range(job["optimization"]["steps"]):
        for turn in range(len(names)):
            name = names[(step + turn) % len(names)]
            started = time.perf_counter()
            loops[name](step)
            seconds[name].append(time.perf_counter() - started)
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
