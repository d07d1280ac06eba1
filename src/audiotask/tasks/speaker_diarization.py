"""Speaker diarization: who speaks when in each chunk, among the chunk's local speakers.

The model segments a short chunk into the activity of its local speakers (at most
``max_speakers_per_chunk``; see ``engine/local_speakers.py``), whose order is arbitrary:
the loss and the metric take, chunk by chunk, the permutation of the reference speakers
that suits the model best. Two formulations, as in pyannote.audio's
``pyannote/audio/tasks/segmentation/speaker_diarization.py``:

- powerset (default): one mono-label decision per frame among the sets of at most
  ``max_speakers_per_frame`` speakers (``core/powerset.py``), cross-entropy;
- multi-label: one binary output per local speaker, binary cross-entropy.

Validation computes the local diarization error rate of the epoch's development chunks
(pyannote.audio's ``pyannote/audio/torchmetrics/functional/audio/diarization_error_rate.py``:
false alarm, missed detection and confusion frames over reference speech frames, each chunk
under its best permutation), logged as ``val/der`` and kept lowest.

Where this differs from pyannote.audio: the permutation of the loss is the one that
minimises the loss itself (every permutation is tried, vectorised: 6 for 3 speakers),
where pyannote.audio's is the Hungarian assignment of least mean squared error to the
(hard, for the powerset) predictions; the metric's permutation is the one of least error
(for hard predictions it is the same), and multi-label outputs are thresholded at 0.5
(pyannote.audio reports the error at its best threshold).
"""

from __future__ import annotations

from itertools import permutations
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric

from audiotask.core import objectives
from audiotask.core.powerset import MAX_SPEAKERS_PER_CHUNK, MAX_SPEAKERS_PER_FRAME, POWERSET, Powerset
from audiotask.core.specifications import TASK_NAME, Problem, Resolution, Specifications
from audiotask.engine.annotated_task import AnnotatedTask
from audiotask.engine.builders import TargetBuilder
from audiotask.engine.local_speakers import LocalSpeakers

#: name of the validation metric (logged as ``val/der``, its parts as ``val/der/<part>``)
DER = "der"
#: most local speakers per chunk: the loss tries every permutation (720 for 6 speakers; the
#: powerset loss holds a (chunks, frames, permutations) table, 5040 wide for 7)
MAX_SPEAKERS_PER_CHUNK_LIMIT = 6


# ---- permutations ----------------------------------------------------------------------
def speaker_permutations(num_speakers: int, device=None) -> torch.Tensor:
    """(num_speakers!, num_speakers) int64: every order of the speakers, the identity first."""
    return torch.tensor(list(permutations(range(num_speakers))), dtype=torch.long, device=device).reshape(
        -1, num_speakers)


