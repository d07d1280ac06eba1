"""The demo workflow, end to end on built-in synthetic data: build, train, apply, evaluate, plot.

``run_demo`` is what ``audiotask demo`` runs. The full configuration was tuned to finish in
about five minutes on two CPU cores; ``quick`` is a tiny version for tests.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from audiotask.demo.soundscapes import MIXED_PROTOCOL, build_demo_dataset


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo: data set, model, training and post-processing.

    The defaults (``FULL``) were chosen by measurement on two CPU cores: 500 training clips
    seen 40 times (1240 steps, about 4 minutes) scored PSDS1 0.72 on the test split, where
    200 clips for the same number of steps overfit (the best validation loss came at half of
    them); a learning rate of 3e-3 beat 1e-3 (PSDS1 0.66 vs 0.44 after 720 steps) and 6e-3.
    The training budget is epochs / steps only, never wall clock: a busy machine makes the
    demo slower, not different (a time cap once stopped it at epoch 7 of 40, unsaid).
    """

    num_train: int = 500
    num_development: int = 40
    num_test: int = 40
    #: whole ten-second clips: no chunk boundary cuts an event, and inference needs one chunk
    duration: float = 10.0
    epochs: Optional[int] = 40
    max_steps: Optional[int] = None
    check_val_every_n_epoch: int = 4
    batch_size: int = 16
    learning_rate: float = 3e-3
    #: 32 mel bands (not 64) make a training step about 40 % cheaper: more steps fit the budget
    model: dict = field(default_factory=lambda: dict(channels=[16, 32, 64], hidden_size=64, n_mels=32))
    #: the dataloader shares two cores with the model: a worker process made steps slower
    num_workers: int = 0
    num_threads: int = 2
    #: the DCASE recipe (see SoundEventDetection): a mean teacher, and its consistency ramp-up in steps
    mean_teacher: bool = True
    consistency_ramp_up: int = 400
    #: keywords of augmentation.DetectionAugmentation
    augmentation: dict = field(default_factory=dict)
    #: post-processing: class-wise thresholds and median filters tuned on the development set,
    #: else the single ``onset`` and ``median_filter_length``
    tune: bool = True
    onset: float = 0.5
    median_filter_length: float = 0.45  # seconds
    num_plots: Optional[int] = None  # PNGs for the first that many test files (None: all)


FULL = DemoConfig()
QUICK = DemoConfig(
    num_train=6, num_development=2, num_test=3, epochs=None, max_steps=4, check_val_every_n_epoch=1,
    batch_size=4, model=dict(channels=[4, 8, 8], hidden_size=8), num_plots=2,
)


def train_model(database_yml: Path, output: Path, config: DemoConfig, *, seed: int, progress: bool):
    """Train a FRAME-resolution CRNN on the demo protocol; returns ``training.TrainingResult``."""
    import lightning.pytorch as pl

    from audiotask.models import CRNN
    from audiotask.tasks import SoundEventDetection
    from audiotask.tasks.sed import DCASE_CLASSES
    from audiotask.testing.dummies import load_protocol
    from audiotask.training import fit, set_learning_rate

    pl.seed_everything(seed, workers=True, verbose=False)
    from audiotask.augmentation.recipe import DetectionAugmentation

    task = SoundEventDetection(
        load_protocol(database_yml, MIXED_PROTOCOL), classes=DCASE_CLASSES, resolution="frame",
        duration=config.duration, batch_size=config.batch_size, num_workers=config.num_workers,
        cache=output / "cache", mean_teacher=config.mean_teacher, consistency_ramp_up=config.consistency_ramp_up,
        augmentation=DetectionAugmentation(**config.augmentation),
    )
    model = CRNN(task=task, **config.model)
    set_learning_rate(model, config.learning_rate)
    return fit(
        model, output, max_epochs=config.epochs, max_steps=config.max_steps,
        check_val_every_n_epoch=config.check_val_every_n_epoch, progress=progress,
        enable_model_summary=False,
    )


def score_files(model_dir: Path, audio_files: list[Path], *, progress: bool, desc: str = "Inference") -> dict:
    """Frame scores (``SlidingWindowFeature``) of ``audio_files``, by file name."""
    from tqdm.auto import tqdm

    from audiotask.inference.inference import Inference

    inference = Inference(model_dir, batch_size=8)
    return {path.name: inference(str(path)) for path in tqdm(audio_files, desc=desc, unit="file", disable=not progress)}


def tune(model_dir: Path, data: Path, *, progress: bool):
    """Class-wise thresholds and median filters tuned on the development split, saved with the model."""
    import soundfile

    from audiotask.inference.formats import read_events_tsv
    from audiotask.metrics.tuning import tune_postprocessing

    audio = sorted((data / "audio" / "development").glob("*.wav"))
    scores = score_files(model_dir, audio, progress=progress, desc="Tuning")
    durations = {path.name: soundfile.info(str(path)).duration for path in audio}
    classes = list(next(iter(scores.values())).labels)  # the model's, as its scores name them
    tuned = tune_postprocessing(scores, read_events_tsv(data / "metadata" / "development.tsv"), durations, classes=classes)
    tuned.save(model_dir)
    return tuned


