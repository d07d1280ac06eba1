"""k-fold cross-validation of a clip task: train once per fold, score its held-out clips.

Clip corpora (ESC-50, UrbanSound8K) are evaluated fold by fold: for each fold, a model is
trained on the other folds and the clips of that fold are classified (or tagged) whole,
by sliding windows (``inference.clip_scores.clip_scores``). The figures of every fold, and
their mean and standard deviation, are what the corpus's papers report.

    from audiotask.cross_validation import cross_validate, format_cross_validation

    result = cross_validate(
        lambda fold: AudioClassification(protocol, fold=fold),
        lambda task: CRNN(task=task),
        Path("runs/esc50"), folds=["1", "2", "3", "4", "5"], max_steps=5000,
    )
    print(format_cross_validation(result))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from audiotask.core.specifications import Problem
from audiotask.metrics.classification import (
    average_precision_report, classification_report, format_classification, format_tagging, plot_confusion,
)

#: the figures averaged over folds, per kind of task
FIGURES = {"classification": ("accuracy", "macro_f1"), "tagging": ("mAP",)}


@dataclass
class FoldResult:
    """One fold: the report on its held-out clips and where its run wrote its outputs."""

    fold: str
    report: dict  #: ``classification_report`` or ``average_precision_report`` of the fold's clips
    output: Path  #: the fold's training folder (``model/``, ``checkpoints/``, ``metrics.csv``...)
    steps: int = 0  #: optimiser steps trained
    clips: int = 0  #: held-out clips scored


@dataclass
class CrossValidation:
    """Every fold's result, and the mean and standard deviation of its figures over folds."""

    kind: str  #: "classification" or "tagging"
    folds: list[FoldResult]
    mean: dict[str, Optional[float]] = field(default_factory=dict)
    std: dict[str, Optional[float]] = field(default_factory=dict)  #: numpy's (ddof=0), over folds

    def to_dict(self) -> dict:
        """JSON-able form (what ``cross_validation.json`` holds)."""
        return {
            "kind": self.kind, "mean": self.mean, "std": self.std,
            "folds": [{"fold": r.fold, "output": str(r.output), "steps": r.steps, "clips": r.clips, "report": r.report}
                      for r in self.folds],
        }


def reference_tags(metadata, subset, file: int) -> list[str]:
    """The labels of a held-out file: its tags, and the labels of its segments (strong files)."""
    tags = [tag for tag in str(subset.attribute("tags")[file]).split(",") if tag]
    first, last = int(subset.segment_offsets[file]), int(subset.segment_offsets[file + 1])
    segment_labels = {metadata.labels[int(k)] for k in np.asarray(subset.segment_label[first:last]).tolist()}
    return sorted(set(tags) | segment_labels)


def evaluate_fold(task, model: Union[str, Path], *, device: Optional[str] = None) -> tuple[dict, int]:
    """``(report, clips)`` of the model saved at ``model`` on the validation clips of ``task``
    (set up: its "development" subset is the fold's clips), each scored whole."""
    from audiotask.inference.clip_scores import clip_scores
    from audiotask.inference.inference import Inference

    if task.metadata is None or "development" not in task.metadata.subsets:
        raise ValueError(f"{type(task).__name__}: no validation clips to score (give the task a fold).")
    inference = Inference(model, device=device)
    specifications = inference.specifications
    classes = list(specifications.classes)
    subset = task.metadata.subsets["development"]
    files = np.flatnonzero(task.usable_files("development")).tolist()
    scores = np.zeros((len(files), len(classes)), dtype=np.float32)
    for row, file in enumerate(files):
        scores[row] = clip_scores(inference, str(subset.audio[file]))
    labels = [reference_tags(task.metadata, subset, file) for file in files]
    if specifications.problem is Problem.MONO_LABEL_CLASSIFICATION:
        # the task's set-up checked that each of its clips has exactly one label
        reference = [",".join(tags) for tags in labels]
        predicted = [classes[k] for k in scores.argmax(axis=1).tolist()]
        return classification_report(reference, predicted, classes), len(files)
    position = {name: k for k, name in enumerate(classes)}
    targets = np.zeros_like(scores, dtype=np.int64)
    for row, tags in enumerate(labels):
        targets[row, [position[tag] for tag in tags if tag in position]] = 1
    return average_precision_report(scores, targets, classes), len(files)


