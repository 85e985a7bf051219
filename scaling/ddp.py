"""Multi-process data parallel for one run: the rank layout from the environment, and the few collectives.

A run is multi-process when WORLD_SIZE > 1 in its environment: set by submitit's
`TorchDistributedEnvironment().export()` inside a Slurm job with several tasks (scaling.launch.TrainJob),
or by hand (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; tests/test_ddp.py). Every rank calls
`scaling.train.train_run`; rank r trains on rows r::world of each global batch, gradients are averaged by
DDP, and rank 0 alone writes status, metrics, checkpoints and result.json. A WSD trunk
(`scaling.wsd.train_trunk`) holds one process group for all its train_run calls (trunk segments and
cooldown branches); train_run then joins that group instead of making its own. Nothing here runs for a
single-process run.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in its run's process group."""

    rank: int = 0
    local_rank: int = 0
    """Rank among the processes of this node: picks the GPU."""
    world: int = 1
    """Number of processes training the run (1: single-process, no process group)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes to the run folder."""
        return self.rank == 0


SINGLE = DistEnv()


def env_from_os() -> DistEnv:
    """The layout torch.distributed's env:// method reads; SINGLE when WORLD_SIZE is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return DistEnv(rank=int(os.environ["RANK"]), local_rank=int(os.environ.get("LOCAL_RANK", "0")), world=world)


def device_for(env: DistEnv, device: str) -> str:
    """This rank's device: "auto" is CUDA if there is one, else CPU; on CUDA the GPU of its local rank."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        # One GPU per process. Each process sees all the node's GPUs (index = local rank) or, when
        # CUDA_VISIBLE_DEVICES was narrowed per task (submitit's export() does), just its own (index 0).
        index = env.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        device = f"cuda:{index}"
    return device


def setup(env: DistEnv, device: str) -> str:
    """Pick this rank's device and join the process group (nccl on CUDA, gloo on CPU); returns the device."""
    device = device_for(env, device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", init_method="env://",
                            rank=env.rank, world_size=env.world)
    return device


@contextmanager
def process_group(env: DistEnv, device: str) -> Iterator[str]:
    """This rank's device, inside the run's process group: the one a caller already holds (a WSD trunk
    trains several runs in one), else a group made here and left on exit, together on a normal exit."""
    own = not in_group()
    device = setup(env, device) if own else device_for(env, device)
    finished = False  # every rank got through the body without an error: leave the group together
    try:
        yield device
        finished = True
    finally:
        if own:
            teardown(synchronize=finished)


def in_group() -> bool:
    """Whether this process has joined a process group already (a caller that owns it tears it down)."""
    return dist.is_available() and dist.is_initialized()


def teardown(synchronize: bool) -> None:
    """Leave the process group. `synchronize` (a normal exit): wait for every rank first. Destroying the
    group while a peer still finishes the last collective, or while the DDP wrapper still references it,
    made ~1 in 4 two-rank gloo runs here abort at interpreter exit (SIGABRT, "terminate called without an
    active exception") after writing their result; with the barrier and a collection first, 0 in 65.
    On an error path ranks may sit in different collectives, so no barrier there."""
    if dist.is_initialized():
        if synchronize:
            dist.barrier()
        gc.collect()  # the DDP wrapper (its reducer holds the group) may sit in a reference cycle
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """DDP around `model` (which keeps its own state_dict keys, so checkpoints match single-process ones).

    Construction broadcasts rank 0's parameters; every rank has loaded the same weights anyway.
    """
    device_ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=device_ids)


def shard(x: torch.Tensor, y: torch.Tensor, env: DistEnv) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows r::world of a global batch (B, T) -> (B / world, T)."""
    return x[env.rank::env.world].contiguous(), y[env.rank::env.world].contiguous()


def mean_over_ranks(loss: torch.Tensor, env: DistEnv) -> float:
    """The global batch's mean loss from each rank's mean over its equal share of the rows."""
    total = loss.detach().float().clone()
    dist.all_reduce(total)  # SUM: gloo has no AVG
    return total.item() / env.world


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (any picklable value)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    dist.barrier()
