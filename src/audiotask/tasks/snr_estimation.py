"""Signal-to-noise ratio estimation: how loud is the speech against the noise, frame by frame?

The idea of "brouhaha" (Lavechin et al., 2023): no corpus says what the SNR of its
recordings is, but one made on the fly does. Chunks of a protocol's (clean) speech are mixed
with noise at an SNR drawn for each chunk, so that every target is exact.

What the target is
------------------
A chunk of the protocol's audio is taken as the clean speech ``s``; its annotation (any
label: speaker turns) says which of its samples are speech: sample ``i`` (from the chunk's
start) is speech when ``round(onset * rate) <= i < round(offset * rate)`` for an annotated
segment. A crop ``n`` of a noise recording is scaled by ``g`` so that, over those speech
samples ``S``,

    10 log10( mean_{i in S} s[i]^2 / mean_{i in S} (g n[i])^2 ) = snr

exactly (float64 powers), ``snr`` being drawn uniformly in ``snr_range``; the mixture is
``s + g n`` times one level gain (random, then lowered to keep the peak <= 0.99), which
changes no ratio. Every output frame whose centre lies in speech (the rule of voice activity
detection's targets) has ``snr`` (dB) as its target; the other frames, and every frame of a
chunk without speech power or whose noise crop is silent over the speech, are masked out of
loss and metric (``mask``).

Training mixtures are a pure function of the key ``extend_batch`` receives (seed, rank,
stream, epoch, batch index): a resumed run sees the batches of an uninterrupted one.
Validation mixtures are drawn from the development chunk's index alone: the same at every
validation, whatever the batch size or seed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from audiotask.augmentation.waveform import crop_or_loop, snr_gains
from audiotask.core import objectives
from audiotask.core.audio import Audio, audio_path, decode_mono
from audiotask.core.frames import seconds_to_samples
from audiotask.core.specifications import Problem, Resolution
from audiotask.engine.annotated_task import AnnotatedTask
from audiotask.engine.builders import ChunkSegments, FrameClasses, TargetBuilder
from audiotask.core.protocol_files import has_subset
from audiotask.protocols.uris import audio_files_in_folder

if TYPE_CHECKING:
    from pyannote.database import Protocol

LOSSES = ("smooth_l1", "mse")
#: appended to the training key: the sampler of the same (seed, rank, stream, epoch, index)
#: must not draw the same numbers as the mixing
_TRAIN_STREAM = 0x534E5254
#: first entry of a validation chunk's key: no training key starts with it
_VALIDATION_STREAM = 0x534E5256
#: each mixture's level is moved by up to this many dB (amplitude), so that the model reads a
#: ratio, not how loud the noise is next to a corpus' usual speech level
LEVEL_DB = 6.0
_PEAK = 0.99
#: smooth L1 is quadratic below this error, in dB: small errors are not over-weighted
SMOOTH_L1_BETA_DB = 1.0


# ---- mixing: pure functions --------------------------------------------------------------
def noise_gains(
    speech: np.ndarray, noise: np.ndarray, speech_samples: np.ndarray, snr_db: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gain of each noise that sets the SNR over each chunk's speech samples.

    Parameters
    ----------
    speech, noise : (chunks, samples) arrays
        Clean speech and the noise crop of each chunk.
    speech_samples : (chunks, samples) bool array
        The samples the SNR is measured over.
    snr_db : (chunks,) array
        The SNR to set, in dB.

    Returns
    -------
    gains : (chunks,) float64
        ``speech + gains[:, None] * noise`` has SNR ``snr_db`` over ``speech_samples``.
        A chunk without speech power is measured over all its samples instead (noise at RMS
        ``SILENT_EXAMPLE_NOISE_RMS`` when it is all zeros, as ``mix_at_snr`` does); a noise
        crop silent over the measured samples gets gain 0.
    measured : (chunks,) bool
        Whether the chunk's SNR over its speech samples is ``snr_db``: its targets count.
    """
    if speech.ndim != 2 or noise.shape != speech.shape or speech_samples.shape != speech.shape:
        raise ValueError(f"noise_gains: speech, noise and speech_samples must be (chunks, samples) alike, got "
                         f"{speech.shape}, {noise.shape} and {speech_samples.shape}.")
    speech_power, noise_power = np.square(speech, dtype=np.float64), np.square(noise, dtype=np.float64)
    mask = np.asarray(speech_samples, dtype=bool)
    has_reference = (speech_power * mask).sum(axis=1) > 0
    over = np.where(has_reference[:, None], mask, True)
    count = np.maximum(over.sum(axis=1), 1)
    reference, against = (speech_power * over).sum(axis=1) / count, (noise_power * over).sum(axis=1) / count
    gains = snr_gains(torch.from_numpy(reference), torch.from_numpy(against), torch.from_numpy(np.asarray(snr_db, dtype=np.float64)))
    return gains.numpy(), has_reference & (against > 0)


