"""Powerset classes of local speakers: one class per set of speakers active at once.

A speaker diarization model in the powerset formulation (``tasks/speaker_diarization.py``)
makes one mono-label decision per frame among the sets of at most ``max_speakers_per_frame``
of its ``num_speakers`` local speakers: with 3 speakers and at most 2 at once, the 7 classes
are {}, {1}, {2}, {3}, {1, 2}, {1, 3}, {2, 3}. :class:`Powerset` turns such decisions into
(frames, speakers) activity and activity back into classes.

After pyannote.audio's ``pyannote/audio/utils/powerset.py`` (``Powerset``: the same class
order, ``mapping``, ``to_multilabel`` and ``to_powerset``), as a plain object (no
``nn.Module`` buffers) whose tensors follow the device and dtype of their input.
"""

from __future__ import annotations

from functools import cached_property
from itertools import combinations
from typing import Optional

import torch

from audiotask.core.specifications import Problem, Specifications

#: keys of ``Specifications.extra`` of a speaker diarization model (``SpeakerDiarization``)
MAX_SPEAKERS_PER_CHUNK = "max_speakers_per_chunk"
MAX_SPEAKERS_PER_FRAME = "max_speakers_per_frame"
POWERSET = "powerset"
#: name of the powerset class of the empty set (nobody speaks)
NOBODY = "none"


def speaker_sets(num_speakers: int, max_set_size: int) -> list[tuple[int, ...]]:
    """Every set of at most ``max_set_size`` of speakers ``0 .. num_speakers - 1``, as sorted
    tuples, in pyannote.audio's order: by size (the empty set first), then lexicographically."""
    return [members for size in range(max_set_size + 1) for members in combinations(range(num_speakers), size)]


def speaker_set_name(members: tuple[int, ...]) -> str:
    """``"none"`` for the empty set, else the speakers numbered from 1 and joined by "+"
    (``(0, 2)`` -> ``"1+3"``)."""
    return "+".join(str(speaker + 1) for speaker in members) if members else NOBODY


class Powerset:
    """The powerset classes of ``num_speakers`` local speakers, at most ``max_speakers_per_frame``
    of them active in a frame.

    Parameters
    ----------
    num_speakers : int
        Local speakers of a chunk (the model's ``max_speakers_per_chunk``).
    max_speakers_per_frame : int
        Largest set of speakers one class stands for, in ``[1, num_speakers]``.

    Classes are ordered as pyannote.audio orders them (:func:`speaker_sets`) and named by
    :func:`speaker_set_name`: ``["none", "1", "2", "3", "1+2", "1+3", "2+3"]`` for (3, 2).
    """

    def __init__(self, num_speakers: int, max_speakers_per_frame: int):
        self.num_speakers, self.max_speakers_per_frame = int(num_speakers), int(max_speakers_per_frame)
        if self.num_speakers < 1 or not 1 <= self.max_speakers_per_frame <= self.num_speakers:
            raise ValueError(
                f"Powerset: max_speakers_per_frame ({max_speakers_per_frame}) must be in [1, num_speakers] and "
                f"num_speakers ({num_speakers}) at least 1."
            )
        #: the speakers of each class, class by class
        self.sets = speaker_sets(self.num_speakers, self.max_speakers_per_frame)

    def __repr__(self) -> str:
        return f"Powerset(num_speakers={self.num_speakers}, max_speakers_per_frame={self.max_speakers_per_frame})"

    @property
    def num_classes(self) -> int:
        """Number of powerset classes (7 for 3 speakers, at most 2 at once)."""
        return len(self.sets)

    @property
    def class_names(self) -> list[str]:
        """Names of the classes, in order: ``"none"``, ``"1"``, ..., ``"1+2"``, ..."""
        return [speaker_set_name(members) for members in self.sets]

    @cached_property
    def mapping(self) -> torch.Tensor:
        """(classes, speakers) float32 {0, 1}: row c is 1 for the speakers of class c."""
        mapping = torch.zeros(self.num_classes, self.num_speakers)
        for index, members in enumerate(self.sets):
            mapping[index, list(members)] = 1.0
        return mapping

    @cached_property
    def cardinality(self) -> torch.Tensor:
        """(classes,) int64: how many speakers each class stands for."""
        return self.mapping.sum(dim=1).long()

    def _mapping_like(self, tensor: torch.Tensor) -> torch.Tensor:
        dtype = tensor.dtype if tensor.is_floating_point() else torch.float32
        return self.mapping.to(device=tensor.device, dtype=dtype)

    def to_multilabel(self, powerset: torch.Tensor, soft: bool = False) -> torch.Tensor:
        """(..., classes) powerset scores -> (..., speakers) speaker activity.

        Hard (default): the speakers of the class of highest score, 0 or 1 (logits or
        probabilities: their argmax is the same). ``soft``: each speaker's probability of
        being active, the sum of the probabilities of the classes it belongs to; the scores
        must then be probabilities (the softmax of the logits, which is what inference returns).
        """
        if powerset.shape[-1] != self.num_classes:
            raise ValueError(f"{self!r}: expected (..., {self.num_classes}) powerset scores, got {tuple(powerset.shape)}.")
        mapping = self._mapping_like(powerset)
        if soft:
            return powerset.to(mapping.dtype) @ mapping
        return mapping[powerset.argmax(dim=-1)]  # one-hot of the argmax times the mapping: its row

    def class_index(self, multilabel: torch.Tensor) -> torch.Tensor:
        """(..., speakers) {0, 1} activity -> (..., ) int64 index of its powerset class.

        As pyannote.audio decides: the class whose speakers overlap the active ones most,
        the first in class order on ties. A set the powerset holds is its own class; a frame
        with more active speakers than ``max_speakers_per_frame`` gets the first set of that
        many of them (speakers 1, 2, 3 of (3, 2): ``"1+2"``).
        """
        if multilabel.shape[-1] != self.num_speakers:
            raise ValueError(f"{self!r}: expected (..., {self.num_speakers}) speaker activity, got {tuple(multilabel.shape)}.")
        mapping = self._mapping_like(multilabel)
        # torch.argmax returns the first of equal maxima: the smallest (then first) set holding them
        return (multilabel.to(mapping.dtype) @ mapping.T).argmax(dim=-1)

    def to_powerset(self, multilabel: torch.Tensor) -> torch.Tensor:
        """(..., speakers) {0, 1} activity -> (..., classes) int64 one-hot powerset classes
        (pyannote.audio's ``to_powerset``; the class is :meth:`class_index`'s)."""
        return torch.nn.functional.one_hot(self.class_index(multilabel), num_classes=self.num_classes)


