"""Training a model on its task with Lightning, the way ``audiotask train`` and the demo do.

One function builds the trainer (progress bar, checkpoints, CSV metrics log under one
output folder), one fits and saves the best model with ``save_pretrained``. A run keeps what
it has: ``checkpoints/last.ckpt`` is the latest state (every ``checkpoint_every`` steps and
at the end, written atomically), a run stopped by an exception leaves
``checkpoints/interrupted.ckpt``, and a resumed run appends to ``metrics.csv``.
"""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint, Timer
from lightning.pytorch.loggers import CSVLogger

from audiotask.core.model import Model
from audiotask.core.resumed_run import ResumeMismatch
from audiotask.io import naming_the_file, replaced_atomically

#: name of the checkpoint written when training stops on an exception (Ctrl-C included)
INTERRUPTED = "interrupted"
#: name of the checkpoint that always holds the latest state
LAST = "last"
#: default of ``checkpoint_every``: a CRNN step costs about 0.1 s on two CPU cores (the demo's
#: 1,240 steps take under three minutes), a larger model's on a GPU about as much, so a kill
#: loses some ten seconds to a minute of training, for a save of milliseconds
CHECKPOINT_EVERY = 100


@dataclass
class TrainingResult:
    """Where a training run wrote its outputs, and how far it went."""

    model: Path  #: ``save_pretrained`` folder of the kept model
    checkpoints: Path  #: Lightning checkpoints
    metrics: Path  #: CSV log of training / validation metrics
    checkpoint: Optional[Path]  #: checkpoint the saved model comes from
    monitored: Optional[str] = None  #: metric that chose it (None: the last one)
    best_score: Optional[float] = None
    steps: int = 0  #: optimiser steps done, those of the run it resumed included
    epochs: int = 0  #: epochs begun (Lightning's ``current_epoch`` after training)
    skipped: int = 0  #: batches of this run skipped for a non-finite loss
    #: why training stopped before its step / epoch budget (a time cap), None if it did not
    cut_short: Optional[str] = None
    #: optimiser steps of this run per second of training (validation left out; see
    #: :class:`TrainingSpeed`), None if it made no step
    steps_per_second: Optional[float] = None
    #: share (0 to 1) of that training time spent waiting for training batches
    data_wait_share: Optional[float] = None
    #: share (0 to 1) of training plus validation time spent validating (during training)
    validation_share: Optional[float] = None

    def speed(self) -> Optional[str]:
        """``"7.9 steps/s, 12.0 % of the time waiting for data; validation 9.5 % of the run"``,
        or None without a step."""
        if self.steps_per_second is None or self.data_wait_share is None:
            return None
        line = f"{self.steps_per_second:.3g} steps/s, {100 * self.data_wait_share:.1f} % of the time waiting for data"
        if self.validation_share:
            line += f"; validation {100 * self.validation_share:.1f} % of the run"
        return line

    def summary(self) -> str:
        """One line: the steps and epochs trained, skipped batches, and what cut the run short."""
        line = f"{self.steps} steps in {self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        if self.skipped:
            line += f", {self.skipped} batch{'es' if self.skipped != 1 else ''} skipped for a non-finite loss"
        if self.cut_short:
            line += f"; CUT SHORT: {self.cut_short}"
        return line


