"""Cross-validation folds of prepared metadata: which folds there are, and one split off.

Clip corpora (ESC-50, UrbanSound8K) come with a fold per clip and are evaluated by k-fold
cross-validation: train on every fold but one, validate on that one, k times. The fold is
a file attribute (``"fold"``, from a clip CSV's column or a protocol key); splitting the
prepared training subset in memory, rather than asking the protocol for k subset pairs,
lets all k runs share one preparation.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from audiotask.engine.metadata import ProtocolMetadata, SubsetMetadata

#: the file attribute holding a clip's fold
FOLD = "fold"


def fold_order(value: str):
    """Sort key of fold names: numbers by value (2 before 10), then the others by name."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def fold_values(subset: SubsetMetadata) -> np.ndarray:
    """(files,) str fold of each file ("" for none); KeyError when folds were not prepared."""
    return np.char.strip(np.asarray(subset.attribute(FOLD), dtype=str))


def folds(source) -> list[str]:
    """The folds of a clip set, in order (numbers by value): the distinct non-empty folds of
    a ``SubsetMetadata``, of every subset of a ``ProtocolMetadata``, or of a task's training
    files (a task split by fold holds them in its "train" and "development" subsets; one not
    set up yet prepares its metadata first, which needs no model)."""
    if isinstance(source, SubsetMetadata):
        subsets = [source]
    elif isinstance(source, ProtocolMetadata):
        subsets = list(source.subsets.values())
    else:  # a task of the engine
        if getattr(source, "metadata", None) is None:
            source.metadata = source.load_metadata()
        metadata = source.metadata
        subsets = [metadata.subsets[name] for name in ("train", "development") if name in metadata.subsets]
        if getattr(source, "fold", None) is None:
            subsets = subsets[:1]  # an unsplit task's development files are no fold of its training set
    values = {value for subset in subsets for value in fold_values(subset).tolist() if value}
    return sorted(values, key=fold_order)


def split_by_fold(metadata: ProtocolMetadata, fold: Union[str, int], *, owner: str = "split_by_fold") -> ProtocolMetadata:
    """``metadata`` whose "train" files of fold ``fold`` become its "development" subset.

    The other training files stay in "train" (those without a fold too: they are never
    validated on); any other subset of ``metadata`` is dropped. ``ValueError`` (prefixed by
    ``owner``) when the training files have no fold at all, when none is in ``fold`` (the
    message lists the folds there are), or when every one is.
    """
    fold = str(fold).strip()
    train = metadata.subsets["train"]
    values = fold_values(train)
    existing = folds(train)
    if not existing:
        raise ValueError(f"{owner}: fold {fold!r} was asked for, but no training file has a fold (a 'fold' column "
                         "in the clip CSV, or a 'fold' key of the protocol's files).")
    chosen = values == fold
    if not chosen.any():
        raise ValueError(f"{owner}: no training file is in fold {fold!r}; the folds are {', '.join(existing)}.")
    if chosen.all():
        raise ValueError(f"{owner}: every training file is in fold {fold!r}: none is left to train on.")
    subsets = {"train": train.select(np.flatnonzero(~chosen)), "development": train.select(np.flatnonzero(chosen))}
    return ProtocolMetadata(list(metadata.labels), subsets, dict(metadata.segments_per_label))
