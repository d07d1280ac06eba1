"""Random number generators that never hand two dataloader workers the same stream.

The common bug (identical augmentations or chunks in every worker, because each worker
inherits a copy of the parent's RNG state) is avoided by seeding every generator from the
tuple (global seed, distributed rank, dataloader worker, epoch).
"""

from __future__ import annotations

import os
import random

import numpy as np


def global_seed() -> int:
    """Seed set with ``lightning.seed_everything`` (0 when none was set)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


#: rank of the training process that started this dataloader worker, when the worker did
#: not inherit its process group (started by spawn or forkserver; see ``inherit_rank``)
_inherited_rank: int | None = None


def distributed_rank() -> int:
    """Global rank of this process, or of the training process whose dataloader worker this
    is (0 outside distributed training)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    if _inherited_rank is not None:
        return _inherited_rank
    return int(os.environ.get("RANK", os.environ.get("GLOBAL_RANK", 0)))


def inherit_rank(rank: int) -> None:
    """Make :func:`distributed_rank` answer ``rank`` in this process: called in a dataloader
    worker started by spawn or forkserver, which has no process group (a forked worker
    inherits its parent's), with the rank of the training process that started it."""
    global _inherited_rank
    _inherited_rank = int(rank)


def distributed_world_size() -> int:
    """Number of training processes (1 outside distributed training)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def worker_identity() -> tuple[int, int]:
    """``(worker_id, num_workers)`` of the current dataloader worker, ``(0, 1)`` in the main process."""
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    if info is None:
        return 0, 1
    return info.id, info.num_workers


def stream_key(epoch: int, rank: int | None = None, worker: int | None = None) -> tuple[int, int, int, int]:
    """``(seed, rank, worker, epoch)``: what makes one stream of random draws distinct."""
    rank = distributed_rank() if rank is None else rank
    worker = worker_identity()[0] if worker is None else worker
    return (global_seed(), rank, worker, int(epoch))


def create_rng_for_worker(epoch: int, *, rank: int | None = None, worker: int | None = None) -> random.Random:
    """A ``random.Random`` specific to this seed, distributed rank, dataloader worker and epoch.

    ``rank`` and ``worker`` default to the current process's; pass them to simulate others.
    """
    # Seeding with a string is deterministic across interpreters (it is hashed with SHA-512).
    return random.Random("audiotask:" + ":".join(map(str, stream_key(epoch, rank, worker))))


def create_numpy_rng_for_worker(epoch: int, *, rank: int | None = None, worker: int | None = None) -> np.random.Generator:
    """Same as :func:`create_rng_for_worker`, as a numpy ``Generator``."""
    return np.random.default_rng(np.random.SeedSequence(stream_key(epoch, rank, worker)))


def seed_training_step(step: int, batch: int = 0) -> None:
    """Seed torch's global generator (dropout, any augmentation drawing from it) from the run's
    seed, this process's rank, the optimiser step ``step`` and the epoch's batch ``batch`` (the
    batches whose gradients one step accumulates draw apart).

    Lightning's checkpoints do not hold the generators' states, so a run resumed from one
    would draw other dropout masks than the uninterrupted run: seeded at every step, the
    draws of a step depend on nothing but the step, and a resumed run is bit-identical.
    """
    import hashlib

    import torch

    key = f"audiotask:step:{global_seed()}:{distributed_rank()}:{int(step)}:{int(batch)}".encode()
    torch.manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)