@dataclass
class MixingDraws:
    """What is drawn to mix a batch, one entry per chunk.

    snr_db : (chunks,) float64, the SNR set over the chunk's speech samples.
    noise : (chunks,) int64, which noise recording.
    position : (chunks,) float64 in [0, 1), where its crop starts (see :meth:`NoiseBank.crops`).
    level_db : (chunks,) float64, the mixture's level gain in dB, before the peak limit.
    """

    snr_db: np.ndarray
    noise: np.ndarray
    position: np.ndarray
    level_db: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, count: int, *, snr_range: tuple[float, float], num_noises: int) -> "MixingDraws":
        """``count`` draws from ``rng``: uniform SNR in ``snr_range``, noise, position and level."""
        # every field drawn whatever the others: a draw never shifts the ones after it
        return cls(snr_db=rng.uniform(*snr_range, count), noise=rng.integers(num_noises, size=count),
                   position=rng.random(count), level_db=rng.uniform(-LEVEL_DB, LEVEL_DB, count))

    @classmethod
    def stack(cls, draws: Sequence["MixingDraws"]) -> "MixingDraws":
        return cls(*(np.concatenate([getattr(d, name) for d in draws]) for name in ("snr_db", "noise", "position", "level_db")))


@dataclass
class Mixtures:
    """Mixed chunks and their parts, as written.

    waveforms : (chunks, 1, samples) float32, ``speech + noise``.
    speech, noise : (chunks, samples) float64, the clean speech and the scaled noise, each
        times the mixture's level gain.
    snr_db : (chunks,) float64, the SNR over each chunk's speech samples.
    measured : (chunks,) bool, see :func:`noise_gains`.
    """

    waveforms: np.ndarray
    speech: np.ndarray
    noise: np.ndarray
    snr_db: np.ndarray
    measured: np.ndarray


def mix_speech(speech: np.ndarray, speech_samples: np.ndarray, noise: np.ndarray, draws: MixingDraws) -> Mixtures:
    """Mix (chunks, samples) clean ``speech`` with ``noise`` crops as ``draws`` say.

    The SNR is set over ``speech_samples`` (see :func:`noise_gains`); the level gain then
    scales speech and noise alike and is lowered where the mixture would peak above 0.99.
    """
    gains, measured = noise_gains(speech, noise, speech_samples, draws.snr_db)
    speech = speech.astype(np.float64)
    noise = noise.astype(np.float64) * gains[:, None]
    mixture = speech + noise
    peak = np.abs(mixture).max(axis=1, initial=0.0)
    level = np.minimum(10.0 ** (np.asarray(draws.level_db) / 20.0), _PEAK / np.maximum(peak, 1e-30))[:, None]
    return Mixtures(waveforms=(mixture * level)[:, None].astype(np.float32), speech=speech * level,
                    noise=noise * level, snr_db=np.asarray(draws.snr_db, dtype=np.float64), measured=measured)


# ---- noise recordings --------------------------------------------------------------------
def noise_files(folder: Union[str, Path]) -> list[Path]:
    """The audio files below ``folder`` (by extension), sorted; ValueError naming it when there is none."""
    return audio_files_in_folder(folder, "SNREstimation: noise")


