"""Hand-made protocols for exact tests, and what the command-line tests share."""

from pathlib import Path

import numpy as np
import soundfile
from lightning.pytorch.callbacks import Callback

from audiotask.protocols.dcase import write_dcase_tsv
from audiotask.testing.dummies import load_protocol, write_database_yml


def handmade_protocol(root: Path, events: dict, *, duration: float = 4.0, sample_rate: int = 16000, name: str = "Hand", seed: int = 0):
    """One protocol whose train and development subsets are the files of ``events``.

    ``events`` maps a uri to its ``(onset, offset, label)`` rows.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for uri, file_events in events.items():
        soundfile.write(root / f"{uri}.wav", (0.1 * rng.standard_normal(int(duration * sample_rate))).astype(np.float32), sample_rate, subtype="PCM_16")
        rows.extend((f"{uri}.wav", *event) for event in file_events)
    write_dcase_tsv(root / "labels.tsv", rows)
    (root / "files.lst").write_text("".join(f"{uri}\n" for uri in events))
    subset = {"uri": "files.lst", "annotation": "labels.tsv"}
    write_database_yml(root / "database.yml", name, "Events", {"train": subset, "development": subset}, audio="{uri}.wav")
    return load_protocol(root / "database.yml", f"{name}.SpeakerDiarization.Events")


def prepared(task):
    """``task`` with a Debug model attached and set up for fitting.

    1600-sample hop at 16 kHz: 0.1 s frames, frame i centred at 0.1 i + 0.05.
    """
    from audiotask.models import Debug

    model = Debug(frame_hop=1600, task=task)
    task.prepare_data()
    task.setup("fit")
    model.attach_specifications(task.specifications)
    return task


def saved_debug_frame_model(folder: Path, classes) -> Path:
    """A Debug frame model of 2-s chunks saved in ``folder`` (untrained: its scores are all
    the command-line tests need)."""
    import torch

    from audiotask.core.specifications import Problem, Resolution, Specifications
    from audiotask.models import Debug

    torch.manual_seed(0)
    debug = Debug(hidden_size=8)
    debug.attach_specifications(Specifications(Problem.MULTI_LABEL_CLASSIFICATION, Resolution.FRAME, 2.0,
                                               classes=list(classes)))
    return debug.save_pretrained(folder / "model")


def stderr_lines(capsys) -> list:
    """What a command wrote on stderr, a line each, less dcase_util's pkg_resources
    deprecation (which pytest's warning filters let through)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.strip() and "pkg_resources" not in line]


def quiet_trainer(**kwargs):
    """A Lightning trainer on the CPU that writes and prints nothing (its keywords overridden by ``kwargs``)."""
    import lightning.pytorch as pl

    defaults = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


class CrashAt(Callback):
    """Raises before optimiser step ``step`` (``where="train"``), or in the validation that
    follows step ``step``, at its batch ``batch`` (``where="validation"``)."""

    def __init__(self, step: int, where: str = "train", batch: int = 0):
        self.step, self.where, self.batch = step, where, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.where == "train" and trainer.global_step == self.step:
            raise RuntimeError("simulated crash")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.where == "validation" and trainer.global_step == self.step and batch_idx == self.batch:
            raise RuntimeError("simulated crash")