def save_checkpoint_atomically(trainer: pl.Trainer, path: str | Path) -> None:
    """``trainer.save_checkpoint(path)`` through a temporary file renamed over ``path``.

    A kill mid-write then leaves the previous checkpoint whole. Lightning's own "atomic"
    save is not enough: it stages the file in the system's temporary folder and moves it,
    which across file systems copies it in place, truncated by a kill.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        trainer.save_checkpoint(partial, weights_only=False)  # collective: every rank calls it, rank zero writes
        if trainer.is_global_zero:
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())  # the rename must not reach the disk before the data
            os.replace(partial, path)
    except (OSError, RuntimeError) as error:  # a full disk, a read-only folder: name the checkpoint
        if trainer.is_global_zero:
            partial.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename in (None, str(partial)):
            raise naming_the_file(path, error) from error
        if isinstance(error, RuntimeError) and "PytorchStreamWriter" in str(error):  # torch.save's writer
            raise OSError(f"{path}: cannot write it ({str(error).splitlines()[0]})") from error
        raise


class LatestCheckpoint(Checkpoint):
    """Keeps ``path`` at the latest state: every ``every_n_steps`` optimiser steps and at the
    last step, written atomically, so that a kill loses at most ``every_n_steps`` steps.

    Lightning's ``ModelCheckpoint(save_last=True)`` rewrites ``last.ckpt`` only along with
    another checkpoint (with a monitored metric: after validation), so a run ending between
    validations left a ``last.ckpt`` tens of steps old, to which ``--resume`` went back. The
    last step is saved when it ends, not when training ends: by then Lightning counts a
    stopped epoch as complete, and a resumed run would skip the rest of it. (A ``Checkpoint``
    subclass: Lightning calls it after the other callbacks, a time cap's included, so it sees
    their ``should_stop``.)
    """

    def __init__(self, path: str | Path, every_n_steps: Optional[int] = CHECKPOINT_EVERY):
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"checkpoint every {every_n_steps} steps: give a positive number (or None).")
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved_step: Optional[int] = None

    def save(self, trainer: pl.Trainer) -> None:
        if self._saved_step == trainer.global_step:  # saved at this step's end already
            return
        save_checkpoint_atomically(trainer, self.path)
        self._saved_step = trainer.global_step

    @staticmethod
    def last_step(trainer: pl.Trainer) -> bool:
        """Whether the step just done is the last one of training."""
        if trainer.should_stop or 0 <= trainer.max_steps <= trainer.global_step:
            return True
        last_epoch = trainer.max_epochs is not None and 0 <= trainer.max_epochs <= trainer.current_epoch + 1
        return last_epoch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        if (self.every_n_steps and trainer.global_step % self.every_n_steps == 0) or self.last_step(trainer):
            self.save(trainer)

    def resave(self, trainer: pl.Trainer) -> None:
        # after a save at a step's end, validation may have replaced the best checkpoint and
        # deleted the one the save names as best: save again, after ModelCheckpoint (a
        # Checkpoint before this one, it is called first), which keeps its best at either hook
        if self._saved_step == trainer.global_step and not trainer.sanity_checking:
            self._saved_step = None
            self.save(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.resave(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.resave(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer)  # training stopped otherwise (early stopping after validation): its end state


class InterruptedCheckpoint(Callback):
    """Saves a checkpoint at ``path`` when training stops on an exception (Ctrl-C included).

    Only once training has started: an error while preparing data must surface as itself,
    and a run stopped before it restored the checkpoint it resumes must not overwrite that
    checkpoint with an empty state. A run that ends normally removes the file, which would
    only resume an older state. (Lightning's own ``OnExceptionCheckpoint`` also turns every
    ``fit(ckpt_path=None)`` into ``ckpt_path="last"``, silently resuming from whatever an
    output folder holds: not here.)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.training = False
        self._saving = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.training = True

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if not self._saving:
            return
        loops = checkpoint["loops"]["fit_loop"]
        if trainer.validating and not trainer.sanity_checking:
            validate_again_on_resume(loops["epoch_loop.val_loop.batch_progress"])
            return
        # Lightning restores the logging step one past the saved one, as it expects a save
        # after a step's update; an exception before the update (in training_step, say)
        # would shift every later row of metrics.csv by one step
        loop = loops["epoch_loop.state_dict"]
        if loop.get("_batches_that_stepped") == trainer.global_step:
            loop["_batches_that_stepped"] -= 1

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.training = False
        if trainer.is_global_zero:
            self.path.unlink(missing_ok=True)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not self.training:
            return
        self.training = False
        if trainer.world_size > 1 and not isinstance(exception, KeyboardInterrupt):
            # saving is collective: ranks that did not fail would never join it (Ctrl-C reaches all)
            return
        self._saving = True
        try:
            with worker_deaths_unnoticed():
                save_checkpoint_atomically(trainer, self.path)
        except Exception as error:  # the exception that stopped training is the one to report
            warnings.warn(f"could not save {self.path} after {type(exception).__name__}: {error}")
        finally:
            self._saving = False


