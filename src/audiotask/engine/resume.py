"""Resumption: where each dataloader worker's chunk stream stands mid-epoch (which run a
checkpoint belongs to is ``core/resumed_run.py``'s).

Lightning saves the state of a training dataloader that has ``state_dict()`` /
``load_state_dict()`` in its checkpoints, and hands it back before iterating again when
``Trainer.fit(..., ckpt_path=...)`` resumes. A training stream is the concatenation of
per-worker streams: the DataLoader takes batch ``k`` of an epoch from worker
``k % num_workers``, each worker drawing from its own seeded sampler. Knowing how many
batches of the epoch were trained on is therefore enough to put every worker's sampler
back exactly where it stood. With several ranks, each draws its own streams (keyed by rank)
and trains as many batches: the count rank 0 saves is every rank's.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterator, Optional

from torch.utils.data import DataLoader


def batches_from_worker(batches: int, worker: int, num_workers: int) -> int:
    """How many of the first ``batches`` batches of an epoch came from ``worker``.

    ``num_workers`` 0 (loading in the main process) counts as one worker.
    """
    workers = max(int(num_workers), 1)
    return max(0, (int(batches) - int(worker) + workers - 1) // workers)


class ResumableDataLoader(DataLoader):
    """Training DataLoader whose position in the epoch is saved in Lightning checkpoints.

    ``state_dict()`` gives ``{"epoch", "batches", "num_workers", "batch_size"}``: the epoch
    and how many of its batches were trained on. ``load_state_dict`` hands it to the task
    (``task.resume_state``), whose training stream then starts where it stopped.
    """

    def __init__(self, *args, task, **kwargs):
        super().__init__(*args, **kwargs)
        self.task = task
        self._yielded = 0

    def __iter__(self) -> Iterator:
        self._yielded = 0
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            # before the workers begin the epoch's streams: persistent ones, started once, read
            # it from the dataset's shared memory when they do (see ``TrainBatches``)
            set_epoch(self.current_epoch())
        for batch in super().__iter__():
            # every stream has read the resume state by now (workers got it when they were
            # started, forked or pickled, the main process's stream on its first batch): it
            # applies once (a persistent worker keeps its copy, but the state names its epoch,
            # and the worker's later streams are of later epochs)
            self.task.resume_state = None
            self._yielded += 1
            yield batch

    def consumed_batches(self) -> int:
        """Batches of the current epoch trained on: Lightning's count when a Trainer runs (it
        fetches one batch ahead, so the batches handed out are one more), else those handed out."""
        trainer = getattr(self.task.model, "_trainer", None)
        if trainer is not None:
            return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        return self._yielded

    def current_epoch(self) -> int:
        """The trainer's epoch (0 without a model)."""
        model = self.task.model
        return 0 if model is None else int(model.current_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.current_epoch(),
            "batches": self.consumed_batches(),
            "num_workers": int(self.num_workers),
            # the task's: the loader hands over whole batches (its own batch_size is None)
            "batch_size": int(self.task.batch_size),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task.resume_state = dict(state)


def resumed_stream(state: Optional[dict], *, epoch: int, worker: int, num_workers: int, batch_size: int) -> tuple[int, int]:
    """``(stream, position)``: which worker's chunk stream ``worker`` continues, and from where.

    Without a state for this epoch, a worker draws its own stream from the start:
    ``(worker, 0)``. Resuming after ``batches`` batches, the DataLoader again takes the
    first batch from worker 0, whereas the uninterrupted run would have taken it from worker
    ``batches % num_workers``: worker ``w`` continues the stream of worker
    ``(w + batches) % num_workers``, from the batches that stream had already given.
    A state saved with another number of workers or batch size cannot be honoured (the
    streams differ): a warning says so, and the epoch's streams start afresh.
    """
    if state is None or int(state["epoch"]) != int(epoch):
        return worker, 0
    if max(int(state["num_workers"]), 1) != max(int(num_workers), 1) or int(state["batch_size"]) != int(batch_size):
        warnings.warn(
            f"The checkpoint's training stream was made by {state['num_workers']} dataloader worker(s) with "
            f"batches of {state['batch_size']}, this run has {num_workers} and {batch_size}: the rest of "
            f"epoch {epoch} is drawn afresh, not the chunks the interrupted run would have seen."
        )
        return worker, 0
    stream = (int(worker) + int(state["batches"])) % max(int(num_workers), 1)
    return stream, batches_from_worker(state["batches"], stream, num_workers) * int(batch_size)
