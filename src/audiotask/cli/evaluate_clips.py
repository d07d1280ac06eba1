"""``audiotask evaluate`` for the clip-level and representation tasks: classification,
tagging, speaker verification (see ``cli/evaluate.py`` for the command and its help).

A reference names its files by filename (clip CSV) or uri (DCASE weak TSV); apply's
tables by filename: both are matched by uri. Only light modules at the top level (see
``cli/main.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping

from audiotask.cli.common import CommandError
from audiotask.protocols.uris import uri_of

#: files named in one error or warning line, the others counted
NAMED = 5


def listed(names) -> str:
    """``"a.wav, b.wav (and 3 more)"``: the first :data:`NAMED` of ``names``."""
    names = list(names)
    more = f" (and {len(names) - NAMED} more)" if len(names) > NAMED else ""
    return ", ".join(names[:NAMED]) + more


def read_reference(path: Path, fold: str | None = None) -> dict[str, tuple[str, tuple[str, ...]]]:
    """``{uri: (name, labels)}`` of a clip CSV (``.csv``) or a DCASE weak-label TSV (any other
    suffix); ``name`` is the file as the reference writes it (its uri for a TSV). With
    ``fold``, the clips of that fold of the CSV only."""
    from audiotask.protocols.clip_tables import read_clip_csv
    from audiotask.protocols.dcase import read_dcase_weak_tsv

    if not path.is_file():
        raise CommandError(f"no such file: {path}")
    if fold is not None:
        return clips_of_fold(path, read_clip_csv(path) if path.suffix.lower() == ".csv" else {}, fold.strip())
    if path.suffix.lower() == ".csv":
        return {uri: (row.filename, tuple(row.labels)) for uri, row in read_clip_csv(path).items()}
    return {uri: (uri, tuple(labels)) for uri, labels in read_dcase_weak_tsv(path).items()}


def clips_of_fold(path: Path, rows: Mapping, fold: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The clips of fold ``fold`` among ``rows`` of the clip CSV ``path``; ``CommandError``
    when it has no fold column or no clip of that fold (naming the folds it has)."""
    from audiotask.engine.folds import fold_order

    folds = sorted({row.fold for row in rows.values() if row.fold}, key=fold_order)
    if not folds:
        raise CommandError(f"--fold {fold}: {path} has no fold column")
    if fold not in folds:
        raise CommandError(f"--fold {fold}: no clip of {path} is in fold {fold!r}; its folds are {', '.join(folds)}")
    return {uri: (row.filename, tuple(row.labels)) for uri, row in rows.items() if row.fold == fold}


def read_predictions(path: Path):
    """apply's clip table (``inference.formats.ClipScores``) with its files keyed by uri, and
    ``{uri: filename}`` (the names it gives them)."""
    from audiotask.inference.formats import ClipScores, read_clip_scores

    if not path.is_file():
        raise CommandError(f"no such file: {path}")
    table = read_clip_scores(path)
    by_uri: dict[str, str] = {}
    for filename in table.scores:
        known = by_uri.setdefault(uri_of(filename), filename)
        if known != filename:
            raise ValueError(f"{path}: {known} and {filename} name the same file (uri {uri_of(filename)!r})")
    return ClipScores(table.classes, {uri_of(name): scores for name, scores in table.scores.items()},
                      {uri_of(name): label for name, label in table.labels.items()}), by_uri


def matched_uris(args: argparse.Namespace, reference: Mapping, predicted: Mapping[str, str]) -> list[str]:
    """The uris of ``reference``, each with its prediction, in the reference's order.

    ``predicted`` is ``{uri: filename}`` of the predictions. A reference file without
    prediction is an error (any score for it would be made up); a prediction of a file the
    reference lacks is left out, with a warning naming it.
    """
    source = f"{args.reference}" if getattr(args, "fold", None) is None else f"fold {args.fold} of {args.reference}"
    if not reference:
        raise CommandError(f"{source} lists no file")
    missing = [reference[uri][0] for uri in reference if uri not in predicted]
    if missing:
        raise CommandError(f"{args.predictions} has no prediction for {len(missing)} file(s) of {source}: "
                           f"{listed(missing)}")
    extra = sorted(name for uri, name in predicted.items() if uri not in reference)
    if extra:
        print(f"audiotask evaluate: warning: {args.predictions} has predictions for {len(extra)} file(s) absent "
              f"from {source}, not evaluated: {listed(extra)}", file=sys.stderr)
    return list(reference)