class NoiseBank:
    """Noise recordings decoded once into memory (mono float32), cropped to chunks.

    Plain arrays: the bank pickles into dataloader workers (a forked one shares them).

    Parameters
    ----------
    recordings : sequence of (samples,) arrays
        At the model's sample rate.
    names : sequence of str
        What an error message calls each (its path).
    """

    def __init__(self, recordings: Sequence[np.ndarray], names: Sequence[str]):
        if not len(recordings):
            raise ValueError("SNREstimation: no noise recording to mix with.")
        for samples, name in zip(recordings, names):
            if not np.any(samples):
                raise ValueError(f"SNREstimation: noise file {name} is silent (all zeros): no SNR can be set against it.")
        self.recordings = [np.ascontiguousarray(samples, dtype=np.float32) for samples in recordings]
        self.names = [str(name) for name in names]

    @classmethod
    def from_folder(cls, folder: Union[str, Path], sample_rate: int) -> "NoiseBank":
        """Every audio file below ``folder``; ValueError naming a file that cannot be decoded."""
        paths = noise_files(folder)
        return cls([decode_mono(path, sample_rate) for path in paths], paths)

    @classmethod
    def from_protocol(cls, protocol, subset: str, sample_rate: int) -> "NoiseBank":
        """The whole audio of the files of ``subset`` of a pyannote.database protocol."""
        recordings, names, audio = [], [], Audio(sample_rate)
        for file in getattr(protocol, subset)():
            path = audio_path(file)
            recordings.append(decode_mono(path, sample_rate) if path is not None else audio(file)[0][0].numpy())
            names.append(str(path) if path is not None else f"{subset} file {file['uri']!r}")
        return cls(recordings, names)

    def __len__(self) -> int:
        return len(self.recordings)

    def crops(self, which: np.ndarray, position: np.ndarray, num_samples: int) -> np.ndarray:
        """(count, num_samples) float32: from recording ``which[k]``, starting at fraction ``position[k]``
        of the starts that fit (a recording shorter than a chunk is looped from there)."""
        return crop_or_loop(self.recordings, which, position, num_samples)


# ---- the task's parts --------------------------------------------------------------------
class SpeechSamples(TargetBuilder):
    """(chunks, samples) bool: the samples inside a segment of a class (any label, here), i.e.
    sample ``i`` with ``round(onset * rate) <= i < round(offset * rate)``."""

    def __init__(self, sample_rate: int, key: str = "speech_samples"):
        self.sample_rate, self.key, self.outputs = int(sample_rate), key, {key: np.dtype(np.bool_)}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        chunk, starts, ends, _ = segments.class_segments()
        num_samples = seconds_to_samples(segments.duration, self.sample_rate)
        first = np.clip(seconds_to_samples(starts, self.sample_rate), 0, num_samples)
        last = np.clip(seconds_to_samples(ends, self.sample_rate), 0, num_samples)
        speech = np.zeros((segments.num_chunks, num_samples), dtype=bool)
        for row, begin, end in zip(chunk.tolist(), first.tolist(), last.tolist()):
            speech[row, begin:end] = True  # a few segments per chunk: slices beat a difference array
        return {self.key: speech}


def _check_snr_range(snr_range) -> tuple[float, float]:
    if not isinstance(snr_range, (tuple, list)) or len(snr_range) != 2:
        raise ValueError(f"SNREstimation: snr_range must be a pair (low, high) of dB values, got {snr_range!r}.")
    try:
        low, high = float(snr_range[0]), float(snr_range[1])
    except (TypeError, ValueError):
        raise ValueError(f"SNREstimation: snr_range must be two numbers of dB, got {snr_range!r}.") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"SNREstimation: snr_range must be two finite dB values with low <= high, got {snr_range!r}.")
    return low, high


