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
from .hf import load_hf_checkpoint, save_hf_checkpoint
from .model import Qwen3Config, Qwen3ForCausalLM
from .safetensors_io import SafetensorsError

CHECKPOINT = "checkpoint.pt"


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


def distributed(device):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
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
    optimizer = build_optimizer(model, optimization)

    step = 0
    history = []
    checkpoint_path = os.path.join(out, CHECKPOINT)
    if os.path.exists(checkpoint_path):
        # Our own file; it holds RNG states, which torch >= 2.6's weights_only loader refuses.
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise JobError(f"{checkpoint_path}: does not match this job's model ({str(error).splitlines()[0]}); remove it to start over") from error
        step = state["step"]
        history = state["history"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        if rank == 0:
            emit("resume", step=step)

    train_model = model
    if world > 1:
        # Buffers (RoPE tables, causal mask) are computed identically on every rank: no need to broadcast them.
        train_model = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False, device_ids=[device.index] if device.type == "cuda" else None)

    total_steps = optimization["steps"]
    batch_size = optimization["batchSize"]
    accumulation = optimization.get("gradientAccumulation", 1)
    clip = optimization.get("gradientClip", 1.0)
    checkpoint_every = optimization.get("checkpointEvery", 100)
    stop_after = job.get("stopAfterSteps")
    if batch_size % (accumulation * world) != 0:
        raise JobError(f"batchSize {batch_size} must be divisible by gradientAccumulation × processes ({accumulation} × {world})")
    micro = batch_size // accumulation
    context = architecture["context"]
    cache = EpochCache(shards, seed)
    pad_id = int(job.get("padId", 0))

    if rank == 0:
        parameters = sum(p.numel() for p in model.parameters())
        emit("start", steps=total_steps, step=step, sequences=len(shards), parameters=parameters, processes=world)

    started = time.time()
    tokens_seen = 0
    model.train()
    while step < total_steps:
        indices = cache.batch_indices(step, batch_size)
        inputs_all, targets_all, real_tokens = shards.collate(indices, context, pad_id)
        target_tokens = int((targets_all != -100).sum())
        if target_tokens == 0:
            raise JobError(f"step {step}: the batch has no training targets (check the loss masks)")
        rate = learning_rate(step, optimization)
        for group in optimizer.param_groups:
            group["lr"] = rate
        loss_sum = torch.zeros((), device=device)
        optimizer.zero_grad(set_to_none=True)
        for part in range(accumulation):
            rows = slice(part * micro, (part + 1) * micro)
            inputs = inputs_all[rows][rank::world].to(device)
            targets = targets_all[rows][rank::world].to(device)
            logits = train_model(inputs)
            summed = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100, reduction="sum")
            # Normalise by the global number of targets; DDP averages gradients over ranks.
            loss = summed * world / target_tokens
            if world > 1 and part < accumulation - 1:
                with train_model.no_sync():
                    loss.backward()
            else:
                loss.backward()
            loss_sum += summed.detach()
        tokens_seen += real_tokens
        if world > 1:
            dist.all_reduce(loss_sum)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        step += 1
        mean_loss = float(loss_sum) / target_tokens
        if not math.isfinite(mean_loss):
            raise JobError(f"step {step}: loss is {mean_loss} (diverged; lower the learning rate)")
        history.append([step, mean_loss])
        if rank == 0:
            elapsed = time.time() - started
            emit("step", step=step, steps=total_steps, loss=mean_loss, lr=rate, gradNorm=float(norm),
                 tokensPerSecond=tokens_seen / elapsed if elapsed > 0 else 0.0)
        if rank == 0 and (step % checkpoint_every == 0 or step == total_steps):
            atomic_save({
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "history": history,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None},
            }, checkpoint_path)
            emit("checkpoint", step=step)
        if stop_after is not None and step >= stop_after:
            break

    if rank == 0 and step >= total_steps:
        save_hf_checkpoint(model, out, bos_token_id=job.get("bosId"), eos_token_id=job.get("eosId"))
        emit("done", step=step, loss=history[-1][1] if history else None, seconds=time.time() - started, history=history)
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
    except (JobError, ShardError, SafetensorsError, ValueError) as error:
        emit("error", message=str(error))
        return 2
    except (OSError, json.JSONDecodeError) as error:
        emit("error", message=f"{getattr(error, 'filename', None) or args.job}: {error}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