def permutation_totals(pairwise: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """(chunks, orders) sum of ``pairwise[b, orders[p, k], k]`` over k: the total of pairing
    output ``orders[p, k]`` with reference speaker k, from (chunks, outputs, speakers) ``pairwise``."""
    speakers = torch.arange(orders.shape[1], device=pairwise.device)
    return pairwise[:, orders, speakers].sum(dim=-1)


def permute_speakers(activity: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """(chunks, frames, speakers) -> (chunks, frames, orders, speakers): speaker k of order p
    is speaker ``orders[p, k]`` of ``activity``."""
    return activity[:, :, orders]


def counted_frames(weights: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """(chunks, frames) weight of each frame: ``weights``, or ones shaped as ``like``'s first two axes."""
    if weights is None:
        return torch.ones(like.shape[:2], device=like.device, dtype=like.dtype)
    return weights.to(device=like.device, dtype=like.dtype)


# ---- losses ----------------------------------------------------------------------------
def permutation_invariant_bce(
    logits: torch.Tensor, target: torch.Tensor, weights: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, best orders)``: the binary cross-entropy of (chunks, frames, speakers)
    ``logits`` against ``target`` under, chunk by chunk, the order of the outputs that
    minimises it; the mean over the frames that count (``weights`` (chunks, frames)) and the
    speakers. ``best orders`` (chunks, speakers): output ``orders[b, k]`` plays speaker k.

    Exact over every permutation: the loss separates over (output, speaker) pairs, so the
    (chunks, outputs, speakers) table of pair costs is computed once and each permutation
    sums one entry per speaker.
    """
    target = target.to(logits.dtype)
    weights = counted_frames(weights, logits)
    # BCE with logits x and target t: softplus(x) - x t, summed over frames for every pair
    pairwise = (torch.einsum("bf,bfj->bj", weights, F.softplus(logits))[:, :, None]
                - torch.einsum("bf,bfj,bfk->bjk", weights, logits, target))
    orders = speaker_permutations(logits.shape[-1], logits.device)
    best, index = permutation_totals(pairwise, orders).min(dim=1)
    return best.sum() / (weights.sum() * logits.shape[-1]).clamp_min(1e-8), orders[index]


def permutation_invariant_powerset_loss(
    logits: torch.Tensor, target: torch.Tensor, powerset: Powerset, weights: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, best orders)``: the cross-entropy of (chunks, frames, classes) powerset
    ``logits`` against the powerset classes of (chunks, frames, speakers) ``target``, under,
    chunk by chunk, the order of the reference speakers that minimises it; the mean over
    the frames that count (``weights`` (chunks, frames)). ``best orders`` (chunks, speakers):
    reference speaker ``orders[b, k]`` is the model's speaker k.
    """
    weights = counted_frames(weights, logits)
    orders = speaker_permutations(target.shape[-1], logits.device)
    classes = powerset.class_index(permute_speakers(target.to(logits.dtype), orders))  # (chunks, frames, orders)
    nll = -torch.gather(F.log_softmax(logits, dim=-1), -1, classes)
    best, index = torch.einsum("bfp,bf->bp", nll, weights).min(dim=1)
    return best.sum() / weights.sum().clamp_min(1e-8), orders[index]


# ---- the local diarization error rate ----------------------------------------------------
def diarization_errors(
    hypothesis: torch.Tensor, reference: torch.Tensor, weights: Optional[torch.Tensor] = None
) -> dict[str, torch.Tensor]:
    """Frames of false alarm, missed detection and confusion, and of reference speech, of
    (chunks, frames, speakers) {0, 1} ``hypothesis`` against ``reference``, each chunk under
    the order of the hypothesis speakers with the fewest errors; (chunks,) tensors.

    Per frame, as pyannote.audio's ``_der_update``: with n_hyp and n_ref active speakers,
    false alarm max(0, n_hyp - n_ref), missed detection max(0, n_ref - n_hyp), confusion
    min(n_hyp, n_ref) minus the speakers active in both; speech n_ref. Only the confusion
    depends on the order: the best one pairs the most co-active frames.
    """
    hypothesis, reference = hypothesis.float(), reference.float()
    weights = counted_frames(weights, hypothesis)
    n_hyp, n_ref = hypothesis.sum(dim=-1), reference.sum(dim=-1)
    orders = speaker_permutations(hypothesis.shape[-1], hypothesis.device)
    co_active = torch.einsum("bf,bfj,bfk->bjk", weights, hypothesis, reference)
    matched = permutation_totals(co_active, orders).max(dim=1).values

    def total(per_frame: torch.Tensor) -> torch.Tensor:
        return (per_frame * weights).sum(dim=1)

    return {
        "false_alarm": total((n_hyp - n_ref).clamp_min(0)),
        "missed_detection": total((n_ref - n_hyp).clamp_min(0)),
        "confusion": total(torch.minimum(n_hyp, n_ref)) - matched,
        "speech": total(n_ref),
    }


class LocalDiarizationErrorRate(Metric):
    """Diarization error rate of chunks, each under its best permutation of speakers:
    (false alarm + missed detection + confusion) / reference speech, in frames summed over
    every chunk updated (pyannote.audio's torchmetrics ``DiarizationErrorRate``).

    :meth:`compute` returns ``{"der": ..., "false_alarm": ..., "missed_detection": ...,
    "confusion": ...}``, each part as a share of the reference speech.
    """

    full_state_update = False
    higher_is_better = False
    PARTS = ("false_alarm", "missed_detection", "confusion", "speech")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for part in self.PARTS:
            self.add_state(part, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, hypothesis: torch.Tensor, reference: torch.Tensor, weights: Optional[torch.Tensor] = None) -> None:
        """(chunks, frames, speakers) {0, 1} activity; ``weights`` (chunks, frames) of the frames that count."""
        for part, value in diarization_errors(hypothesis, reference, weights).items():
            setattr(self, part, getattr(self, part) + value.sum().double())

    def compute(self) -> dict[str, torch.Tensor]:
        speech = self.speech + 1e-8  # pyannote.audio's: no speech scores its false alarms enormously
        parts = {part: getattr(self, part) / speech for part in self.PARTS[:3]}
        return {DER: sum(parts.values()), **parts}


# ---- the task ----------------------------------------------------------------------------
class SpeakerDiarization(AnnotatedTask):
    """FRAME-resolution segmentation of each chunk into its local speakers.

    The protocol's annotation labels are speakers (an RTTM), counted as tracks (two turns of
    one speaker are one speaker); they are no class: the classes are the local speakers
    (multi-label: ``"1"``, ``"2"``...) or their powerset (``"none"``, ``"1"``, ..., ``"1+2"``...).

    Parameters
    ----------
    protocol : pyannote.database Protocol
    duration : float
        Chunk duration, in seconds.
    max_speakers_per_chunk : int
        Local speakers per chunk: the most active are kept (see ``engine/local_speakers.py``);
        at most :data:`MAX_SPEAKERS_PER_CHUNK_LIMIT`.
    max_speakers_per_frame : int
        Most speakers active at once that the powerset stands for (frames with more are
        taught as the first set of that many, as pyannote.audio does); unused by the
        multi-label formulation, which can say any number.
    powerset : bool
        The powerset formulation (mono-label over speaker sets, cross-entropy), else the
        multi-label one (one sigmoid per speaker, binary cross-entropy).
    Other parameters are :class:`~audiotask.engine.annotated_task.AnnotatedTask`'s.

    The saved model's ``specifications.extra`` holds ``max_speakers_per_chunk``,
    ``max_speakers_per_frame`` and ``powerset``: ``core.powerset.speaker_activity`` turns its
    scores into (frames, local speakers) activity.
    """

    resolution = Resolution.FRAME
    labels_are_classes = False  # labels are speakers, counted as tracks
    task_name = "speaker-diarization"

    def __init__(
        self,
        protocol,
        *,
        duration: float = 5.0,
        max_speakers_per_chunk: int = 3,
        max_speakers_per_frame: int = 2,
        powerset: bool = True,
        **kwargs,
    ):
        self.max_speakers_per_chunk, self.max_speakers_per_frame = int(max_speakers_per_chunk), int(max_speakers_per_frame)
        if self.max_speakers_per_chunk < 1 or not 1 <= self.max_speakers_per_frame <= self.max_speakers_per_chunk:
            raise ValueError(
                f"SpeakerDiarization: max_speakers_per_frame ({max_speakers_per_frame}) must be in [1, "
                f"max_speakers_per_chunk ({max_speakers_per_chunk})]."
            )
        if self.max_speakers_per_chunk > MAX_SPEAKERS_PER_CHUNK_LIMIT:
            raise ValueError(
                f"SpeakerDiarization: max_speakers_per_chunk {max_speakers_per_chunk} is more than "
                f"{MAX_SPEAKERS_PER_CHUNK_LIMIT}: the permutation-invariant loss tries every order of the speakers "
                "(shorter chunks hold fewer speakers)."
            )
        self.powerset = Powerset(self.max_speakers_per_chunk, self.max_speakers_per_frame) if powerset else None
        self.problem = Problem.MONO_LABEL_CLASSIFICATION if powerset else Problem.MULTI_LABEL_CLASSIFICATION
        super().__init__(protocol, duration=duration, **kwargs)

    # ---- specifications and targets --------------------------------------------------
    def known_classes(self) -> list[str]:
        if self.powerset is not None:
            return self.powerset.class_names
        return [str(speaker + 1) for speaker in range(self.max_speakers_per_chunk)]

    def label_classes(self, labels: list[str], classes: list[str]) -> np.ndarray:
        # speakers are never classes, even one named "1"
        return np.full(len(labels), -1, dtype=np.int64)

    def make_specifications(self, classes: list[str]) -> Specifications:
        return Specifications(
            problem=self.problem, resolution=self.resolution, duration=self.duration, min_duration=self.min_duration,
            warm_up=self.warm_up, classes=classes, permutation_invariant=True,
            extra={TASK_NAME: self.task_name, MAX_SPEAKERS_PER_CHUNK: self.max_speakers_per_chunk,
                   MAX_SPEAKERS_PER_FRAME: self.max_speakers_per_frame, POWERSET: self.powerset is not None},
        )

    def target_builders(self) -> list[TargetBuilder]:
        return [LocalSpeakers(self.max_speakers_per_chunk)]

    # ---- loss --------------------------------------------------------------------------
    def frame_weights(self, y_pred: torch.Tensor, duration: Optional[float], mask=None, weight=None):
        """(chunks, frames) weights of the frames that count (warm-up, ``mask``, ``weight``), or None."""
        return objectives.entry_weights(y_pred[..., 0], mask=mask, weight=weight,
                                        frame_weight=self.frame_weight(y_pred.shape[1], duration))

    def compute_loss(
        self, y_pred: torch.Tensor, y: torch.Tensor, duration: Optional[float] = None, *,
        mask: Optional[torch.Tensor] = None, weight: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The permutation-invariant loss of the formulation (powerset cross-entropy, or
        binary cross-entropy), over the frames that count."""
        objectives.check_output_shape(self.specifications, y_pred)
        weights = self.frame_weights(y_pred, duration, mask, weight)
        if self.powerset is not None:
            return permutation_invariant_powerset_loss(y_pred, y, self.powerset, weights)[0]
        return permutation_invariant_bce(y_pred, y, weights)[0]

    # ---- validation --------------------------------------------------------------------
    @property
    def monitor(self) -> tuple[str, str]:
        return (f"val/{DER}", "min") if self.has_validation else super().monitor

    def setup_metrics(self, model) -> None:
        self._validation_metric = (DER, LocalDiarizationErrorRate().to(model.device))

    def speaker_activity(self, y_pred: torch.Tensor) -> torch.Tensor:
        """(chunks, frames, speakers) {0, 1} decisions of the model's (chunks, frames, outputs) logits."""
        if self.powerset is not None:
            return self.powerset.to_multilabel(y_pred)
        return (y_pred > 0).float()  # sigmoid above 0.5

    def validate_outputs(self, y_pred: torch.Tensor, batch: dict):
        """Log the validation loss of ``y_pred`` on ``batch`` and add its chunks to the local DER."""
        duration = self.chunk_duration(batch["X"])
        mask, weight = batch.get("mask"), batch.get("weight")
        loss = self.compute_loss(y_pred, batch["y"], duration, mask=mask, weight=weight)
        self.log_validation_loss(loss, batch)  # samples another rank validates too count for nothing
        name, metric = self._validation_metric
        weights = self.frame_weights(y_pred, duration, mask)  # per-sample weights train, the metric counts frames
        metric.to(y_pred.device).update(self.speaker_activity(y_pred), batch["y"], weights)
        return {"loss": loss}

    def on_validation_epoch_end(self) -> None:
        name, metric = self._validation_metric
        if metric is None or not metric.update_called:
            return
        for part, value in metric.compute().items():
            self.model.log(f"val/{DER}" if part == DER else f"val/{DER}/{part}", value.float(), prog_bar=part == DER)
        metric.reset()
