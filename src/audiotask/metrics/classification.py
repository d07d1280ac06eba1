"""Clip-level metrics: accuracy, F1 and confusion of a classifier; average precision of a tagger.

Reports are plain dicts (JSON-able: an undefined value is None, never NaN), formatted as
text tables by :func:`format_classification` and :func:`format_tagging`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _indices(labels: Sequence[str], classes: Sequence[str], what: str) -> np.ndarray:
    position = {str(name): index for index, name in enumerate(classes)}
    unknown = sorted({str(label) for label in labels if str(label) not in position})
    if unknown:
        raise ValueError(f"{what} label(s) {unknown} are not among the classes {list(classes)}.")
    return np.array([position[str(label)] for label in labels], dtype=np.int64)


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    return float(numerator / denominator) if denominator else None


def classification_report(reference: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> dict:
    """Accuracy, macro F1, per-class figures and confusion matrix of mono-label decisions.

    Parameters
    ----------
    reference, predicted : sequences of str, (clips,)
        The true class and the decided class of each clip; a label outside ``classes`` is a
        ValueError naming it.
    classes : sequence of str
        Every class, in the order of the confusion matrix's rows and columns.

    Returns
    -------
    dict
        ``accuracy`` (share of clips decided right); ``macro_f1``, the mean F1 over the
        classes that are in ``reference`` or ``predicted`` (a class in neither has no F1);
        ``per_class`` ``{class: {precision, recall, f1, support}}`` (precision None for a
        class never predicted, recall None for one never present); ``confusion``, a list of
        rows (one per reference class) of counts per predicted class; ``classes``.
    """
    classes = [str(name) for name in classes]
    if len(reference) != len(predicted):
        raise ValueError(f"classification_report: {len(reference)} reference labels but {len(predicted)} predicted.")
    truth, decided = _indices(reference, classes, "reference"), _indices(predicted, classes, "predicted")
    count = len(classes)
    confusion = np.bincount(truth * count + decided, minlength=count * count).reshape(count, count)
    correct, support, chosen = np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
    per_class = {}
    for k, name in enumerate(classes):
        # 2 tp / (2 tp + fp + fn), with 2 tp + fp + fn = support + times chosen
        per_class[name] = {"precision": _ratio(correct[k], chosen[k]), "recall": _ratio(correct[k], support[k]),
                           "f1": _ratio(2 * correct[k], support[k] + chosen[k]), "support": int(support[k])}
    scores = [figures["f1"] for figures in per_class.values() if figures["f1"] is not None]
    return {
        "accuracy": _ratio(correct.sum(), len(truth)),
        "macro_f1": float(np.mean(scores)) if scores else None,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "classes": classes,
    }


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def format_classification(report: dict) -> str:
    """Text of :func:`classification_report`'s report: accuracy and macro F1, a table of the
    per-class figures (in %), then the confusion matrix (rows: reference, columns: predicted)."""
    classes = report["classes"]
    width = max([len("class")] + [len(name) for name in classes])
    lines = [f"accuracy {_percent(report['accuracy'])} %, macro F1 {_percent(report['macro_f1'])} %", ""]
    header = f"{'class':<{width}}  {'precision':>9}  {'recall':>6}  {'F1':>6}  {'support':>7}"
    lines += [header, "-" * len(header)]
    for name in classes:
        figures = report["per_class"][name]
        lines.append(f"{name:<{width}}  {_percent(figures['precision']):>9}  {_percent(figures['recall']):>6}  "
                     f"{_percent(figures['f1']):>6}  {figures['support']:>7}")
    # columns are numbered (their names would make the matrix too wide): k is the k-th class
    cell = max(3, len(str(max((max(row) for row in report["confusion"]), default=0))), len(str(len(classes))))
    lines += ["", "confusion (rows: reference, columns: predicted, numbered as the rows)"]
    lines.append(f"{'':<{width + 4}}  " + " ".join(f"{k + 1:>{cell}}" for k in range(len(classes))))
    for k, (name, row) in enumerate(zip(classes, report["confusion"])):
        lines.append(f"{name:<{width}}{k + 1:>4}  " + " ".join(f"{value:>{cell}}" for value in row))
    return "\n".join(lines)


def plot_confusion(report: dict, path: str | Path) -> Path:
    """Write the confusion matrix of :func:`classification_report`'s report as a PNG image
    (rows: reference, columns: predicted, counts written in the cells); return its path."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed: the figure goes to a file
    import matplotlib.pyplot as plt

    classes, confusion = report["classes"], np.asarray(report["confusion"])
    size = 1.5 + 0.45 * len(classes)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(len(classes)), classes, rotation=90)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("reference")
    middle = confusion.max() / 2 if confusion.size else 0
    for (row, column), value in np.ndenumerate(confusion):
        if value:
            axes.text(column, row, str(value), ha="center", va="center", fontsize=8,
                      color="white" if value > middle else "black")
    title = f"accuracy {_percent(report['accuracy'])} %, macro F1 {_percent(report['macro_f1'])} %"
    axes.set_title(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def average_precision_report(scores, targets, classes: Sequence[str]) -> dict:
    """Average precision of each class of a tagger, and their macro mean (mAP).

    Parameters
    ----------
    scores : (clips, classes) float array
        Score of each class in each clip (higher: more likely present).
    targets : (clips, classes) {0, 1} array
        Whether each class is present.
    classes : sequence of str

    Returns
    -------
    dict
        ``mAP``: the mean AP over the classes with at least one positive clip (a class never
        present has no AP; None when no class is present); ``per_class`` ``{class: AP or
        None}``; ``positives`` ``{class: clips where present}``; ``classes``.
    """
    import torch
    from torchmetrics.functional.classification import binary_average_precision

    classes = [str(name) for name in classes]
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape or scores.shape[1] != len(classes):
        raise ValueError(f"average_precision_report: scores {scores.shape} and targets {targets.shape} must both be "
                         f"(clips, {len(classes)} classes).")
    if not np.isin(targets, (0, 1)).all():
        raise ValueError("average_precision_report: targets must be 0 or 1.")
    positives = targets.sum(axis=0).astype(int)
    per_class = {}
    for k, name in enumerate(classes):
        if positives[k]:
            value = binary_average_precision(torch.from_numpy(scores[:, k]), torch.from_numpy(targets[:, k].astype(np.int64)))
            per_class[name] = float(value)
        else:
            per_class[name] = None
    defined = [value for value in per_class.values() if value is not None]
    return {"mAP": float(np.mean(defined)) if defined else None, "per_class": per_class,
            "positives": {name: int(count) for name, count in zip(classes, positives)}, "classes": classes}


def format_tagging(report: dict) -> str:
    """Text of :func:`average_precision_report`'s report: mAP, then AP (in %) and positive
    clips per class."""
    classes = report["classes"]
    width = max([len("class")] + [len(name) for name in classes])
    header = f"{'class':<{width}}  {'AP':>6}  {'positives':>9}"
    lines = [f"mAP {_percent(report['mAP'])} %", "", header, "-" * len(header)]
    for name in classes:
        lines.append(f"{name:<{width}}  {_percent(report['per_class'][name]):>6}  {report['positives'][name]:>9}")
    return "\n".join(lines)