def summarise(kind: str, reports: Sequence[dict]) -> tuple[dict, dict]:
    """``(mean, std)`` over folds of each figure of ``kind`` (folds where it is None left out)."""
    mean, std = {}, {}
    for name in FIGURES[kind]:
        values = [report[name] for report in reports if report.get(name) is not None]
        mean[name] = float(np.mean(values)) if values else None
        std[name] = float(np.std(values)) if values else None
    return mean, std


def write_fold_outputs(kind: str, report: dict, folder: Path) -> None:
    """The fold's report as text (``report.txt``) and, for a classifier, its confusion matrix
    as an image (``confusion.png``)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = format_classification(report) if kind == "classification" else format_tagging(report)
    (folder / "report.txt").write_text(text + "\n", encoding="utf-8")
    if kind == "classification":
        plot_confusion(report, folder / "confusion.png")


def cross_validate(
    make_task: Callable[[str], object],
    make_model: Callable[[object], object],
    output: Union[str, Path],
    folds: Sequence[Union[str, int]],
    *,
    device: Optional[str] = None,
    **fit_options,
) -> CrossValidation:
    """Train and evaluate one model per fold; return every fold's report and their mean.

    Parameters
    ----------
    make_task : callable
        ``make_task(fold)``: the clip task (``AudioClassification``, ``AudioTagging``) that
        validates on ``fold`` (a str) and trains on the other folds.
    make_model : callable
        ``make_model(task)``: a new model for that task (attached to it, or attached here).
    output : str or Path
        Each fold trains into ``output/fold-<fold>`` (see ``training.fit``), which also gets
        ``report.txt`` and, for a classifier, ``confusion.png``; ``output/cross_validation.json``
        holds the whole result (:meth:`CrossValidation.to_dict`).
    folds : sequence of str or int
        The folds to run (e.g. ``engine.folds.folds(task)``: all of them).
    device : str, optional
        Where to score the held-out clips (default: the CPU, where saved models load).
    **fit_options
        Passed to :func:`audiotask.training.fit` (``max_steps``, ``max_epochs``, ``progress``...).

    Returns
    -------
    CrossValidation
        For a mono-label task, per-fold ``classification_report`` and the mean and standard
        deviation over folds of ``accuracy`` and ``macro_f1``; for a multi-label one,
        ``average_precision_report`` and ``mAP``.
    """
    from audiotask.training import fit

    if not folds:
        raise ValueError("cross_validate: give at least one fold.")
    output = Path(output)
    results, kind = [], None
    for fold in [str(value) for value in folds]:
        task = make_task(fold)
        model = make_model(task)
        if model.task is None:
            model.task = task
        run = fit(model, output / f"fold-{fold}", **fit_options)
        report, clips = evaluate_fold(task, run.model, device=device)
        kind = "classification" if task.specifications.problem is Problem.MONO_LABEL_CLASSIFICATION else "tagging"
        write_fold_outputs(kind, report, output / f"fold-{fold}")
        results.append(FoldResult(fold, report, output / f"fold-{fold}", steps=run.steps, clips=clips))
    mean, std = summarise(kind, [result.report for result in results])
    result = CrossValidation(kind, results, mean, std)
    (output / "cross_validation.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    return result


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def format_cross_validation(result: CrossValidation) -> str:
    """Text table: one row per fold (its figures in %, clips scored, steps trained), then the
    mean and standard deviation over folds."""
    names = FIGURES[result.kind]
    headers = {"accuracy": "accuracy", "macro_f1": "macro F1", "mAP": "mAP"}
    width = max(len("fold"), len("mean ± std"), *(len(r.fold) for r in result.folds))
    columns = [max(len(headers[name]), 15) for name in names]
    header = "  ".join([f"{'fold':<{width}}"] + [f"{headers[n]:>{w}}" for n, w in zip(names, columns)]
                       + [f"{'clips':>6}", f"{'steps':>7}"])
    lines = [f"{result.kind}, {len(result.folds)} fold(s), figures in %", header, "-" * len(header)]
    for fold in result.folds:
        cells = [f"{_percent(fold.report[name]):>{w}}" for name, w in zip(names, columns)]
        lines.append("  ".join([f"{fold.fold:<{width}}"] + cells + [f"{fold.clips:>6}", f"{fold.steps:>7}"]))
    lines.append("-" * len(header))
    summary = [f"{_percent(result.mean[n])} ± {_percent(result.std[n])}" for n in names]
    lines.append("  ".join([f"{'mean ± std':<{width}}"] + [f"{cell:>{w}}" for cell, w in zip(summary, columns)]))
    return "\n".join(lines)
