"""Data parallelism for the package's own training loops (fine-tuned RM, DPO), unchanged code.

Run a script that trains a `FinetunedRewardModel` or a `DPOPolicy` under `accelerate launch` (or
`torchrun`) and every process takes a share of each micro-batch:

    accelerate launch --multi_gpu --num_processes 4 my_script.py          # 4 GPUs, one node
    accelerate launch --multi_gpu --num_processes 2 my_script.py          # no GPU: 2 CPU processes, gloo

The rule is *the same optimisation on more devices*: the micro-batch order comes from the seed as
in one process, rank k takes pairs k, k+W, k+2W, … of each micro-batch, every rank scales its loss
by its share of the configured effective batch (batch_size × grad_accum pairs), and the gradients
are summed across ranks (one all-reduce per optimizer step) before the step. So the effective
batch, the number of steps and the result do not depend on the number of processes; with dropout
off, W processes give the scores of one process up to float summation order
(`tests/test_distributed.py`: 2 CPU processes vs 1, max difference ≤ 1e-4). Dropout masks differ
per rank (seed + rank), as in any data-parallel run.

The process group is created on first use from the launcher's environment (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT): NCCL when the device is CUDA, gloo otherwise; `device="cuda"` becomes
`cuda:<LOCAL_RANK>`. Rank 0 alone shows progress bars and writes saved models. Scoring is not
sharded: each process scores what it is asked to. Nothing here runs in a single process.
"""
from __future__ import annotations

import os

import torch


def _dist():
    import torch.distributed as dist
    return dist


def launched() -> bool:
    """True when started by `accelerate launch` / `torchrun` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def ensure_group(device: str = "cpu") -> None:
    """Create the process group (once) when launched with several processes."""
    dist = _dist()
    if launched() and not dist.is_initialized():
        dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")


def rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    dist = _dist()
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def local_device(device: str) -> str:
    """"cuda" -> "cuda:<LOCAL_RANK>" in a multi-process run; anything else unchanged."""
    if launched() and str(device) == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def shard(idx, r: int | None = None, w: int | None = None):
    """This rank's share of a micro-batch: items r, r+W, r+2W, … (all of it in one process)."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    return idx[r::w] if w > 1 else idx


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Every rank starts from rank 0's weights (as DistributedDataParallel does)."""
    if world_size() == 1:
        return
    dist = _dist()
    with torch.no_grad():
        for p in model.parameters():
            dist.broadcast(p.data, src=0)


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum the gradients of `params` over ranks (one flat all-reduce); a missing gradient counts as 0."""
    if world_size() == 1:
        return
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    _dist().all_reduce(flat)
    off = 0
    for g in grads:
        g.copy_(flat[off:off + g.numel()].view_as(g))
        off += g.numel()


def all_reduce_sum(values: list[float], device: str = "cpu") -> list[float]:
    """Sum a few numbers (loss sums, pair counts) over ranks."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    _dist().all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if world_size() > 1:
        _dist().barrier()