# ---- reading a saved diarization model's outputs -----------------------------------------
def of_specifications(specifications: Specifications) -> Optional[Powerset]:
    """The :class:`Powerset` of a speaker diarization model's outputs, from the
    ``max_speakers_per_chunk``, ``max_speakers_per_frame`` and ``powerset`` of its
    specifications' ``extra``; None for the multi-label formulation (one output per speaker).

    Raises ValueError for specifications of another task (no ``max_speakers_per_chunk``).
    """
    extra = specifications.extra
    if MAX_SPEAKERS_PER_CHUNK not in extra:
        raise ValueError(f"specifications of task {specifications.task_name!r} are not a speaker diarization "
                         f"model's: their extra has no {MAX_SPEAKERS_PER_CHUNK!r}.")
    if not extra.get(POWERSET, False):
        return None
    powerset = Powerset(extra[MAX_SPEAKERS_PER_CHUNK], extra[MAX_SPEAKERS_PER_FRAME])
    if specifications.problem is not Problem.MONO_LABEL_CLASSIFICATION or specifications.num_outputs != powerset.num_classes:
        raise ValueError(f"powerset specifications with {specifications.num_outputs} {specifications.problem.name} "
                         f"outputs: {powerset!r} has {powerset.num_classes} classes.")
    return powerset


def speaker_activity(specifications: Specifications, scores: torch.Tensor, soft: bool = False) -> torch.Tensor:
    """(..., outputs) scores of a speaker diarization model (after its activation, as
    inference returns them) -> (..., max_speakers_per_chunk) local speaker activity.

    Powerset models: :meth:`Powerset.to_multilabel` (hard 0/1 by default; ``soft``: each
    speaker's probability). Multi-label models: the scores are already one probability per
    speaker (``soft``), or are thresholded at 0.5 (hard).
    """
    powerset = of_specifications(specifications)
    if powerset is not None:
        return powerset.to_multilabel(scores, soft=soft)
    return scores if soft else (scores > 0.5).to(scores.dtype if scores.is_floating_point() else torch.float32)