def check_labels(args: argparse.Namespace, reference: Mapping, classes) -> None:
    """``CommandError`` naming a reference label that is none of the predictions' classes (and a file with it)."""
    unknown: dict[str, str] = {}
    for uri, (name, labels) in reference.items():
        for label in labels:
            if label not in classes:
                unknown.setdefault(label, name)
    if unknown:
        named = listed(f"{label!r} (e.g. {name})" for label, name in sorted(unknown.items()))
        raise CommandError(f"{args.reference} has label(s) that are none of the classes of {args.predictions} "
                           f"({', '.join(classes)}): {named}")


def evaluate_classification(args: argparse.Namespace) -> dict:
    """Accuracy, macro F1, per-class figures and confusion of apply's predictions.csv;
    ``--plot``: the confusion matrix drawn into a PNG."""
    from audiotask.metrics.classification import classification_report, plot_confusion

    reference, (predictions, names) = read_reference(args.reference, args.fold), read_predictions(args.predictions)
    if not predictions.labels:
        raise CommandError(f"{args.predictions} has no label column: give the predictions.csv that `audiotask apply` "
                           "writes for a classifier (scores.csv is a tagger's: --task tagging)")
    several = [f"{name} ({', '.join(labels) or 'none'})" for name, labels in reference.values() if len(labels) != 1]
    if several:
        raise CommandError(f"{args.reference}: classification takes one label per file; {len(several)} file(s) have "
                           f"another number: {listed(several)} (--task tagging evaluates several labels per file)")
    check_labels(args, reference, predictions.classes)
    uris = matched_uris(args, reference, names)
    report = classification_report([reference[uri][1][0] for uri in uris], [predictions.labels[uri] for uri in uris],
                                   predictions.classes)
    if args.plot is not None:
        report["plot"] = str(plot_confusion(report, args.plot))
    return report


def evaluate_tagging(args: argparse.Namespace) -> dict:
    """Average precision of each class and their mean (mAP) from apply's scores.csv."""
    import numpy as np

    from audiotask.metrics.classification import average_precision_report

    reference, (predictions, names) = read_reference(args.reference, args.fold), read_predictions(args.predictions)
    check_labels(args, reference, predictions.classes)
    uris = matched_uris(args, reference, names)
    targets = np.array([[name in reference[uri][1] for name in predictions.classes] for uri in uris], dtype=np.int64)
    scores = np.stack([predictions.scores[uri] for uri in uris])
    report = average_precision_report(scores, targets, predictions.classes)
    absent = [name for name, count in report["positives"].items() if not count]
    if absent:
        print(f"audiotask evaluate: warning: class(es) of {args.predictions} never present in {args.reference}, "
              f"without AP and left out of mAP: {listed(absent)}", file=sys.stderr)
    return report


def evaluate_verification(args: argparse.Namespace) -> dict:
    """Equal error rate and minDCF of ``--trials``, scored with the embeddings' cosine similarity."""
    from audiotask.inference.formats import read_embeddings
    from audiotask.metrics.verification import read_trials, verification_report

    if args.trials is None:
        raise CommandError(f"--task {args.task} needs --trials TRIALS (one 'KEY enrolment test' per line)")
    for path in (args.trials, args.embeddings):
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
    embeddings = read_embeddings(args.embeddings)
    return verification_report(embeddings, read_trials(args.trials), source=str(args.trials))


def classification_table(results: dict) -> str:
    from audiotask.metrics.classification import format_classification

    plot = f"\n\nconfusion matrix drawn in {results['plot']}" if "plot" in results else ""
    return format_classification(results) + plot


def tagging_table(results: dict) -> str:
    from audiotask.metrics.classification import format_tagging

    return format_tagging(results)


def verification_table(results: dict) -> str:
    from audiotask.metrics.verification import format_verification

    return format_verification(results)