def detect_events(model_dir: Path, audio_files: list[Path], config: DemoConfig, *, progress: bool, tuned=None):
    """Scores (``SlidingWindowFeature`` per file name) and post-processed events of ``audio_files``."""
    from audiotask.inference.postprocessing import scores_to_events

    scores = score_files(model_dir, audio_files, progress=progress)
    options = tuned.kwargs() if tuned is not None else dict(onset=config.onset, median_filter_length=config.median_filter_length)
    events = {name: scores_to_events(s, **options) for name, s in scores.items()}
    return scores, events


def evaluate(data: Path, output: Path, scores: dict, events: dict) -> dict:
    """Write scores and detections, evaluate them against the test labels, write the results."""
    from audiotask.inference.formats import read_events_tsv, write_events_tsv, write_scores
    from audiotask.metrics.sound_events import evaluate_sound_events, format_table

    write_scores(output / "scores", scores)
    write_events_tsv(output / "detections.tsv", events)
    results = evaluate_sound_events(
        data / "metadata" / "test.tsv", data / "metadata" / "test_durations.tsv",
        # the file as written (times rounded to the millisecond): what `audiotask evaluate` would score
        detections=read_events_tsv(output / "detections.tsv"), scores=scores,
    )
    (output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (output / "results.txt").write_text(format_table(results) + "\n")
    return results


def output_paths(output: Path, training) -> dict[str, Path]:
    """What the demo writes where (``training`` is the ``training.TrainingResult``)."""
    return {
        "data": output / "data", "database": output / "data" / "database.yml", "model": training.model,
        "checkpoints": training.checkpoints, "training_log": training.metrics, "scores": output / "scores",
        "detections": output / "detections.tsv", "results": output / "results.json",
        "table": output / "results.txt", "plots": output / "plots",
    }


def run_demo(
    output: str | Path,
    *,
    seed: int = 0,
    quick: bool = False,
    config: Optional[DemoConfig] = None,
    progress: bool = True,
    verbose: bool = True,
) -> dict:
    """Build the demo data, train, apply to the test split, evaluate and plot, under ``output``.

    Parameters
    ----------
    output : str or Path
        Folder for everything: ``data/``, ``model/``, ``checkpoints/``, ``metrics.csv``,
        ``scores/``, ``detections.tsv``, ``results.json``, ``results.txt``, ``plots/``.
    seed : int
        Seed of the data set and of training.
    quick : bool
        Use the tiny ``QUICK`` configuration (tests) instead of ``FULL``.
    config : DemoConfig, optional
        Overrides ``quick``.
    progress, verbose : bool
        Progress bars; a printed summary.

    Returns
    -------
    dict
        ``results`` (the metrics), ``paths`` (what was written where), ``seconds`` (time per stage),
        ``training`` (steps and epochs trained, skipped batches, what cut training short if anything).
    """
    import torch

    from audiotask.demo.plots import plot_files
    from audiotask.inference.formats import read_events_tsv

    config = config or (QUICK if quick else FULL)
    output = Path(output)
    # as many threads as the cores the budget was measured on: more only contend for them
    torch.set_num_threads(config.num_threads)
    seconds, clock = {}, time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage], clock = time.perf_counter() - clock, time.perf_counter()

    data = output / "data"
    database_yml = build_demo_dataset(
        data, seed=seed, num_train=config.num_train, num_development=config.num_development,
        num_test=config.num_test, duration=config.duration,
    )
    lap("data")
    training = train_model(database_yml, output, config, seed=seed, progress=progress)
    lap("training")
    tuned = tune(training.model, data, progress=progress) if config.tune else None
    lap("tuning")
    test_audio = sorted((data / "audio" / "test").glob("*.wav"))
    scores, events = detect_events(training.model, test_audio, config, progress=progress, tuned=tuned)
    lap("inference")
    results = evaluate(data, output, scores, events)
    lap("evaluation")
    reference = read_events_tsv(data / "metadata" / "test.tsv")
    thresholds = tuned.onset if tuned is not None else config.onset
    plots = plot_files(output / "plots", scores, reference, detections_by_file=events, limit=config.num_plots,
                       audio_by_file={path.name: path for path in test_audio}, thresholds=thresholds)
    lap("plots")
    paths = {name: str(path) for name, path in output_paths(output, training).items()}
    summary = {"results": results, "paths": paths, "seconds": seconds, "num_plots": len(plots),
               "config": asdict(config), "seed": seed, "training": training_summary(training)}
    (output / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    if verbose:
        print_summary(summary)
    return summary


def training_summary(training) -> dict:
    """How far training went (``training`` is the ``training.TrainingResult``)."""
    return {"steps": training.steps, "epochs": training.epochs, "skipped": training.skipped,
            "cut_short": training.cut_short, "summary": training.summary()}


def print_summary(summary: dict) -> None:
    """Where everything went, the main figures, and the time each stage took."""
    from audiotask.metrics.sound_events import format_table

    notes = {"plots": f"({summary['num_plots']} PNG files)", "model": "(load with Model.from_pretrained)"}
    width = max(map(len, summary["paths"])) + 1
    print()
    for name, path in summary["paths"].items():
        print(f"{name + ':':<{width}} {path} {notes.get(name, '')}".rstrip())
    print()
    print(f"training: {summary['training']['summary']}")
    print()
    print(format_table(summary["results"]))
    print()
    print("time: " + ", ".join(f"{stage} {value:.0f} s" for stage, value in summary["seconds"].items())
          + f" (total {sum(summary['seconds'].values()):.0f} s)")