class SNREstimation(AnnotatedTask):
    """Frame-level SNR of speech (dB), trained on the protocol's speech mixed on the fly with noise.

    See the module's docstring for what the SNR is measured over. Training chunks are drawn
    inside annotated regions, as voice activity detection's; each is mixed with a crop of a
    noise recording at an SNR drawn uniformly in ``snr_range``.

    Parameters
    ----------
    protocol : pyannote.database.Protocol
        Clean speech: every annotated label (speaker turns) counts as speech. Its
        development subset, when present, is validated on (fixed mixtures).
    noise : str, Path or pyannote.database.Protocol
        A folder of noise recordings (every audio file below it; the same for training and
        validation), or a protocol: its train files' audio for training, its development
        files' for validation (its train files' without a development subset). Decoded
        once, into memory, when the task is set up.
    snr_range : (float, float)
        Lowest and highest SNR drawn, in dB (equal: one fixed SNR).
    loss : "smooth_l1" or "mse"
        Per-frame loss over speech frames outside warm-up (smooth L1: quadratic below
        ``SMOOTH_L1_BETA_DB``, linear above).
    duration : float
        Chunk duration in seconds. Other parameters are ``AnnotatedTask``'s.

    Validation logs ``val/mae_db``, the mean absolute error in dB over speech frames, which
    keeps the best checkpoint.
    """

    problem = Problem.REGRESSION
    resolution = Resolution.FRAME
    task_name = "snr-estimation"
    labels_are_classes = False  # speaker names are speech, not classes
    CLASSES = ["snr"]

    def __init__(
        self,
        protocol,
        noise: Union[str, os.PathLike, Protocol],
        *,
        snr_range: tuple[float, float] = (-5.0, 20.0),
        loss: str = "smooth_l1",
        duration: float = 5.0,
        **kwargs,
    ):
        self.snr_range = _check_snr_range(snr_range)
        if loss not in LOSSES:
            raise ValueError(f"SNREstimation: loss must be one of {LOSSES}, got {loss!r}.")
        if isinstance(noise, (str, os.PathLike)):
            noise_files(noise)  # a wrong folder fails now, not when training starts
            noise = Path(noise)
        elif not callable(getattr(noise, "train", None)):
            raise ValueError(f"SNREstimation: noise must be a folder or a pyannote.database protocol, got {noise!r}.")
        super().__init__(protocol, duration=duration, **kwargs)
        self.noise, self.loss = noise, loss
        self._noise_banks: Optional[tuple[int, NoiseBank, NoiseBank]] = None  # (sample rate, training, validation)

    def known_classes(self) -> list[str]:
        return list(self.CLASSES)

    def label_classes(self, labels: list[str], classes: list[str]) -> np.ndarray:
        return np.zeros(len(labels), dtype=np.int64)

    def target_builders(self) -> list[TargetBuilder]:
        """Speech frames and speech samples of the clean chunks; mixing turns them into "y" and "mask"."""
        return [FrameClasses("speech"), SpeechSamples(self.sample_rate)]

    def setup(self, stage: Optional[str] = None) -> None:
        super().setup(stage)
        self.noise_banks()  # decoded now: a bad noise file stops set-up, and workers inherit them

    def noise_banks(self) -> tuple[NoiseBank, NoiseBank]:
        """``(training, validation)`` noise recordings at the model's sample rate (decoded once)."""
        if self._noise_banks is None or self._noise_banks[0] != self.sample_rate:
            rate = self.sample_rate
            if isinstance(self.noise, Path):
                training = validation = NoiseBank.from_folder(self.noise, rate)
            else:
                training = NoiseBank.from_protocol(self.noise, "train", rate)
                validation = (NoiseBank.from_protocol(self.noise, "development", rate)
                              if has_subset(self.noise, "development") else training)
            self._noise_banks = (rate, training, validation)
        return self._noise_banks[1], self._noise_banks[2]

    def __getstate__(self):
        state = super().__getstate__()
        if not isinstance(self.noise, Path):
            state["noise"] = None  # a protocol does not pickle: workers use the decoded banks
        return state

    # ---- mixing ---------------------------------------------------------------------------
    def mix(self, batch: dict, bank: NoiseBank, draws: MixingDraws, *, return_details: bool = False):
        """A batch of clean chunks (from :meth:`make_batch`) mixed with ``bank``'s noise as ``draws`` say.

        Returns ``{"X": (chunks, 1, samples) float32, "y": (chunks, frames, 1) float32 SNR in
        dB, "mask": (chunks, frames) uint8}`` (``y`` is 0 where ``mask`` is), and with
        ``return_details`` the :class:`Mixtures` too.
        """
        clean = batch["X"][:, 0].numpy()
        noise = bank.crops(draws.noise, draws.position, clean.shape[1])
        mixtures = mix_speech(clean, batch["speech_samples"].numpy(), noise, draws)
        counted = batch["speech"].numpy()[..., 0].astype(bool) & mixtures.measured[:, None]
        y = np.where(counted, mixtures.snr_db[:, None], 0.0).astype(np.float32)[..., None]
        mixed = {"X": torch.from_numpy(mixtures.waveforms), "y": torch.from_numpy(y),
                 "mask": torch.from_numpy(counted.view(np.uint8))}
        return (mixed, mixtures) if return_details else mixed

    def training_draws(self, count: int, key: tuple[int, ...]) -> MixingDraws:
        """The draws of a training batch of ``count`` chunks: a pure function of ``key``."""
        # one generator per batch: resuming at batch `index` needs nothing drawn before it
        rng = np.random.default_rng(np.random.SeedSequence([int(k) for k in key] + [_TRAIN_STREAM]))
        return MixingDraws.random(rng, count, snr_range=self.snr_range, num_noises=len(self.noise_banks()[0]))

    def extend_batch(self, batch: dict, *, key: tuple[int, ...]) -> dict:
        """The sampled clean chunks, mixed with training noise as drawn from ``key``."""
        return self.mix(batch, self.noise_banks()[0], self.training_draws(len(batch["X"]), key))

    def validation_draws(self, indices: np.ndarray) -> MixingDraws:
        """Draws of the development chunks ``indices`` (of ``validation_chunks``): chunk ``i``'s
        come from a generator seeded by ``i`` alone, so every validation mixes it alike."""
        num_noises = len(self.noise_banks()[1])
        return MixingDraws.stack([
            MixingDraws.random(np.random.default_rng(np.random.SeedSequence([_VALIDATION_STREAM, int(i)])), 1,
                               snr_range=self.snr_range, num_noises=num_noises)
            for i in np.asarray(indices).tolist()
        ])

    def extend_validation_batch(self, batch: dict, indices: np.ndarray) -> dict:
        """A batch of clean development chunks (``indices``) mixed with validation noise."""
        return self.mix(batch, self.noise_banks()[1], self.validation_draws(indices))

    # ---- loss and metric --------------------------------------------------------------------
    def compute_loss(self, y_pred: torch.Tensor, y: torch.Tensor, duration: Optional[float] = None, *,
                     mask: Optional[torch.Tensor] = None, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``loss`` over the frames ``mask`` keeps, outside warm-up (mean squared error is the default path's)."""
        if self.loss == "mse":
            return super().compute_loss(y_pred, y, duration, mask=mask, weight=weight)
        objectives.check_output_shape(self.specifications, y_pred)
        loss = F.smooth_l1_loss(y_pred, y.reshape(y_pred.shape).to(y_pred.dtype), reduction="none", beta=SMOOTH_L1_BETA_DB)
        frame_weight = self.frame_weight(y_pred.shape[1], duration)
        return objectives.reduce_loss(loss, objectives.entry_weights(loss, mask=mask, weight=weight, frame_weight=frame_weight))

    def setup_metrics(self, model) -> None:
        from torchmetrics import MeanAbsoluteError

        self._validation_metric = ("mae_db", MeanAbsoluteError().to(model.device))

    @property
    def monitor(self) -> tuple[str, str]:
        return ("val/mae_db", "min") if self.has_validation else super().monitor