@contextmanager
def worker_deaths_unnoticed() -> Iterator[None]:
    """While the block runs, a dataloader worker that dies raises nothing here.

    torch's SIGCHLD handler raises "DataLoader worker is killed" wherever the main process
    is when a worker dies. Training already stopped, the workers of a job that a scheduler
    signalled die one after another: the first death is the exception being handled, and a
    second one must not cut the saving of ``interrupted.ckpt`` short.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # Python sets handlers in the main thread only (and torch's is there)
        return
    handler = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, handler if handler is not None else signal.SIG_DFL)


def validate_again_on_resume(progress: dict) -> None:
    """Make a checkpoint saved during a validation resume by running that validation again,
    from its first batch.

    Lightning would otherwise skip it (a checkpoint at a validation point is taken to follow
    it) or, mid-batch, go on from the next batch with the scores of the batches before it
    lost, and keep another best checkpoint than the uninterrupted run. Its counters then read
    "interrupted in the first batch" (the state in which it validates from the start).
    """
    done_before = progress["total"]["completed"] - progress["current"]["completed"]
    progress["total"].update(ready=done_before + 1, started=done_before + 1, processed=done_before, completed=done_before)
    progress["current"].update(ready=1, started=1, processed=0, completed=0)
    progress["is_last_batch"] = False


class SkippedBatches(Callback):
    """Counts the training batches skipped for a non-finite loss (``Task.training_step``
    returned None: Lightning hands an empty output to this hook)."""

    def __init__(self):
        self.count = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        if not outputs:
            self.count += 1


class TrainingSpeed(Checkpoint):
    """Steps per second of training, and the share of that time spent waiting for data.

    Training time runs from the start of training to the end of its last step, validation
    left out. Waiting is what lies between the end of a step (or the start of training)
    and the start of the next one: fetching the batch, starting dataloader workers, the
    bookkeeping between epochs. (A ``Checkpoint`` subclass, as Lightning calls those after
    the other callbacks: a checkpoint saved when a step or a validation ends, by the
    checkpoint callbacks given before this one, falls in the step or the validation, not
    in the waiting.)
    """

    def __init__(self):
        self.steps = 0
        self.stepping = self.waiting = self.validating = 0.0  # seconds
        self._first_step = 0
        self._mark: Optional[float] = None  # end of the last step, or of what is left out
        self._validation_start: Optional[float] = None  # set while a validation during training runs

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stepping = self.waiting = self.validating = 0.0
        self._first_step = trainer.global_step  # a resumed run counts its own steps
        self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._mark is not None:
            self.waiting += now - self._mark
        self._mark = now

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._mark is not None:
            self.stepping += now - self._mark
        self._mark = now
        self.steps = trainer.global_step - self._first_step

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._mark is not None:  # during training (a sanity check comes before its start)
            now = time.perf_counter()
            self.waiting += now - self._mark
            self._mark = None
            self._validation_start = now

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._validation_start is not None:  # the time since it started is left out, and counted apart
            self._mark = time.perf_counter()
            self.validating += self._mark - self._validation_start
            self._validation_start = None

    @property
    def validation_share(self) -> Optional[float]:
        """Share (0 to 1) of training plus validation time spent validating."""
        seconds = self.stepping + self.waiting + self.validating
        return self.validating / seconds if self.steps and seconds > 0 else None

    @property
    def steps_per_second(self) -> Optional[float]:
        seconds = self.stepping + self.waiting
        return self.steps / seconds if self.steps and seconds > 0 else None

    @property
    def data_wait_share(self) -> Optional[float]:
        seconds = self.stepping + self.waiting
        return self.waiting / seconds if self.steps and seconds > 0 else None


class SigtermSeenFirst(Callback):
    """Calls ``seen(signum)`` on SIGTERM before any handler Lightning set for it.

    Lightning's SIGTERM handler logs first and calls the handler it found (the command
    line's) last. When a scheduler signals every process of the job, the dataloader workers
    die of it at the same moment, and torch's SIGCHLD handler raises "worker killed" in the
    middle of Lightning's logging: the handlers after it never run, and the run would read
    as failed rather than stopped. Set once Lightning has registered its handlers (when
    training starts); Lightning puts the earlier ones back when it tears down.
    """

    def __init__(self, seen: Callable[[int], None]):
        self.seen = seen

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python sets handlers in the main thread only
        after = signal.getsignal(signal.SIGTERM)
        if not callable(after):
            return  # ignored or default: nothing runs before a handler of ours would

        def seen_first(signum, frame):
            self.seen(signum)
            after(signum, frame)

        signal.signal(signal.SIGTERM, seen_first)


def set_learning_rate(model: Model, learning_rate: float, *, schedule: Optional[str] = None,
                      warmup_steps: Optional[int] = None) -> None:
    """Train ``model`` with Adam at ``learning_rate`` (and, when given, the learning-rate
    ``schedule`` and its ``warmup_steps``; see ``core.optimization``)."""
    from audiotask.core.optimization import SCHEDULES

    if schedule is not None and schedule not in SCHEDULES:
        raise ValueError(f"learning-rate schedule must be one of {SCHEDULES}, got {schedule!r}.")
    # instance attributes shadow the class's defaults: no subclass needed for a few numbers
    model.learning_rate = float(learning_rate)
    if schedule is not None:
        model.lr_schedule = schedule
    if warmup_steps is not None:
        model.warmup_steps = int(warmup_steps)


#: Lightning's lines that are not the user's business: an advertisement, which accelerators
#: exist (the model's device is what matters, and training says so if asked), and how it takes
#: Ctrl-C and SIGTERM (the command line says in one line what it kept and how to resume)
LIGHTNING_NOISE = ("💡", "GPU available", "TPU available", "HPU available", "\nDetected KeyboardInterrupt",
                   "Received SIGTERM", "Bypassing SIGTERM")
#: the loggers those lines come from
LIGHTNING_NOISY_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.trainer.connectors.signal_connector")


def quiet_lightning() -> None:
    """Keep Lightning's advertisement, accelerator inventory and signal notices out of
    training's output (once per process; other messages, warnings and errors pass)."""
    import logging

    for name in LIGHTNING_NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(getattr(f, "audiotask_noise", False) for f in logger.filters):
            logger.addFilter(_not_noise)


