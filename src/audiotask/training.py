"""Training a model on its task with Lightning, the way ``audiotask train`` and the demo do.

One function builds the trainer (progress bar, checkpoints, CSV metrics log under one
output folder), one fits and saves the best model with ``save_pretrained``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from audiotask.core.model import Model

#: name of the checkpoint written when training stops on an exception (Ctrl-C included)
INTERRUPTED = "interrupted"


@dataclass
class TrainingResult:
    """Where a training run wrote its outputs."""

    model: Path  #: ``save_pretrained`` folder of the kept model
    checkpoints: Path  #: Lightning checkpoints
    metrics: Path  #: CSV log of training / validation metrics
    checkpoint: Optional[Path]  #: checkpoint the saved model comes from
    monitored: Optional[str] = None  #: metric that chose it (None: the last one)
    best_score: Optional[float] = None


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

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.training = True

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
        try:
            trainer.save_checkpoint(self.path)
        except Exception as error:  # the exception that stopped training is the one to report
            warnings.warn(f"could not save {self.path} after {type(exception).__name__}: {error}")


def set_learning_rate(model: Model, learning_rate: float) -> None:
    """Train ``model`` with Adam at ``learning_rate`` instead of its default optimiser."""

    # an instance attribute shadows the class's hook: no subclass needed for one number
    def configure_optimizers():
        return torch.optim.Adam(model.parameters(), lr=learning_rate)

    model.configure_optimizers = configure_optimizers


def make_trainer(
    output: str | Path,
    *,
    max_epochs: Optional[int] = None,
    max_steps: Optional[int] = None,
    validation: bool = True,
    check_val_every_n_epoch: int = 1,
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
        Whether the task has a validation subset: the checkpoint with the lowest
        ``val/loss`` is then kept as best, otherwise the last one.
    check_val_every_n_epoch : int
        Validate every that many epochs.
    progress : bool
        Show a tqdm progress bar.
    **trainer_options
        Passed to ``lightning.pytorch.Trainer``; ``callbacks`` are added to the two above.
    """
    if max_epochs is None and max_steps is None:
        raise ValueError("make_trainer: give max_epochs or max_steps.")
    output = Path(output)
    # a run stopped by Ctrl-C or an error leaves checkpoints/interrupted.ckpt, from which
    # --resume continues mid-epoch (the epoch-end checkpoints alone would lose the epoch)
    interrupted = InterruptedCheckpoint(output / "checkpoints" / f"{INTERRUPTED}.ckpt")
    checkpoint = ModelCheckpoint(
        dirpath=output / "checkpoints",
        # metric names contain "/": keep them out of file names, which would become folders
        filename="epoch={epoch}-step={step}",
        auto_insert_metric_name=False,
        monitor="val/loss" if validation else None,
        mode="min",
        save_last=True,
    )
    options = dict(
        accelerator="auto",
        devices=1,
        max_epochs=-1 if max_epochs is None else max_epochs,
        max_steps=-1 if max_steps is None else max_steps,
        logger=CSVLogger(output, name="", version=""),
        callbacks=[checkpoint, interrupted, *trainer_options.pop("callbacks", [])],
        enable_progress_bar=progress,
        enable_model_summary=progress,
        log_every_n_steps=10,
        check_val_every_n_epoch=check_val_every_n_epoch,
        num_sanity_val_steps=0,
    )
    options.update(trainer_options)
    return pl.Trainer(**options), checkpoint


def fit(model: Model, output: str | Path, *, ckpt_path: Optional[str | Path] = None, **trainer_options) -> TrainingResult:
    """Train ``model`` (its task attached) and save the kept model to ``output/model``.

    ``trainer_options`` are those of :func:`make_trainer`. The kept model is the checkpoint
    with the lowest validation loss when the task has a development subset, else the last.
    ``ckpt_path`` resumes an interrupted run from its Lightning checkpoint.
    """
    if model.task is None:
        raise ValueError("fit: attach a task to the model first (model.task = task).")
    output = Path(output)
    validation = bool(model.task.has_validation)
    trainer, checkpoint = make_trainer(output, validation=validation, **trainer_options)
    with warnings.catch_warnings():
        # metrics.csv sits next to the other outputs: the folder is not empty by design, and
        # only an earlier metrics.csv is replaced
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        trainer.fit(model, ckpt_path=None if ckpt_path is None else str(ckpt_path))
    if validation and checkpoint.best_model_path:
        # the best epoch's weights, read back from its checkpoint (no pickle, see Model)
        kept: Optional[Path] = Path(checkpoint.best_model_path)
        Model.from_pretrained(kept).save_pretrained(output / "model")
    else:  # no validation ran: the model as training left it
        kept = Path(checkpoint.last_model_path) if checkpoint.last_model_path else None
        model.save_pretrained(output / "model")
    score = checkpoint.best_model_score
    return TrainingResult(
        model=output / "model",
        checkpoints=output / "checkpoints",
        metrics=output / "metrics.csv",
        checkpoint=kept,
        monitored="val/loss" if validation and checkpoint.best_model_path else None,
        best_score=float(score) if validation and score is not None else None,
    )
