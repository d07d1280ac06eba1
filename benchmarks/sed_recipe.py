"""Sound event detection recipes compared at an equal training budget: the ablation table.

Trains a FRAME CRNN for the same number of optimiser steps under each configuration, in
one process one after the other, then tunes (or not) the post-processing on the
development split, applies the model to the test split and scores it (PSDS1, PSDS2,
event-based F1 macro). The training wall time of each run is printed beside its scores:
the budget is steps (deterministic), the time says what each step costs.

    .venv/bin/python benchmarks/sed_recipe.py --data demo --steps 1240 [--configs full,old,...]
    .venv/bin/python benchmarks/sed_recipe.py --data real --steps 600   # after real_recordings.py build

Configurations (``CONFIGS``): ``old`` is the recipe before DCASE's (every training file
strongly labelled, no teacher, no augmentation, checkpoint by validation loss, one
threshold and median filter); ``full`` is today's default on the training files split into
label kinds (demo: a quarter strong, a quarter weak, half unlabelled; real: thirds; mean
teacher; mixup and FilterAugment; checkpoint by development PSDS1; class-wise
post-processing tuned on development); ``*-strong-part`` train on the strongly labelled
part alone, ``*-all-strong`` on every file strongly labelled; every other one is ``full``
with one part changed. ``large`` is a bigger CRNN given the steps that take the
small one's training time (its step time is measured first, in the same run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SMALL_CRNN = dict(channels=[16, 32, 64], hidden_size=64, n_mels=32)
LARGE_CRNN = dict(channels=[32, 64, 128, 128], time_pooling=[2, 2, 1, 1], hidden_size=128, n_mels=64)
DATA = {
    # protocols: every training file strongly labelled; the same files split into label kinds;
    # the strongly labelled part of that split alone
    "demo": {"all-strong": "AudiotaskDemo.SpeakerDiarization.SoundEvents",
             "mixed": "X.SpeakerDiarization.AudiotaskDemoMixed",
             "strong-part": "AudiotaskDemo.SpeakerDiarization.Strong"},
    "real": {"all-strong": "RealRecordings.SpeakerDiarization.Events",
             "mixed": "X.SpeakerDiarization.RealRecordingsMixed",
             "strong-part": "RealRecordings.SpeakerDiarization.Strong"},
}
FULL = dict(protocol="mixed", teacher=True, teacher_decay=0.99, augmentation={}, select_by="psds1", tune=True, model=SMALL_CRNN,
            mixing=False)
CONFIGS = {
    "old": dict(FULL, protocol="all-strong", teacher=False, augmentation={"none": True}, select_by="loss", tune=False),
    "old-strong-part": dict(FULL, protocol="strong-part", teacher=False, augmentation={"none": True}, select_by="loss",
                            tune=False),
    "full": FULL,
    "full-strong-part": dict(FULL, protocol="strong-part"),
    "full-all-strong": dict(FULL, protocol="all-strong"),
    "no-teacher": dict(FULL, teacher=False),
    "teacher-0.999": dict(FULL, teacher_decay=0.999),
    "no-mixup": dict(FULL, augmentation={"mixup": 0.0}),
    "no-filter-augment": dict(FULL, augmentation={"filter_augment": False}),
    "masking": dict(FULL, augmentation={"filter_augment": False, "frequency_masks": 2}),
    "shift-gain": dict(FULL, augmentation={"time_shift": 0.2, "gain": 6.0}),
    "no-augmentation": dict(FULL, augmentation={"none": True}),
    "global-postprocessing": dict(FULL, tune=False),
    "select-by-loss": dict(FULL, select_by="loss"),
    "mixing": dict(FULL, mixing=True),
    "instance-normalization": dict(FULL, model={**SMALL_CRNN, "normalization": "instance"}),
    "large": dict(FULL, model=LARGE_CRNN),
    "crnn-defaults": dict(FULL, model={}),
}


def data_root(name: str, root: Path) -> Path:
    """The data set's folder (the demo's is built here on first use)."""
    if name == "demo":
        from audiotask.demo.pipeline import FULL as DEMO
        from audiotask.demo.soundscapes import build_demo_dataset

        return build_demo_dataset(root / "demo" / "data", seed=0, num_train=DEMO.num_train,
                                  num_development=DEMO.num_development, num_test=DEMO.num_test).parent
    folder = HERE / ".data" / "real-recordings"
    if not (folder / "database.yml").is_file():
        sys.exit(f"no real-recordings data in {folder}: run `python benchmarks/real_recordings.py build` first")
    return folder


def mixing_folders(name: str, data: Path, root: Path) -> tuple[Path, Path]:
    """Isolated event clips and backgrounds for dynamic mixing."""
    if name == "demo":
        from audiotask.demo.soundscapes import build_isolated_events

        return build_isolated_events(root / "demo" / "isolated")
    return data / "isolated", data / "backgrounds" / "train"


def make_task(name: str, data: Path, config: dict, *, cache: Path, root: Path, batch_size: int):
    from audiotask.augmentation.recipe import DetectionAugmentation
    from audiotask.tasks.sed.mixing import DynamicMixing
    from audiotask.tasks import SoundEventDetection
    from audiotask.testing.dummies import load_protocol

    augmentation = dict(config["augmentation"])
    recipe = DetectionAugmentation.none() if augmentation.pop("none", False) else DetectionAugmentation(**augmentation)
    mixing = None
    if config["mixing"]:
        events, backgrounds = mixing_folders(name, data, root)
        mixing = DynamicMixing(events=events, backgrounds=backgrounds, share=0.25)
    protocol = load_protocol(data / "database.yml", DATA[name][config["protocol"]])
    return SoundEventDetection(
        protocol, resolution="frame", duration=10.0, batch_size=batch_size, num_workers=0, cache=cache,
        mean_teacher=config["teacher"], teacher_decay=config["teacher_decay"], consistency_ramp_up=400, augmentation=recipe, mixing=mixing,
        select_by=config["select_by"],
    )


def step_seconds(name: str, data: Path, config: dict, *, cache: Path, root: Path, batch_size: int, steps: int = 12) -> float:
    """Seconds per training step of ``config`` (the mean of ``steps`` after two warm-up ones)."""
    import torch

    from audiotask.models import CRNN

    task = make_task(name, data, config, cache=cache, root=root, batch_size=batch_size)
    model = CRNN(task=task, **config["model"])
    task.prepare_data()
    task.setup("fit")
    model.attach_specifications(task.specifications)
    model.log = lambda *args, **kwargs: None  # no trainer here
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = task.train_batches(epoch=0)
    for index in range(steps + 2):
        if index == 2:
            started = time.perf_counter()
        output = task.training_step(next(batches), index)
        output["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        task.on_optimizer_step()
    return (time.perf_counter() - started) / steps


def run(name: str, data: Path, label: str, config: dict, *, steps: int, output: Path, root: Path, batch_size: int) -> dict:
    import lightning.pytorch as pl

    from audiotask.demo.pipeline import DemoConfig, detect_events, evaluate, tune
    from audiotask.models import CRNN
    from audiotask.training import fit, set_learning_rate

    pl.seed_everything(0, workers=True, verbose=False)
    task = make_task(name, data, config, cache=root / "cache", root=root, batch_size=batch_size)
    model = CRNN(task=task, **config["model"])
    set_learning_rate(model, 3e-3)
    started = time.perf_counter()
    training = fit(model, output, max_steps=steps, check_val_every_n_epoch=4, progress=False, enable_model_summary=False)
    seconds = time.perf_counter() - started
    tuned = tune(training.model, data, progress=False) if config["tune"] else None
    test_audio = sorted((data / "audio" / "test").glob("*.wav"))
    scores, events = detect_events(training.model, test_audio, DemoConfig(), progress=False, tuned=tuned)
    results = evaluate(data, output, scores, events)
    return {"config": label, "steps": training.steps, "train_seconds": round(seconds, 1),
            "psds1": results["psds1"], "psds2": results["psds2"], "event_f1": results["event_f1"],
            "kept": f"{training.monitored} {training.best_score}"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=sorted(DATA), default="demo")
    parser.add_argument("--steps", type=int, default=1240, help="optimiser steps of every run (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--configs", default="old,full", help=f"comma-separated, among {', '.join(CONFIGS)}")
    parser.add_argument("--root", type=Path, default=HERE / ".data" / "sed-recipe", help="work folder (git-ignored)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    labels = args.configs.split(",")
    unknown = [label for label in labels if label not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}")
    data = data_root(args.data, args.root)
    rows = []
    for label in labels:
        config, steps = CONFIGS[label], args.steps
        if config["model"] != SMALL_CRNN:  # equal training time: fewer steps for a costlier model
            options = dict(cache=args.root / "cache", root=args.root, batch_size=args.batch_size)
            ratio = step_seconds(args.data, data, FULL, **options) / step_seconds(args.data, data, config, **options)
            steps = max(1, int(round(args.steps * ratio)))
            print(f"{label}: a step costs {1 / ratio:.2f}x the small model's: {steps} steps", flush=True)
        output = args.root / "runs" / args.data / f"{label}-{args.steps}"
        row = run(args.data, data, label, config, steps=steps, output=output, root=args.root, batch_size=args.batch_size)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{args.data} data, {args.steps} steps of batch {args.batch_size} (2 threads)")
    print("| configuration | steps | training (s) | PSDS1 | PSDS2 | event F1 (%) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['config']} | {row['steps']} | {row['train_seconds']:.0f} | {row['psds1']:.3f} | {row['psds2']:.3f} "
              f"| {100 * row['event_f1']:.1f} |")
    (args.root / f"results-{args.data}-{args.steps}.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
