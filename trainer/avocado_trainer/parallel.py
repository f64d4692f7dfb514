"""Data parallelism: DDP (a full copy per process) or FSDP (parameters, gradients and optimizer state sharded).

Ranks come from the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT), set by torchrun itself or by the
TypeScript launcher. Checkpoints always hold full, unsharded states, so a run may resume on another process count.
"""
import torch


class ParallelError(Exception):
    pass


def fsdp_module():
    try:
        from torch.distributed import fsdp
    except (ImportError, ValueError) as error:
        # Debian's torch 1.13 under Python 3.11 fails on import (a dataclass with a mutable default).
        raise ParallelError(f"parallel 'fsdp' needs a torch whose FSDP imports here (torch {torch.__version__}: "
                            f"{str(error).splitlines()[0]}); use 'ddp', or torch >= 2.1") from error
    return fsdp


def wrap(model, kind, device, world):
    if kind == "fsdp":
        fsdp = fsdp_module()
        return fsdp.FullyShardedDataParallel(model, device_id=device if device.type == "cuda" else None,
                                             use_orig_params=True)
    if world <= 1:
        return model
    # Buffers (RoPE tables, causal mask) are computed identically on every rank: no need to broadcast them.
    return torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False,
                                                     device_ids=[device.index] if device.type == "cuda" else None)


def full_states(train_model, model, optimizer, kind):
    """The full model and optimizer states (FSDP gathers them: every rank must call this)."""
    if kind != "fsdp":
        return model.state_dict(), optimizer.state_dict()
    fsdp = fsdp_module()
    FSDP = fsdp.FullyShardedDataParallel
    policy = fsdp.FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FSDP.state_dict_type(train_model, fsdp.StateDictType.FULL_STATE_DICT, policy):
        weights = train_model.state_dict()
    return weights, FSDP.full_optim_state_dict(train_model, optimizer)


def load_optimizer(train_model, optimizer, state, kind):
    if kind == "fsdp":
        FSDP = fsdp_module().FullyShardedDataParallel
        state = FSDP.shard_full_optim_state_dict(state, train_model)
    optimizer.load_state_dict(state)


def clip(train_model, model, limit):
    # FSDP's parameters are shards: only its own clip computes the global norm.
    if hasattr(train_model, "clip_grad_norm_"):
        return train_model.clip_grad_norm_(limit)
    return torch.nn.utils.clip_grad_norm_(model.parameters(), limit)
