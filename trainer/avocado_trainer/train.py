"""SFT trainer: `python3 -m avocado_trainer.train --job job.json`.

Emits JSON-lines progress events on stdout (the TypeScript launcher draws them),
checkpoints atomically, resumes exactly after a kill -9, and runs data parallel
under torchrun (gloo), splitting each global batch across ranks.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .atomic import write_atomic
from .data import EpochCache, ShardError, Shards
from .kd import MODE_SAME, kd_losses
from .hf import load_hf_checkpoint, save_hf_checkpoint
from .model import Qwen3Config, Qwen3ForCausalLM
from . import parallel
from .safetensors_io import SafetensorsError

CHECKPOINT = "checkpoint.pt"
TERMS = ("sft", "kd", "crossKd")


class JobError(Exception):
    pass


def emit(event, **fields):
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def learning_rate(step, optimization):
    peak = optimization["learningRate"]
    floor = optimization.get("minLearningRate", 0.0)
    warmup = optimization.get("warmupSteps", 0)
    total = optimization["steps"]
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def atomic_save(obj, path):
    write_atomic(path, lambda handle: torch.save(obj, handle))


def build_optimizer(model, optimization):
    decay, no_decay = [], []
    for parameter in model.parameters():
        (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": optimization.get("weightDecay", 0.01)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=optimization["learningRate"], betas=(0.9, 0.95), eps=1e-8)


def batch_norms(targets, rows, weights, shards):
    """Each loss term's weighted count of positions over the global batch, and `tokens`: the weighted count of
    positions with any target (an SFT target, a KD row, or both), which every term is divided by, so that each position
    weighs the same whether or not a teacher distribution came with it."""
    sft = targets != -100
    norms = {"sft": float(weights[sft].sum()), "kd": 0.0, "crossKd": 0.0}
    any_target = sft
    if shards.kd is not None:
        has = rows >= 0
        modes = torch.from_numpy(shards.kd_mode[rows[has].numpy()].astype(np.int64))
        w = weights[has]
        norms["kd"] = float(w[modes == MODE_SAME].sum())
        norms["crossKd"] = float(w[modes != MODE_SAME].sum())
        any_target = sft | has
    norms["tokens"] = float(weights[any_target].sum())
    return norms


def step_terms(logits, targets, rows, weights, shards, loss_config, device):
    """The weighted sums of each loss term on one micro-batch (divided by the global normalisers by the caller)."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    if shards.kd is None:
        # Plain shards (the tiny teachers): the summed cross-entropy exactly as before KD existed, bit for bit.
        terms = {"sft": F.cross_entropy(flat, targets.reshape(-1), ignore_index=-100, reduction="sum")}
    else:
        ce = F.cross_entropy(flat, targets.reshape(-1), ignore_index=-100, reduction="none")
        terms = {"sft": (ce * weights.reshape(-1)).sum()}
    # A zero still joined to the graph (a rank whose micro-batch has no KD rows must still backpropagate every term),
    # without another pass over the [positions, vocabulary] logits: the SFT term is computed on every batch.
    zero = terms["sft"] * 0.0
    terms["kd"] = zero
    terms["crossKd"] = zero
    if shards.kd is not None:
        positions = (rows.reshape(-1) >= 0).nonzero().squeeze(1)
        if positions.numel() > 0:
            ids, logp, modes = shards.kd_rows(rows.reshape(-1)[positions].numpy())
            ids, logp, modes = ids.to(device), logp.to(device), modes.to(device)
            positions = positions.to(device)
            per_row = kd_losses(flat[positions], ids, logp, modes, loss_config) * weights.reshape(-1)[positions]
            terms["kd"] = per_row[modes == MODE_SAME].sum()
            terms["crossKd"] = per_row[modes != MODE_SAME].sum()
    return terms


