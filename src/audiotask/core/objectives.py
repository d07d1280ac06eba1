"""Loss, activation and validation metric, derived from a task's specifications.

One shared path: a task declares its ``Specifications``; the model's activation, the
default training loss and the default validation metric all come from here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from audiotask.core.specifications import Problem, Resolution, Specifications

#: target value of entries a metric leaves out (masked)
IGNORE = -100


def activation(specifications: Specifications, logits: torch.Tensor) -> torch.Tensor:
    """Logits -> scores: sigmoid (binary, multi-label), softmax (mono-label), identity otherwise."""
    if specifications.problem in (Problem.BINARY_CLASSIFICATION, Problem.MULTI_LABEL_CLASSIFICATION):
        return torch.sigmoid(logits)
    if specifications.problem is Problem.MONO_LABEL_CLASSIFICATION:
        return torch.softmax(logits, dim=-1)
    return logits


def check_output_shape(specifications: Specifications, y_pred: torch.Tensor) -> None:
    """Raise if ``y_pred`` is not (batch, classes) for CHUNK or (batch, frames, classes) for FRAME."""
    expected = 3 if specifications.resolution is Resolution.FRAME else 2
    layout = "(batch, frames, classes)" if expected == 3 else "(batch, classes)"
    if y_pred.ndim != expected or y_pred.shape[-1] != specifications.num_outputs:
        raise ValueError(
            f"{specifications.resolution.name} model output must be {layout} with "
            f"{specifications.num_outputs} classes, got shape {tuple(y_pred.shape)}."
        )


def elementwise_loss(specifications: Specifications, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unreduced loss: (batch[, frames], classes) for binary, multi-label and regression
    outputs, (batch[, frames]) for mono-label ones (one class per entry).

    ``y`` holds {0, 1} targets (binary: with or without the trailing class axis;
    multi-label: one column per class), class indices (mono-label), or values (regression).
    """
    check_output_shape(specifications, y_pred)
    problem = specifications.problem
    if problem is Problem.MONO_LABEL_CLASSIFICATION:
        return F.cross_entropy(y_pred.movedim(-1, 1), y.long(), reduction="none")
    y = y.reshape(y_pred.shape).to(y_pred.dtype)
    if problem in (Problem.BINARY_CLASSIFICATION, Problem.MULTI_LABEL_CLASSIFICATION):
        return F.binary_cross_entropy_with_logits(y_pred, y, reduction="none")
    if problem is Problem.REGRESSION:
        return F.mse_loss(y_pred, y, reduction="none")
    raise NotImplementedError(
        f"No default loss for {problem.name}: override the task's training_step and validation_step."
    )


def broadcast_mask(mask: torch.Tensor, shape: torch.Size, name: str = "mask") -> torch.Tensor:
    """``mask`` aligned on the leading axes of ``shape`` and expanded to it.

    (batch,) masks samples, (batch, frames) frames, (batch, 1, classes) or (batch, classes)
    for a CHUNK output classes: missing trailing axes broadcast.
    """
    if mask.ndim > len(shape):
        raise ValueError(f"{name} of shape {tuple(mask.shape)} has more axes than the loss {tuple(shape)}.")
    aligned = mask.reshape(*mask.shape, *([1] * (len(shape) - mask.ndim)))
    try:
        return aligned.expand(shape)
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(mask.shape)} does not fit the loss {tuple(shape)}.") from None


def entry_weights(loss: torch.Tensor, *, mask=None, weight=None, frame_weight=None) -> torch.Tensor | None:
    """Weight of every loss entry: ``mask`` (entries that count), per-sample ``weight``
    (batch,) and per-frame ``frame_weight`` (frames,) multiplied; None when all are None."""
    total = None
    for factor, name in ((mask, "mask"), (weight, "weight")):
        if factor is not None:
            factor = broadcast_mask(factor.to(loss.device, loss.dtype), loss.shape, name)
            total = factor if total is None else total * factor
    if frame_weight is not None and loss.ndim >= 2:
        factor = frame_weight.to(loss.device, loss.dtype).reshape(1, -1, *([1] * (loss.ndim - 2))).expand(loss.shape)
        total = factor if total is None else total * factor
    return total


def reduce_loss(loss: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of an elementwise loss over the entries that count (weighted by ``weights``)."""
    if weights is None:
        return loss.mean()
    return (loss * weights).sum() / weights.sum().clamp_min(1e-8)


def validation_metric(specifications: Specifications):
    """torchmetrics metric used by the default validation step, and the name it is logged under."""
    import torchmetrics.classification as classification
    from torchmetrics import MeanSquaredError

    problem = specifications.problem
    # masked entries arrive with the target IGNORE (see metric_inputs)
    if problem is Problem.BINARY_CLASSIFICATION:
        return "auroc", classification.BinaryAUROC(ignore_index=IGNORE)
    if problem is Problem.MULTI_LABEL_CLASSIFICATION:
        return "auroc", classification.MultilabelAUROC(
            num_labels=specifications.num_outputs, average="macro", ignore_index=IGNORE
        )
    if problem is Problem.MONO_LABEL_CLASSIFICATION:
        return "accuracy", classification.MulticlassAccuracy(
            num_classes=specifications.num_outputs, average="macro", ignore_index=IGNORE
        )
    if problem is Problem.REGRESSION:
        return "mse", MeanSquaredError()
    return None, None


def metric_inputs(specifications: Specifications, y_pred: torch.Tensor, y: torch.Tensor, mask=None):
    """Flatten (batch[, frames], classes) predictions and targets into what the metric expects.

    Entries where ``mask`` (broadcast as in :func:`broadcast_mask`) is 0 are left out:
    targets become :data:`IGNORE` (ignored by the classification metrics), or are dropped
    for regression.
    """
    scores = activation(specifications, y_pred)
    problem = specifications.problem
    if problem is Problem.MONO_LABEL_CLASSIFICATION:
        scores, y = scores.reshape(-1, scores.shape[-1]), y.reshape(-1).long()
        if mask is not None:
            mask = mask.all(dim=-1) if mask.ndim == y_pred.ndim else mask  # one entry per (sample, frame)
            y = y.masked_fill(~broadcast_mask(mask.bool(), y_pred.shape[:-1]).reshape(-1), IGNORE)
        return scores, y
    y = y.reshape(scores.shape)
    keep = None if mask is None else broadcast_mask(mask.to(scores.device).bool(), scores.shape)
    if problem is Problem.REGRESSION:
        if keep is not None:
            return scores[keep], y[keep].to(scores.dtype)
        return scores.reshape(-1), y.reshape(-1).to(scores.dtype)
    y = y.long() if keep is None else y.long().masked_fill(~keep, IGNORE)
    if problem is Problem.MULTI_LABEL_CLASSIFICATION:
        return scores.reshape(-1, scores.shape[-1]), y.reshape(-1, scores.shape[-1])
    return scores.reshape(-1), y.reshape(-1)
