"""DCASE's recipe for sound event detection at FRAME resolution.

What ``SoundEventDetection(protocol, resolution="frame")`` trains, as DCASE's baseline does:
batches unite strongly labelled, weakly labelled and unlabelled files (1 : 1 : 2 by
default); the model gives a frame output and a clip output (pooled from the frames); strong
files train the frame output, weak files the clip output; a mean teacher's consistency loss
teaches from every file (``teacher.py``); training batches are augmented (mixup,
FilterAugment...: ``augmentation/recipe.py``), optionally completed with soundscapes mixed
on the fly (``mixing.py``); and the kept checkpoint is the one with the best PSDS on the
development set, of the one network validation scores (``validation.py``).
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch

from audiotask.augmentation.draws import step_generator
from audiotask.augmentation.recipe import DetectionAugmentation
from audiotask.core import objectives
from audiotask.core.specifications import Resolution
from audiotask.engine.builders import ChunkTags, FrameClasses, LabelKindMasks
from audiotask.engine.preparation import STRONG, UNLABELLED, WEAK
from audiotask.tasks.sed.mixing import DynamicMixing, SoundscapeMixer
from audiotask.tasks.sed.task import DCASE_PROPORTIONS, SoundEventDetection
from audiotask.tasks.sed.teacher import MeanTeacher, consistency_loss
from audiotask.tasks.sed.validation import SELECTION_SCORES, DetectionScores


def clip_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of (batch, classes) clip logits over the rows where ``mask`` (batch,) is 1."""
    import torch.nn.functional as F

    loss = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return objectives.reduce_loss(loss, objectives.entry_weights(loss, mask=mask))


def has_spectrogram(model) -> bool:
    """Whether ``model`` exposes its log-mel front end and a clip output (as ``CRNN`` does):
    then training augments its spectrogram and trains its own clip output."""
    return hasattr(model, "forward_spectrogram") and hasattr(model, "spectrogram")


