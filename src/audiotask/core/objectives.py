"""Loss, activation and validation metric, derived from a task's specifications.

One shared path: a task declares its ``Specifications``; the model's activation, the
default training loss and the default validation metric all come from here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from audiotask.core.specifications import Problem, Resolution, Specifications


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
    """Unreduced loss, shape (batch,) for CHUNK or (batch, frames) for FRAME.

    ``y`` holds {0, 1} targets (binary: with or without the trailing class axis;
    multi-label: one column per class), class indices (mono-label), or values (regression).
    """
    check_output_shape(specifications, y_pred)
    problem = specifications.problem
    if problem is Problem.MONO_LABEL_CLASSIFICATION:
        return F.cross_entropy(y_pred.movedim(-1, 1), y.long(), reduction="none")
    y = y.reshape(y_pred.shape).to(y_pred.dtype)
    if problem in (Problem.BINARY_CLASSIFICATION, Problem.MULTI_LABEL_CLASSIFICATION):
        loss = F.binary_cross_entropy_with_logits(y_pred, y, reduction="none")
    elif problem is Problem.REGRESSION:
        loss = F.mse_loss(y_pred, y, reduction="none")
    else:
        raise NotImplementedError(
            f"No default loss for {problem.name}: override the task's training_step and validation_step."
        )
    return loss.mean(dim=-1)


def reduce_loss(loss: torch.Tensor, frame_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of an elementwise loss, frames weighted by ``frame_weight`` (frames,) when given."""
    if frame_weight is None or loss.ndim == 1:
        return loss.mean()
    weight = frame_weight.to(loss.dtype).expand_as(loss)
    return (loss * weight).sum() / weight.sum().clamp_min(1e-8)


def validation_metric(specifications: Specifications):
    """torchmetrics metric used by the default validation step, and the name it is logged under."""
    import torchmetrics.classification as classification
    from torchmetrics import MeanSquaredError

    problem = specifications.problem
    if problem is Problem.BINARY_CLASSIFICATION:
        return "auroc", classification.BinaryAUROC()
    if problem is Problem.MULTI_LABEL_CLASSIFICATION:
        return "auroc", classification.MultilabelAUROC(num_labels=specifications.num_outputs, average="macro")
    if problem is Problem.MONO_LABEL_CLASSIFICATION:
        return "accuracy", classification.MulticlassAccuracy(num_classes=specifications.num_outputs, average="macro")
    if problem is Problem.REGRESSION:
        return "mse", MeanSquaredError()
    return None, None


def metric_inputs(specifications: Specifications, y_pred: torch.Tensor, y: torch.Tensor, frame_mask=None):
    """Flatten (batch[, frames], classes) predictions and targets into what the metric expects."""
    scores = activation(specifications, y_pred)
    if frame_mask is not None and scores.ndim == 3:
        scores = scores[:, frame_mask]
        y = y[:, frame_mask]
    if specifications.problem is Problem.MONO_LABEL_CLASSIFICATION:
        return scores.reshape(-1, scores.shape[-1]), y.reshape(-1).long()
    if specifications.problem is Problem.MULTI_LABEL_CLASSIFICATION:
        return scores.reshape(-1, scores.shape[-1]), y.reshape(-1, scores.shape[-1]).long()
    if specifications.problem is Problem.BINARY_CLASSIFICATION:
        return scores.reshape(-1), y.reshape(-1).long()
    return scores.reshape(-1), y.reshape(-1).to(scores.dtype)
