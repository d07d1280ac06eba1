"""Augmentations of waveforms: random gain and background noise at a random SNR.

Waveforms are ``(batch, channels, samples)``. Every random function draws from its
``generator`` keyword only, so that a seeded generator replays the same augmentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from audiotask.core.audio import decode_mono
from audiotask.protocols.uris import audio_files_in_folder

from .draws import integers, uniform
from .spectral import _check_range

#: RMS at which background noise is added to an all-zero example, whose power gives no
#: reference for an SNR: quiet next to a full-scale signal, yet far from nothing to learn
SILENT_EXAMPLE_NOISE_RMS = 0.1


def _check_waveforms(waveforms: Tensor, name: str) -> None:
    if waveforms.ndim != 3:
        raise ValueError(
            f"{name}: waveforms must be (batch, channels, samples), got shape {tuple(waveforms.shape)}."
        )


def random_gain(
    waveforms: Tensor, *, db_range: tuple[float, float] = (-6.0, 6.0), generator: torch.Generator | None = None
) -> Tensor:
    """Scale each example by a random gain, so that the model does not learn absolute levels.

    Parameters
    ----------
    waveforms : Tensor
        ``(batch, channels, samples)``.
    db_range : (float, float)
        Gain in dB (of amplitude: ``10 ** (gain / 20)``), uniform in this range, one per example.
    generator : torch.Generator, optional
        Source of every random draw.
    """
    _check_waveforms(waveforms, "random_gain")
    low, high = _check_range(db_range, "random_gain: db_range")
    gains_db = uniform((waveforms.shape[0],), low, high, generator=generator)
    return waveforms * (10.0 ** (gains_db / 20.0)).to(waveforms)[:, None, None]


def mix_at_snr(signal: Tensor, noise: Tensor, snr_db: float | Tensor) -> Tensor:
    """``signal + scale * noise``, ``scale`` chosen so that power(signal) / power(scaled noise) is ``snr_db``.

    Powers are mean squares over channels and samples of each example. An all-zero example
    has no level to be relative to: it gets the noise at RMS :data:`SILENT_EXAMPLE_NOISE_RMS`.
    All-zero noise adds nothing.

    Parameters
    ----------
    signal : Tensor
        ``(batch, channels, samples)``.
    noise : Tensor
        ``(batch, 1 or channels, samples)``; a single channel is added to every channel.
    snr_db : float or Tensor
        Signal-to-noise ratio in dB, one for all or ``(batch,)``.
    """
    _check_waveforms(signal, "mix_at_snr")
    batch, channels, samples = signal.shape
    if noise.ndim != 3 or noise.shape[0] != batch or noise.shape[2] != samples or noise.shape[1] not in (1, channels):
        raise ValueError(
            f"mix_at_snr: noise must be (batch={batch}, 1 or {channels}, samples={samples}), "
            f"got shape {tuple(noise.shape)}."
        )
    snr_db = torch.as_tensor(snr_db, dtype=torch.float64, device=signal.device)
    if snr_db.ndim not in (0, 1) or (snr_db.ndim == 1 and snr_db.shape[0] != batch):
        raise ValueError(f"mix_at_snr: snr_db must be a number or (batch={batch},), got shape {tuple(snr_db.shape)}.")
    # float64 powers: a float32 mean over a minute of audio drifts by more than the 1e-3 dB asked
    signal_power = signal.double().pow(2).mean(dim=(1, 2))
    noise_power = noise.double().pow(2).mean(dim=(1, 2))
    scale = snr_gains(signal_power, noise_power, snr_db)
    return signal + (scale.to(signal.dtype)[:, None, None] * noise.to(signal.dtype))


def snr_gains(signal_power: Tensor, noise_power: Tensor, snr_db: float | Tensor) -> Tensor:
    """``(batch,)`` amplitude gains that bring noises of mean power ``noise_power`` to
    ``snr_db`` below signals of mean power ``signal_power`` (float64 powers, ``(batch,)``).

    A silent signal gets the noise at RMS :data:`SILENT_EXAMPLE_NOISE_RMS`; a silent noise
    gets gain 0 (nothing can bring it to any level).
    """
    snr_db = torch.as_tensor(snr_db, dtype=torch.float64, device=signal_power.device)
    wanted = torch.where(
        signal_power > 0, signal_power / 10.0 ** (snr_db / 10.0), torch.full_like(signal_power, SILENT_EXAMPLE_NOISE_RMS**2)
    )
    return torch.where(noise_power > 0, torch.sqrt(wanted / noise_power.clamp(min=1e-300)), 0.0)


def crop_or_loop(recordings: Sequence[np.ndarray], which: Sequence[int], position: Sequence[float], samples: int) -> np.ndarray:
    """``(count, samples)`` float32 crops: from ``recordings[which[k]]``, starting at fraction
    ``position[k]`` (in [0, 1)) of the starts that fit; a recording shorter than ``samples``
    is looped from a start at that fraction of its length."""
    crops = np.empty((len(which), samples), dtype=np.float32)
    for row, (index, where) in enumerate(zip(np.asarray(which).tolist(), np.asarray(position).tolist())):
        recording = recordings[index]
        length = len(recording)
        start = int(where * (length - samples + 1)) if length >= samples else int(where * length)
        crops[row] = recording[(start + np.arange(samples)) % length]
    return crops


def _background_paths(paths: Sequence[str | Path] | str | Path) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return audio_files_in_folder(paths, "BackgroundMixer: backgrounds")
    found = [Path(p) for p in paths]
    if not found:
        raise ValueError("BackgroundMixer: no background file given.")
    return found


class BackgroundMixer:
    """Adds a random crop of a background recording at a random SNR to some examples.

    Holds the backgrounds, decoded once, in memory (mono float32 numpy at ``sample_rate``),
    so that each batch costs no file access; the arrays pickle into dataloader workers
    (a forked worker shares them until written to).

    Parameters
    ----------
    paths : sequence of paths, or a folder
        Background recordings, or a folder: every audio file below it (by extension).
    sample_rate : int
        Rate of the waveforms it will be given; other rates are resampled with soxr.
    snr_range : (float, float)
        Example-to-background power ratio in dB, uniform in this range.
    probability : float
        Chance that an example gets a background.
    """

    def __init__(
        self,
        paths: Sequence[str | Path] | str | Path,
        *,
        sample_rate: int,
        snr_range: tuple[float, float] = (5.0, 20.0),
        probability: float = 0.5,
    ):
        if sample_rate <= 0:
            raise ValueError(f"BackgroundMixer: sample_rate must be > 0, got {sample_rate}.")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"BackgroundMixer: probability must be in [0, 1], got {probability}.")
        self.snr_range = _check_range(snr_range, "BackgroundMixer: snr_range")
        self.sample_rate, self.probability = sample_rate, probability
        self.paths = _background_paths(paths)
        self.backgrounds = [decode_mono(path, sample_rate) for path in self.paths]

    def __getstate__(self) -> dict:
        # plain arrays and numbers, no open file: what a dataloader worker needs
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __call__(self, waveforms: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """``(batch, channels, samples)`` -> same shape, some examples with a background added.

        Every call draws the same number of values whatever the outcome, so that a seeded
        generator stays in step with other augmentations drawing from it.
        """
        _check_waveforms(waveforms, "BackgroundMixer")
        batch, _, samples = waveforms.shape
        applied = uniform((batch,), 0.0, 1.0, generator=generator) < self.probability
        choice = integers(0, len(self.backgrounds), (batch,), generator=generator)
        position = uniform((batch,), 0.0, 1.0, generator=generator)
        snr_db = uniform((batch,), *self.snr_range, generator=generator)
        if not bool(applied.any()) or samples == 0:
            return waveforms
        noise = torch.from_numpy(crop_or_loop(self.backgrounds, choice.cpu(), position.cpu(), samples)).to(waveforms)[:, None, :]
        mixed = mix_at_snr(waveforms, noise, snr_db.to(waveforms.device))
        return torch.where(applied.to(waveforms.device)[:, None, None], mixed, waveforms)