def outputs(model, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(frame logits, clip logits)`` of a FRAME model: from its spectrogram and clip output,
    or, for a model without them, from waveforms, the clip logit being the frames' largest."""
    if has_spectrogram(model):
        return model.forward_spectrogram(inputs, clip=True)
    frame_logits = model(inputs)
    return frame_logits, frame_logits.amax(dim=1)


class DetectionRecipe(SoundEventDetection):
    """Sound event detection at FRAME resolution, trained by DCASE's recipe.

    Made by ``SoundEventDetection(protocol, resolution="frame", ...)``; the parameters
    besides those of :class:`~audiotask.tasks.sed.task.SoundEventDetection`:

    Parameters
    ----------
    kind_proportions : {label kind: share}, optional
        Shares of strong, weak and unlabelled files in each batch (default
        :data:`DCASE_PROPORTIONS`; kinds the training set lacks give theirs to the others).
    augmentation : DetectionAugmentation, optional
        The batches' augmentation (default: ``DetectionAugmentation()``); use
        ``DetectionAugmentation.none()`` for none. A waveform callable (the base ``Task``'s
        convention) augments waveforms only.
    mean_teacher : bool, optional
        Train with a mean teacher (consistency loss on frame and clip outputs). By default
        (None), where the training set has weakly labelled or unlabelled files: on a set that
        is all strongly labelled the teacher costs a third more per step (a second network
        forward) and has nothing to teach from that the labels do not say.
    teacher_decay, consistency_weight, consistency_ramp_up :
        The teacher's EMA decay, the largest weight of the consistency loss and the
        optimiser steps of its ramp-up. DCASE's baseline uses a decay of 0.999 over tens of
        thousands of steps; 0.99 (a memory of about 100 steps) suits runs of a few thousand.
    mixing : DynamicMixing, optional
        Fill ``mixing.share`` of each training batch with soundscapes mixed on the fly from
        isolated event clips (see ``tasks/sed/mixing.py``).
    select_by : "psds1", "psds2" or "loss"
        What validation keeps the best checkpoint by.
    """

    label_kinds = (STRONG, WEAK, UNLABELLED)
    validation_label_kinds = (STRONG,)
    validation_indices = True  # which chunks a validation batch holds (see DetectionScores)

    def __init__(
        self,
        protocol,
        classes: Optional[Sequence[str]] = None,
        resolution: Resolution | str = Resolution.FRAME,
        duration: float = 5.0,
        *,
        kind_proportions: Optional[dict[str, float]] = None,
        augmentation=None,
        mean_teacher: Optional[bool] = None,
        teacher_decay: float = 0.99,
        consistency_weight: float = 2.0,
        consistency_ramp_up: int = 1000,
        mixing: Optional[DynamicMixing] = None,
        select_by: str = "psds1",
        **kwargs,
    ):
        if Resolution(resolution) is not Resolution.FRAME:
            raise ValueError("DetectionRecipe: DCASE's recipe makes frame decisions (resolution FRAME).")
        if select_by not in (*SELECTION_SCORES, "loss"):
            raise ValueError(f"SoundEventDetection: select_by must be one of {(*SELECTION_SCORES, 'loss')}, "
                             f"got {select_by!r}.")
        if kind_proportions is None and (kwargs.get("min_duration") or duration) >= duration:
            # (chunks of varying duration cannot unite kinds in one batch: then drawn alike)
            kind_proportions = DCASE_PROPORTIONS
        self.recipe = augmentation if augmentation is not None else DetectionAugmentation()
        if not isinstance(self.recipe, DetectionAugmentation):
            # a waveform augmentation of the user's (torch-audiomentations convention): that only
            kwargs["augmentation"], self.recipe = self.recipe, DetectionAugmentation.none()
        super().__init__(protocol, classes, resolution, duration, kind_proportions=kind_proportions, **kwargs)
        self._mean_teacher_option = mean_teacher
        self.mean_teacher = bool(mean_teacher)  # decided in setup when None
        self.teacher_options = dict(decay=teacher_decay, weight=consistency_weight, ramp_up=consistency_ramp_up)
        self.mixing = mixing
        self.select_by = select_by
        self.teacher: Optional[MeanTeacher] = None
        self._teacher_state: Optional[dict] = None  # from a checkpoint, until the teacher exists
        self._mixer: Optional[SoundscapeMixer] = None
        self.kept_network = "student"

    def setup(self, stage: Optional[str] = None) -> None:
        super().setup(stage)
        if self._mean_teacher_option is None:
            kinds = set(self.metadata.subsets["train"].attribute("label_kind")[self.usable_files("train")].tolist())
            self.mean_teacher = bool(kinds - {STRONG})

    @property
    def monitor(self) -> tuple[str, str]:
        if self.select_by == "loss" or not self.has_validation:
            return super().monitor
        return f"val/{self.select_by}", "max"

    # ---- batches -----------------------------------------------------------------------
    def target_builders(self):
        # frame targets from strong labels, clip targets from strong and weak ones, and which
        # rows each output learns from
        return [FrameClasses("y"), ChunkTags("y_clip"), LabelKindMasks("mask", "mask_clip")]

    def sampled_rows(self) -> int:
        return self.batch_size - self.mixed_rows()

    def mixed_rows(self) -> int:
        """Rows of each training batch mixed on the fly (``mixing.share`` of the batch)."""
        if self.mixing is None:
            return 0
        return min(self.batch_size - 1, max(1, int(round(self.mixing.share * self.batch_size))))

    def soundscape_mixer(self) -> SoundscapeMixer:
        if self._mixer is None:
            self._mixer = SoundscapeMixer(self.mixing, self.specifications.classes, sample_rate=self.sample_rate,
                                          duration=self.duration)
        return self._mixer

    def extend_batch(self, batch: dict, *, key: tuple[int, ...]) -> dict:
        if self.mixing is None:
            return batch
        mixed = self.soundscape_mixer().batch_rows(self.mixed_rows(), key=key, frames=self.model.frames,
                                                   num_frames=batch["y"].shape[1])
        return {name: torch.cat([batch[name], mixed[name].to(batch[name].dtype)]) for name in batch}

    # ---- training ---------------------------------------------------------------------
    def generator(self, step: int) -> torch.Generator:
        """The augmentation's random source at optimiser step ``step`` (seeded: reproducible, resumable)."""
        return step_generator(step)

    def training_step(self, batch, batch_idx: int):
        model, step = self.model, self.model.global_step
        generator = self.generator(step)
        strong, weak = batch["mask"].bool(), batch["mask_clip"].bool() & ~batch["mask"].bool()
        waveforms = self.recipe.waveforms(self.augment(batch["X"]), sample_rate=self.sample_rate, generator=generator)
        inputs, y, y_clip = waveforms, batch["y"], batch["y_clip"]
        if has_spectrogram(model):
            inputs, y, y_clip = self.recipe.spectrogram(
                model.spectrogram(waveforms), y, y_clip, strong=strong, weak=weak,
                pooling=model.spectrogram_frames_per_output, generator=generator,
                bands=getattr(model, "spectrogram_bands", None),
            )
        frame_logits, clip_logits = outputs(model, inputs)
        # as in DCASE's baseline, strong rows train the frame output and weak rows the clip
        # output: the clip loss on strong rows too cost 0.07 PSDS1 on real recordings, the
        # attention-pooled clip output pulling the frame scores towards the clip's extent
        losses = {
            "frame": self.compute_loss(frame_logits, y, self.chunk_duration(waveforms), mask=batch["mask"]),
            "clip": clip_loss(clip_logits, y_clip, weak),
        }
        loss = losses["frame"] + losses["clip"]
        if self.mean_teacher:
            teacher = self.ensure_teacher()
            with torch.no_grad():
                teacher_outputs = outputs(teacher.model, inputs)
            losses["consistency"] = consistency_loss((frame_logits, clip_logits), teacher_outputs)
            loss = loss + teacher.consistency_weight(step) * losses["consistency"]
        for name, value in losses.items():
            model.log(f"train/{name}", value, on_step=True, on_epoch=False, batch_size=len(waveforms))
        return self.checked_loss(loss, waveforms, batch_idx)

    def ensure_teacher(self) -> MeanTeacher:
        """The mean teacher, made from the model on first use (with a checkpoint's weights, resuming)."""
        if self.teacher is None:
            self.teacher = MeanTeacher(self.model, **self.teacher_options)
            if self._teacher_state is not None:
                self.teacher.load_state_dict(self._teacher_state)
                self._teacher_state = None
        return self.teacher.to(self.model.device)

    def on_optimizer_step(self) -> None:
        if self.mean_teacher:
            self.ensure_teacher().update(self.model, self.model.global_step)

    # ---- validation -------------------------------------------------------------------
    def setup_metrics(self, model) -> None:
        super().setup_metrics(model)
        if self.has_validation:
            self.detections = DetectionScores(self._validation_chunks, self.duration)

    def validation_step(self, batch, batch_idx: int):
        logits = self.model(batch["X"])
        # under DDP, a batch that another rank validates too (a padded share) counts once in
        # the loss and the metric (its chunks are scored once for PSDS: see DetectionScores.add)
        counted = self.counted_validation_batch({key: batch[key] for key in ("X", "y")}, batch_idx)
        output = self.validate_outputs(logits, counted)
        if self.select_by != "loss":
            network, model = self.scored_network()
            if network != "student":
                with torch.no_grad():
                    logits = model(batch["X"].to(self.model.device))
            self.detections.add(network, torch.sigmoid(logits).cpu().numpy(), batch["index"].cpu().numpy())
        return output

    def scored_network(self):
        """``(name, model)`` of the one network validation scores by PSDS: the mean teacher
        when there is one (the smoother of the two), else the student. (Scoring both cost a
        second pass over the development set and a second PSDS at every validation.)"""
        if self.mean_teacher and (self.teacher is not None or self._teacher_state is not None):
            return "teacher", self.ensure_teacher().model
        return "student", self.model

    def networks(self):
        """``(name, model)`` of the networks validation scores (see :meth:`scored_network`)."""
        yield self.scored_network()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.select_by == "loss":
            return
        scenario = int(self.select_by[-1])
        if self.trainer_world_size() > 1:
            # each rank scored its share: every rank gets every share, so that PSDS is that of
            # the whole development set and all ranks keep the same network
            self.detections.gather(self.model.trainer.strategy.reduce, device=self.model.device)
        scores = {network: self.detections.psds(self, network, scenario=scenario) for network, _ in self.networks()}
        self.detections.reset()
        if all(value is None for value in scores.values()):
            warnings.warn(f"SoundEventDetection: the development chunks hold no event of the classes: "
                          f"{self.select_by} is logged as 0 and cannot tell checkpoints apart.")
        scores = {network: value or 0.0 for network, value in scores.items()}
        for network, value in scores.items():
            self.model.log(f"val/{self.select_by}_{network}", value)
        self.kept_network = max(scores, key=scores.get)
        self.model.log(f"val/{self.select_by}", scores[self.kept_network], prog_bar=True)

    def __getstate__(self):
        state = super().__getstate__()
        state["teacher"] = None  # dataloader workers make batches, not predictions
        return state

    # ---- checkpoints ------------------------------------------------------------------
    def checkpoint_extras(self) -> dict:
        """The teacher's weights, and which network a checkpoint's model is (see ``Model``)."""
        if self.teacher is None:
            return {}
        return {"teacher_state_dict": self.teacher.state_dict(), "audiotask_kept": self.kept_network}

    def restore_extras(self, checkpoint: dict) -> None:
        state = checkpoint.get("teacher_state_dict")
        if state is not None and self.mean_teacher:
            if self.teacher is None:
                self._teacher_state = state
            else:
                self.teacher.load_state_dict(state)


SoundEventDetection.frame_task = DetectionRecipe
