"""The augmentation a sound event detection task applies to each training batch, as one value.

:class:`DetectionAugmentation` names each augmentation's setting (off with 0, False or None)
and applies them in the DCASE baseline's order: on the waveforms (gain, backgrounds), then
on the log-mel spectrogram with the targets (time shift, mixup), then on the spectrogram
alone (FilterAugment, frequency masking).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor

from audiotask.augmentation.mixup import draw_mixup, mix_rows
from audiotask.augmentation.spectral import filter_augment, frequency_mask, time_mask, time_shift
from audiotask.augmentation.waveform import BackgroundMixer, random_gain


@dataclass
class DetectionAugmentation:
    """Augmentation of sound event detection training batches.

    Parameters
    ----------
    mixup : float
        Chance that a batch is mixed up (DCASE baseline: 0.5): strongly labelled rows with
        each other, weakly labelled rows with each other (labels of two kinds never mix),
        spectrograms and targets alike (soft labels).
    mixup_alpha : float
        ``lambda ~ Beta(alpha, alpha)``.
    filter_augment : bool
        FilterAugment (random gains over random frequency bands, the DCASE 2022+ baseline's).
    frequency_masks : int
        SpecAugment frequency masks per example (0: none), each at most 8 mel bands wide.
    time_masks : int
        SpecAugment time masks per example (0: none), each at most ``time_mask_width`` of
        the chunk wide; the targets are kept.
    time_mask_width : float
        Widest time mask, as a fraction of the chunk.
    time_shift : float
        Largest circular time shift, as a fraction of the chunk (0: none); the frame targets
        move with it by whole output frames.
    gain : float
        Random gain in [-gain, +gain] dB per example (0: none).
    backgrounds : str or Path, optional
        A folder of background recordings to mix under some examples.
    background_snr : (float, float)
        Example-to-background ratio in dB.
    background_probability : float
        Chance that an example gets a background.
    """

    mixup: float = 0.5
    mixup_alpha: float = 0.2
    filter_augment: bool = True
    frequency_masks: int = 0
    time_masks: int = 0
    time_mask_width: float = 0.05
    time_shift: float = 0.0
    gain: float = 0.0
    backgrounds: Optional[Union[str, Path]] = None
    background_snr: tuple[float, float] = (5.0, 20.0)
    background_probability: float = 0.5
    _mixer: Optional[BackgroundMixer] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if not 0.0 <= self.mixup <= 1.0:
            raise ValueError(f"DetectionAugmentation: mixup is a probability in [0, 1], got {self.mixup}.")
        if self.frequency_masks < 0 or self.time_masks < 0 or self.gain < 0 or not 0.0 <= self.time_shift <= 1.0 \
                or not 0.0 <= self.time_mask_width <= 1.0:
            raise ValueError(f"DetectionAugmentation: frequency_masks, time_masks and gain must be >= 0, time_shift "
                             f"and time_mask_width in [0, 1]; got {self}.")

    @classmethod
    def none(cls) -> "DetectionAugmentation":
        """No augmentation at all."""
        return cls(mixup=0.0, filter_augment=False)

    def background_mixer(self, sample_rate: int) -> Optional[BackgroundMixer]:
        """The decoded backgrounds (decoded once, on first use)."""
        if self.backgrounds is None:
            return None
        if self._mixer is None or self._mixer.sample_rate != sample_rate:
            self._mixer = BackgroundMixer(self.backgrounds, sample_rate=sample_rate, snr_range=self.background_snr,
                                          probability=self.background_probability)
        return self._mixer

    def waveforms(self, waveforms: Tensor, *, sample_rate: int, generator: torch.Generator) -> Tensor:
        """(batch, channels, samples) -> the same, with gain and backgrounds."""
        if self.gain > 0:
            waveforms = random_gain(waveforms, db_range=(-self.gain, self.gain), generator=generator)
        mixer = self.background_mixer(sample_rate)
        if mixer is not None:
            waveforms = mixer(waveforms, generator=generator)
        return waveforms

    def spectrogram(
        self, spectrogram: Tensor, frame_targets: Tensor, clip_targets: Tensor, *, strong: Tensor, weak: Tensor,
        pooling: int, generator: torch.Generator, bands: Optional[int] = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Augment log-mel ``(batch, frames, n_mels)`` and its targets ``(batch, output_frames,
        classes)`` / ``(batch, classes)``; ``strong`` / ``weak`` ``(batch,)`` bool say which rows
        have which labels (mixup keeps them apart). ``bands``: the log-mel bands are the first
        ``bands`` of the last axis, other features of each frame following them (a pretrained
        encoder's embeddings): the frequency augmentations touch the bands only."""
        frame_targets, clip_targets = frame_targets.float(), clip_targets.float()
        if self.time_shift > 0:
            spectrogram, frame_targets = time_shift(
                spectrogram, frame_targets, max_shift=self.time_shift, pooling=pooling, generator=generator
            )
        # drawn every batch, used or not: the stream of draws does not depend on the outcome
        chance = float(torch.rand(1, generator=generator))
        if self.mixup > 0 and chance < self.mixup:
            for rows in (strong, weak):
                lam, partners = draw_mixup(rows, alpha=self.mixup_alpha, generator=generator)
                spectrogram, (frame_targets, clip_targets) = mix_rows(
                    spectrogram, [frame_targets, clip_targets], rows, partners, lam
                )
        bands = spectrogram.shape[-1] if bands is None else int(bands)
        log_mel, others = spectrogram[..., :bands], spectrogram[..., bands:]
        if self.filter_augment:
            log_mel = filter_augment(log_mel, generator=generator)
        if self.frequency_masks:
            width = min(8, log_mel.shape[-1])
            log_mel = frequency_mask(log_mel, max_width=width, num_masks=self.frequency_masks, generator=generator)
        spectrogram = torch.cat([log_mel, others], dim=-1) if others.shape[-1] else log_mel
        if self.time_masks:
            width = int(self.time_mask_width * spectrogram.shape[1])
            spectrogram = time_mask(spectrogram, max_width=width, num_masks=self.time_masks, generator=generator)
        return spectrogram, frame_targets, clip_targets
