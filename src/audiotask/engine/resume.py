"""Resumption: which run a checkpoint belongs to, and where each dataloader worker's chunk
stream stands mid-epoch.

A checkpoint continues its own run only: :func:`check_resumed_manifest` (called by
``Model.on_load_checkpoint``, before any weight is loaded) refuses a run of another task,
other classes, chunk duration or model arguments, in one line naming what differs.

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
from typing import Any, Iterator, Mapping, Optional

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


# ---- a checkpoint belongs to its run -------------------------------------------------------
#: the fields of a model manifest (``Model.manifest``) that a resumed run must share with the
#: checkpoint's: the versions may differ (a run resumed after an upgrade), the format too
RESUMED_FIELDS = ("architecture", "arguments", "specifications")


class ResumeMismatch(ValueError):
    """A checkpoint resumed by a run of another task, other classes, chunks or model options.

    ``differences`` says what differs, in one line, and ``what``: "task", "specifications"
    (what the run trains for: another run, or fine-tuning), "architecture" or "arguments"
    (the model: a resume with that run's model options fits). ``architecture`` is the
    checkpoint's, ``arguments`` its values of the arguments that differ (those it has).
    ``checkpoint`` (set by whoever knows the file, see ``training.fit``) names the file and
    ``hint`` (set by the command line) says what to do.
    """

    def __init__(self, differences: str, *, what: str, architecture: Optional[str] = None,
                 arguments: Optional[dict] = None):
        super().__init__(differences)
        self.differences = differences
        self.what = what
        self.architecture = architecture
        self.arguments = dict(arguments or {})
        self.checkpoint = None
        self.hint = ""

    def __str__(self) -> str:
        line = f"{self.checkpoint if self.checkpoint is not None else 'the checkpoint'} {self.differences}"
        return f"{line}: {self.hint}" if self.hint else line


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back: tuples and lists compare alike, enums by their value."""
    import json

    return json.loads(json.dumps(value, default=lambda item: getattr(item, "value", str(item))))


def _shown(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else repr(value)


def _task(specifications: dict) -> Optional[str]:
    return (specifications.get("extra") or {}).get("task")


def specification_differences(saved: dict, current: dict) -> list[str]:
    """``"duration 2.0 there, 3.0 here"`` for each field of the specifications (``to_dict``) that
    differs, the task's name aside (:func:`check_resumed_manifest` says it first)."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        theirs, ours = saved.get(key), current.get(key)
        if key == "extra":
            theirs = {k: v for k, v in (theirs or {}).items() if k != "task"}
            ours = {k: v for k, v in (ours or {}).items() if k != "task"}
            if theirs == ours:
                continue
        if key == "min_duration" and theirs == saved.get("duration") and ours == current.get("duration"):
            continue  # fixed-length chunks on both sides: the duration's difference says it
        if theirs != ours:
            differences.append(f"{key} {_shown(theirs)} there, {_shown(ours)} here")
    return differences


def check_resumed_manifest(saved: Optional[Mapping[str, Any]], current: Mapping[str, Any]) -> None:
    """Raise :class:`ResumeMismatch` unless the run resuming a checkpoint is the checkpoint's run.

    ``saved`` is the manifest a checkpoint holds (``checkpoint["audiotask"]``, None for a
    checkpoint that Lightning alone wrote: nothing to compare), ``current`` the resumed model's
    (``Model.manifest()``, its task's specifications set). The run is the checkpoint's when
    its task, specifications (classes, chunk duration, resolution, warm-up...), architecture
    and model arguments are all the checkpoint's: resuming with any of them changed would
    go on training the weights for something else, silently (a voice activity detector's
    weights saved as an overlap detector, say).
    """
    if not isinstance(saved, Mapping):
        return
    saved, current = _plain({key: saved.get(key) for key in RESUMED_FIELDS}), _plain(
        {key: current.get(key) for key in RESUMED_FIELDS})
    theirs, ours = saved["specifications"] or {}, current["specifications"] or {}
    if _task(theirs) != _task(ours):
        raise ResumeMismatch(f"was trained for task {_task(theirs)!r} (classes {_shown(theirs.get('classes'))}); "
                             f"this run is for {_task(ours)!r} (classes {_shown(ours.get('classes'))})", what="task")
    differences = specification_differences(theirs, ours)
    if differences:
        raise ResumeMismatch(f"was trained with other specifications than this run's: {'; '.join(differences)}",
                             what="specifications")
    if saved["architecture"] != current["architecture"]:
        raise ResumeMismatch(f"holds a {saved['architecture']} model, not a {current['architecture']}",
                             what="architecture", architecture=saved["architecture"])
    arguments_theirs, arguments_ours = saved["arguments"] or {}, current["arguments"] or {}
    differ = [key for key in sorted(set(arguments_theirs) | set(arguments_ours))
              if arguments_theirs.get(key) != arguments_ours.get(key)]
    if differ:
        shown = ", ".join(f"{key}={_shown(arguments_theirs.get(key))} there, {_shown(arguments_ours.get(key))} here"
                          for key in differ)
        raise ResumeMismatch(f"was saved from a {current['architecture']} with other arguments ({shown})",
                             what="arguments", architecture=saved["architecture"],
                             arguments={key: arguments_theirs[key] for key in differ if key in arguments_theirs})