def _not_noise(record) -> bool:
    """Whether a log record of Lightning is not :data:`LIGHTNING_NOISE` (a rank prefix aside)."""
    message = str(record.msg)
    if message.startswith("[rank: "):
        message = message.partition("] ")[2]
    return not message.startswith(LIGHTNING_NOISE)


_not_noise.audiotask_noise = True


def make_trainer(
    output: str | Path,
    *,
    max_epochs: Optional[int] = None,
    max_steps: Optional[int] = None,
    validation: bool = True,
    monitor: tuple[str, str] = ("val/loss", "min"),
    check_val_every_n_epoch: int = 1,
    checkpoint_every: Optional[int] = CHECKPOINT_EVERY,
    progress: bool = True,
    **trainer_options,
) -> tuple[pl.Trainer, ModelCheckpoint]:
    """A Trainer writing ``output/checkpoints/*.ckpt`` and ``output/metrics.csv``.

    Parameters
    ----------
    output : str or Path
        Output folder.
    max_epochs, max_steps : int, optional
        Stop after this many epochs / optimiser steps (whichever comes first); one of them
        is required.
    validation : bool
        Whether the task has a validation subset: the checkpoint with the best ``monitor``
        is then kept, otherwise the last one.
    monitor : (str, "min" or "max")
        The logged validation metric that picks the best checkpoint (a task's ``monitor``).
    check_val_every_n_epoch : int
        Validate every that many epochs.
    checkpoint_every : int, optional
        Write ``checkpoints/last.ckpt`` every that many optimiser steps (None: only at the
        end); it is also written when training ends.
    progress : bool
        Show a tqdm progress bar.
    **trainer_options
        Passed to ``lightning.pytorch.Trainer`` (e.g. ``gradient_clip_val``; a ``max_time``
        cap is reported by :func:`fit` when it cuts the run short); ``callbacks`` are added
        to the trainer's own.
    """
    if max_epochs is None and max_steps is None:
        raise ValueError("make_trainer: give max_epochs or max_steps.")
    quiet_lightning()
    output = Path(output)
    # a run stopped by Ctrl-C or an error leaves checkpoints/interrupted.ckpt, from which
    # --resume continues mid-epoch (the epoch-end checkpoints alone would lose the epoch)
    interrupted = InterruptedCheckpoint(output / "checkpoints" / f"{INTERRUPTED}.ckpt")
    latest = LatestCheckpoint(output / "checkpoints" / f"{LAST}.ckpt", every_n_steps=checkpoint_every)
    checkpoint = ModelCheckpoint(
        dirpath=output / "checkpoints",
        # metric names contain "/": keep them out of file names, which would become folders
        filename="epoch={epoch}-step={step}",
        auto_insert_metric_name=False,
        monitor=monitor[0] if validation else None,
        mode=monitor[1],
        save_last=False,  # last.ckpt is LatestCheckpoint's
    )
    options = dict(
        accelerator="auto",
        devices=1,
        max_epochs=-1 if max_epochs is None else max_epochs,
        max_steps=-1 if max_steps is None else max_steps,
        logger=CSVLogger(output, name="", version=""),
        callbacks=[checkpoint, latest, interrupted, SkippedBatches(), TrainingSpeed(), *trainer_options.pop("callbacks", [])],
        enable_progress_bar=progress,
        enable_model_summary=progress,
        log_every_n_steps=10,
        check_val_every_n_epoch=check_val_every_n_epoch,
        num_sanity_val_steps=0,
    )
    options.update(trainer_options)
    return pl.Trainer(**options), checkpoint