class Stepper:
    """One optimizer step of the training loop, from a batch's collation to `optimizer.step()`: `run` calls it, and
    bench/kd times it against a reference loop in the same process."""

    def __init__(self, job, shards, model, train_model, optimizer, rank=0, world=1, device=torch.device("cpu")):
        optimization = job["optimization"]
        self.shards, self.model, self.train_model, self.optimizer = shards, model, train_model, optimizer
        self.rank, self.world, self.device = rank, world, device
        self.batch_size = optimization["batchSize"]
        self.accumulation = optimization.get("gradientAccumulation", 1)
        self.clip = optimization.get("gradientClip", 1.0)
        if self.batch_size % (self.accumulation * world) != 0:
            raise JobError(f"batchSize {self.batch_size} must be divisible by gradientAccumulation × processes "
                           f"({self.accumulation} × {world})")
        self.micro = self.batch_size // self.accumulation
        self.context = job["architecture"]["context"]
        self.cache = EpochCache(shards, int(job.get("seed", 0)))
        self.pad_id = int(job.get("padId", 0))
        self.loss_config = job.get("loss") or {}
        self.weights = {"sft": float(self.loss_config.get("sft", 1.0)), "kd": float(self.loss_config.get("kd", 0.0)),
                        "crossKd": float(self.loss_config.get("crossKd", 0.0))}

    def step(self, step, rate):
        """Trains on global batch `step` at learning rate `rate`; returns (loss per position, each term's mean over
        its own positions, the gradient norm before clipping, the batch's real tokens)."""
        shards, world, rank, device, weights = self.shards, self.world, self.rank, self.device, self.weights
        indices = self.cache.batch_indices(step, self.batch_size)
        inputs_all, targets_all, real_tokens, rows_all, weights_all = shards.collate_kd(indices, self.context,
                                                                                        self.pad_id)
        # Each term is a weighted mean over the whole global batch: the normalisers are counted before it is split.
        norms = batch_norms(targets_all, rows_all, weights_all, shards)
        if norms["sft"] == 0 and norms["kd"] == 0 and norms["crossKd"] == 0:
            raise JobError(f"step {step}: the batch has no training targets (check the loss masks)")
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        sums = torch.zeros(3, dtype=torch.float64)
        self.optimizer.zero_grad(set_to_none=True)
        for part in range(self.accumulation):
            rows = slice(part * self.micro, (part + 1) * self.micro)
            inputs = inputs_all[rows][rank::world].to(device)
            logits = self.train_model(inputs)
            terms = step_terms(logits, targets_all[rows][rank::world].to(device), rows_all[rows][rank::world],
                               weights_all[rows][rank::world].to(device), shards, self.loss_config, device)
            loss = sum(weights[name] * terms[name] * world / norms["tokens"] for name in TERMS if norms[name] > 0)
            if not torch.is_tensor(loss):
                continue
            if world > 1 and part < self.accumulation - 1 and hasattr(self.train_model, "no_sync"):
                with self.train_model.no_sync():
                    loss.backward()
            else:
                loss.backward()
            sums += torch.tensor([float(terms[name].detach()) for name in TERMS], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(sums)
        norm = parallel.clip(self.train_model, self.model, self.clip)
        self.optimizer.step()
        # Reported per term as its mean over its own positions; the total is what was minimised (per position).
        parts = {name: float(sums[i]) / norms[name] for i, name in enumerate(TERMS) if norms[name] > 0}
        mean_loss = sum(weights[name] * float(sums[i]) for i, name in enumerate(TERMS)) / norms["tokens"]
        return mean_loss, parts, norm, real_tokens


def distributed(device):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    backend = "nccl" if device.startswith("cuda") else "gloo"
    # Avocado's launcher has its ranks meet through a file of their own: a port picked free beforehand can be taken by
    # another launch before rank 0 binds it. Under torchrun, its environment (MASTER_ADDR/PORT).
    rendezvous = os.environ.get("AVOCADO_RENDEZVOUS")
    if rendezvous:
        store = dist.FileStore(rendezvous, world)
        dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]), world_size=world)
    else:
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def run(job):
    rank, world = distributed(job.get("device") or "cpu")
    torch.set_num_threads(int(job.get("threads", 1)))
    seed = int(job.get("seed", 0))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    shards = Shards(job["shards"])
    architecture = job["architecture"]
    optimization = job["optimization"]
    out = job["out"]
    os.makedirs(out, exist_ok=True)

    if job.get("initFrom"):
        model, config = load_hf_checkpoint(job["initFrom"], context=architecture.get("context"))
        if config.vocab_size != shards.vocab_size:
            raise JobError(f"{job['initFrom']}: vocabulary of {config.vocab_size} does not match the data's {shards.vocab_size}")
    else:
        config = Qwen3Config.from_architecture(architecture, shards.vocab_size)
        model = Qwen3ForCausalLM(config)
    device = torch.device(job.get("device") or "cpu")
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise JobError("device 'cuda' was asked for but torch sees no GPU")
    model.to(device)
    kind = job.get("parallel") or "ddp"

    step = 0
    history = []
    term_history = {}
    checkpoint_path = os.path.join(out, CHECKPOINT)
    if os.path.exists(checkpoint_path):
        # Our own file; it holds RNG states, which torch >= 2.6's weights_only loader refuses.
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise JobError(f"{checkpoint_path}: does not match this job's model ({str(error).splitlines()[0]}); remove it to start over") from error
        step = state["step"]
        history = state["history"]
        term_history = state.get("terms", {})
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        if rank == 0:
            emit("resume", step=step)

    train_model = parallel.wrap(model, kind, device, world)
    # Under FSDP the optimizer holds only this rank's shard: it is built over the wrapped parameters.
    optimizer = build_optimizer(train_model if kind == "fsdp" else model, optimization)
    if step > 0:
        try:
            parallel.load_optimizer(train_model, optimizer, state["optimizer"], kind)
        except (RuntimeError, ValueError, KeyError) as error:
            raise JobError(f"{checkpoint_path}: its optimizer state does not match this job ({str(error).splitlines()[0]}); remove it to start over") from error

    stepper = Stepper(job, shards, model, train_model, optimizer, rank, world, device)
    total_steps = optimization["steps"]
    checkpoint_every = optimization.get("checkpointEvery", 100)
    stop_after = job.get("stopAfterSteps")

    if rank == 0:
        parameters = sum(p.numel() for p in model.parameters())
        emit("start", steps=total_steps, step=step, sequences=len(shards), parameters=parameters, processes=world)

    started = time.time()
    tokens_seen = 0
    model.train()
    while step < total_steps:
        step_started = time.time()
        rate = learning_rate(step, optimization)
        mean_loss, parts, norm, real_tokens = stepper.step(step, rate)
        tokens_seen += real_tokens
        step += 1
        if not math.isfinite(mean_loss):
            raise JobError(f"step {step}: loss is {mean_loss} (diverged; lower the learning rate)")
        history.append([step, mean_loss])
        for name, value in parts.items():
            term_history.setdefault(name, []).append([step, value])
        if rank == 0:
            elapsed = time.time() - started
            emit("step", step=step, steps=total_steps, loss=mean_loss, lr=rate, gradNorm=float(norm), terms=parts,
                 tokensPerSecond=tokens_seen / elapsed if elapsed > 0 else 0.0, seconds=time.time() - step_started)
        if step % checkpoint_every == 0 or step == total_steps:
            weights_state, optimizer_state = parallel.full_states(train_model, model, optimizer, kind)
        if rank == 0 and (step % checkpoint_every == 0 or step == total_steps):
            atomic_save({
                "model": weights_state,
                "optimizer": optimizer_state,
                "step": step,
                "history": history,
                "terms": term_history,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None},
            }, checkpoint_path)
            emit("checkpoint", step=step)
        if stop_after is not None and step >= stop_after:
            break

    if rank == 0 and step >= total_steps:
        if kind == "fsdp":
            model.load_state_dict(weights_state)
        save_hf_checkpoint(model, out, bos_token_id=job.get("bosId"), eos_token_id=job.get("eosId"))
        emit("done", step=step, loss=history[-1][1] if history else None, seconds=time.time() - started, history=history,
             terms=term_history)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Avocado SFT trainer")
    parser.add_argument("--job", required=True, help="job JSON written by the TypeScript launcher")
    args = parser.parse_args(argv)
    try:
        with open(args.job, "r", encoding="utf-8") as handle:
            job = json.load(handle)
        run(job)
    except (JobError, ShardError, SafetensorsError, parallel.ParallelError, ValueError) as error:
        emit("error", message=str(error))
        return 2
    except (OSError, json.JSONDecodeError) as error:
        emit("error", message=f"{getattr(error, 'filename', None) or args.job}: {error}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
