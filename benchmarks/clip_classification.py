"""Clip classification on a generated ten-class clip set, at a fixed budget of training steps.

Generates (once) an ESC-50-like clip set (``audiotask.testing.clips``: ten synthetic sound
classes in loud background noise, 40 clips per class, 5 folds, 5-s clips at 16 kHz) under
``benchmarks/.data/``, trains ``AudioClassification`` with a small CRNN on folds 2-5 for
``--steps`` optimiser steps, classifies the clips of fold 1 whole, and prints their
accuracy, macro F1 and training throughput (training clips per second of training, validation excluded). With
``--all-folds``, all five folds in turn (5-fold cross-validation), then mean and deviation.

    .venv/bin/python benchmarks/clip_classification.py --steps 300 [--all-folds]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SMALL_CRNN = dict(channels=[16, 32, 64], hidden_size=64, n_mels=32)
#: background noise of std 0.3 puts the sounds at about -4 to +4 dB: the classes stay
#: learnable, and a few dozen steps no longer classify every clip right
DATA = dict(classes=10, clips_per_class=40, folds=5, duration=5.0, sample_rate=16000, seed=0, noise=0.3)


def make_clock():
    """A Lightning callback adding up training time (validation excluded) and training clips."""
    from lightning.pytorch.callbacks import Callback

    class TrainingClock(Callback):
        def __init__(self):
            self.seconds, self.clips, self._started = 0.0, 0, None

        def on_train_start(self, trainer, module):
            self._started = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.clips += len(batch["X"])

        def on_validation_start(self, trainer, module):
            self._pause()

        def on_validation_end(self, trainer, module):
            self._started = time.perf_counter()

        def on_train_end(self, trainer, module):
            self._pause()

        def _pause(self):
            if self._started is not None:
                self.seconds += time.perf_counter() - self._started
                self._started = None

    return TrainingClock()


def clip_set(root: Path) -> tuple[Path, Path]:
    """The generated clip set's audio folder and CSV (made on first use)."""
    from audiotask.testing.clips import make_clip_dataset

    folder = root / "data"
    marker = folder / "settings.json"
    if marker.is_file() and json.loads(marker.read_text()) == DATA:
        return folder / "audio", folder / "labels.csv"
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    audio, labels = make_clip_dataset(folder, **DATA)
    marker.write_text(json.dumps(DATA))
    print(f"generated {DATA['classes'] * DATA['clips_per_class']} clips in {time.perf_counter() - started:.0f} s", flush=True)
    return audio, labels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per fold (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--all-folds", action="store_true", help="5-fold cross-validation instead of fold 1 alone")
    parser.add_argument("--root", type=Path, default=HERE / ".data" / "clip-classification", help="work folder (git-ignored)")
    args = parser.parse_args(argv)
    import lightning.pytorch as pl
    import torch

    from audiotask.cross_validation import cross_validate, format_cross_validation
    from audiotask.models import CRNN
    from audiotask.protocols.clips import clip_protocol
    from audiotask.tasks.audio_classification import AudioClassification
    from audiotask.training import set_learning_rate

    torch.set_num_threads(2)
    pl.seed_everything(0, workers=True, verbose=False)
    audio, labels = clip_set(args.root)
    protocol = clip_protocol(audio, labels, args.root / "data" / "database.yml", name="SyntheticClips")
    folds = [str(k) for k in range(1, DATA["folds"] + 1)] if args.all_folds else ["1"]

    def make_task(fold):
        return AudioClassification(protocol, fold=fold, duration=DATA["duration"], batch_size=args.batch_size,
                                   num_workers=0, cache=args.root / "cache")

    def make_model(task):
        model = CRNN(task=task, **SMALL_CRNN)
        set_learning_rate(model, args.learning_rate)
        return model

    output = args.root / "runs" / f"steps-{args.steps}"
    shutil.rmtree(output, ignore_errors=True)  # a previous run's checkpoints must not be taken for this one's
    clock = make_clock()
    started = time.perf_counter()
    result = cross_validate(make_task, make_model, output, folds, max_steps=args.steps, check_val_every_n_epoch=5,
                            progress=False, enable_model_summary=False, callbacks=[clock])
    total = time.perf_counter() - started
    first = result.folds[0].report
    print(f"\n{DATA['classes']} classes x {DATA['clips_per_class']} clips of {DATA['duration']:g} s, "
          f"{args.steps} steps of batch {args.batch_size} per fold (2 threads)")
    print(f"fold 1: accuracy {100 * first['accuracy']:.1f} %, macro F1 {100 * first['macro_f1']:.1f} % "
          f"({result.folds[0].clips} clips)")
    print(f"training throughput: {clock.clips / clock.seconds:.1f} clips/s "
          f"({clock.clips} clips in {clock.seconds:.0f} s of training; {total:.0f} s in all)")
    if args.all_folds:
        print("\n" + format_cross_validation(result))
    print(f"\noutputs: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
