"""One score per class for a whole clip, from a CHUNK model's sliding windows."""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np

from audiotask.core.audio import AudioFile
from audiotask.core.specifications import Problem, Resolution

REDUCTIONS = ("mean", "max")


def default_reduction(problem: Problem) -> str:
    """"max" for multi-label (and binary) models, "mean" for mono-label ones (see :func:`clip_scores`)."""
    return "mean" if problem is Problem.MONO_LABEL_CLASSIFICATION else "max"


def reduce_windows(scores: np.ndarray, reduce: str) -> np.ndarray:
    """(windows, classes) scores -> (classes,): their mean or their maximum over windows."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or not len(scores):
        raise ValueError(f"reduce_windows: scores must be (windows, classes) with a window, got {scores.shape}.")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce_windows: reduce must be one of {REDUCTIONS}, got {reduce!r}.")
    return scores.mean(axis=0) if reduce == "mean" else scores.max(axis=0)


def clip_scores(inference, file: AudioFile, *, reduce: Optional[Literal["mean", "max"]] = None) -> np.ndarray:
    """(classes,) float32 scores of a whole clip by a CHUNK model.

    ``inference`` (an :class:`~audiotask.inference.inference.Inference`) scores every window
    of the clip (a clip shorter than the model's chunk is one zero-padded window, as in
    training); the windows' scores are then reduced to one row:

    - ``"mean"`` (default for mono-label models): the class probabilities of the windows
      averaged, which stays a distribution over the classes and lets every part of the clip
      vote for its one class;
    - ``"max"`` (default for multi-label models, tagging): a class occurs in the clip when it
      occurs in any of its windows, so a short event heard in one window is not diluted by
      the windows without it.

    ``file`` is anything ``Inference`` reads (a path, a protocol file, an in-memory waveform).
    """
    specifications = inference.specifications
    if specifications.resolution is not Resolution.CHUNK:
        raise ValueError("clip_scores needs a CHUNK model (one decision per window); this one decides per frame.")
    reduce = default_reduction(specifications.problem) if reduce is None else reduce
    return reduce_windows(np.asarray(inference(file).data), reduce).astype(np.float32)