def checkpoint_step(path: str | Path) -> int:
    """The optimiser step at which the Lightning checkpoint ``path`` was saved."""
    from audiotask.core.model import load_checkpoint

    # audiotask checkpoints hold plain values only (see Model.on_save_checkpoint); mmap
    # leaves the weights on disk; a file torch cannot read is a ValueError naming it
    checkpoint = load_checkpoint(path, mmap=True)
    if not isinstance(checkpoint, dict) or "global_step" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning checkpoint of a training run (no 'global_step')")
    return int(checkpoint["global_step"])


def metrics_before(path: Path, step: int) -> Optional[tuple[list[str], list[dict]]]:
    """Header and rows of the metrics log ``path`` logged before optimiser step ``step``
    (None if there is no log): what a run resumed at ``step`` keeps of it."""
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row.get("step") and int(row["step"]) < step]
        return list(reader.fieldnames or []), rows


def continue_metrics_log(logger: CSVLogger, header: list[str], rows: list[dict]) -> None:
    """Make ``logger`` append to a ``metrics.csv`` holding ``rows`` (under ``header``).

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it is created, then
    appends what it logs (rewriting the file when a new column appears): the kept rows are
    written back right after, from a file renamed into place.
    """
    path = Path(logger.log_dir) / "metrics.csv"
    with replaced_atomically(path) as partial:
        with open(partial, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        experiment = logger.experiment  # creating it deletes metrics.csv; the rename follows
    experiment.metrics_keys = list(header)


def cut_short(trainer: pl.Trainer) -> Optional[str]:
    """What a wall-clock cap (``max_time``) did if it stopped training before its step /
    epoch budget, else None."""
    timers = [callback for callback in trainer.callbacks if isinstance(callback, Timer)]
    remaining = timers[0].time_remaining() if timers else None
    if remaining is None or remaining > 0:
        return None
    steps_done = 0 <= trainer.max_steps <= trainer.global_step
    # current_epoch counts an epoch that max_time stopped midway as done
    epochs_done = (trainer.max_epochs is not None and 0 <= trainer.max_epochs <= trainer.current_epoch
                   and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
    if steps_done or epochs_done:
        return None
    budget = " / ".join(
        f"{value} {name}" for name, value in (("steps", trainer.max_steps), ("epochs", trainer.max_epochs))
        if value is not None and value >= 0
    )
    cap = timers[0].time_elapsed() + remaining
    return (f"the wall-clock cap (max_time {cap:.0f} s) stopped training at step {trainer.global_step}, "
            f"before its budget of {budget}")


def fit(model: Model, output: str | Path, *, ckpt_path: Optional[str | Path] = None, **trainer_options) -> TrainingResult:
    """Train ``model`` (its task attached) and save the kept model to ``output/model``.

    ``trainer_options`` are those of :func:`make_trainer`. The kept model is the checkpoint
    with the lowest validation loss when the task has a development subset, else the last.
    ``ckpt_path`` resumes an interrupted run from its Lightning checkpoint; the rows of
    ``output/metrics.csv`` logged before its step are kept, the resumed run's appended.
    A wall-clock cap (``max_time``) that stops training early is said in the result's
    ``cut_short`` and warned about.
    """
    if model.task is None:
        raise ValueError("fit: attach a task to the model first (model.task = task).")
    output = Path(output)
    validation = bool(model.task.has_validation)
    kept_metrics = None if ckpt_path is None else metrics_before(output / "metrics.csv", checkpoint_step(ckpt_path))
    monitor = model.task.monitor
    # as it was, to put back if the model refuses the checkpoint (another run's, see except below)
    log_before = (output / "metrics.csv").read_bytes() if kept_metrics is not None else None
    trainer, checkpoint = make_trainer(output, validation=validation, monitor=monitor, **trainer_options)
    with warnings.catch_warnings():
        # metrics.csv sits next to the other outputs: the folder is not empty by design, and
        # only an earlier metrics.csv is replaced
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        # Task.training_step's own warning names the step and the reason
        warnings.filterwarnings("ignore", message=r"`training_step` returned `None`")
        if kept_metrics is not None and isinstance(trainer.logger, CSVLogger):
            continue_metrics_log(trainer.logger, *kept_metrics)
        # Lightning (2.6) trains modules in the mode it finds them: a model scored in eval mode
        # before (an untrained baseline) would train with frozen batch statistics, no dropout
        model.train()
        try:
            trainer.fit(model, ckpt_path=None if ckpt_path is None else str(ckpt_path))
        except ResumeMismatch as error:  # raised before any weight was loaded: name the file
            error.checkpoint = ckpt_path
            if log_before is not None and trainer.is_global_zero:  # the refused run leaves the log as it was
                with replaced_atomically(output / "metrics.csv") as partial:
                    partial.write_bytes(log_before)
            raise
    latest = next(callback for callback in trainer.callbacks if isinstance(callback, LatestCheckpoint))
    if validation and checkpoint.best_model_path:
        # the best epoch's weights, read back from its checkpoint (no pickle, see Model)
        kept: Optional[Path] = Path(checkpoint.best_model_path)
        if trainer.is_global_zero:  # under DDP every rank gets here: one writes
            Model.from_pretrained(kept).save_pretrained(output / "model")
    else:  # no validation ran: the model as training left it
        kept = latest.path if latest.path.is_file() else None
        if trainer.is_global_zero:
            model.save_pretrained(output / "model")
    score = checkpoint.best_model_score
    speed = next(callback for callback in trainer.callbacks if isinstance(callback, TrainingSpeed))
    result = TrainingResult(
        model=output / "model",
        checkpoints=output / "checkpoints",
        metrics=output / "metrics.csv",
        checkpoint=kept,
        monitored=monitor[0] if validation and checkpoint.best_model_path else None,
        best_score=float(score) if validation and score is not None else None,
        steps=trainer.global_step,
        epochs=trainer.current_epoch,
        skipped=next(callback for callback in trainer.callbacks if isinstance(callback, SkippedBatches)).count,
        cut_short=cut_short(trainer),
        steps_per_second=speed.steps_per_second,
        data_wait_share=speed.data_wait_share,
        validation_share=speed.validation_share,
    )
    if result.cut_short:
        warnings.warn(f"training cut short: {result.cut_short}")
    return result
