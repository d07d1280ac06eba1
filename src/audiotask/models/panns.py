"""PANNs CNN14 and CNN10 (Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks
for Audio Pattern Recognition", 2020), as an audiotask model (``audiotask import panns``).

The networks of qiuqiangkong/audioset_tagging_cnn (``pytorch/models.py``: ``Cnn14``,
``Cnn10``, ``ConvBlock``; ``Cnn14_DecisionLevelMax`` for the frame output) on the front end
of torchlibrosa (``torchlibrosa/stft.py``: ``STFT``, ``Spectrogram``, ``LogmelFilterBank``),
at the published settings: 32 kHz mono, a centred STFT of 1024 samples every 320
(reflect-padded, periodic Hann window, computed as two 1-D convolutions whose kernels the
checkpoints hold), the power spectrum through 64 Slaney mel filters from 50 Hz to 14 kHz
(librosa's ``filters.mel``, area-normalised), then ``10 * log10(max(mel, 1e-10))``
(``power_to_db`` with ref 1.0 and no ``top_db``). A batch normalisation per mel band
(``bn0``), then blocks of two 3x3 convolutions (no bias), each followed by a batch
normalisation and a ReLU, and a 2x2 average pooling (CNN14's sixth block pools nothing),
with a dropout of 0.2 after each block in training. The last block's output averaged over
frequency is the network's frame features (2048 channels for CNN14, 512 for CNN10).

- CHUNK resolution (the published tagger): the frame features' maximum plus their mean over
  time, a dropout of 0.5, ``fc1`` and a ReLU, then the head ``fc_audioset``. The published
  ``clipwise_output`` is the sigmoid of these logits (the model's ``default_activation``).
- FRAME resolution (a PANNs fine-tuned for sound event detection): as
  ``Cnn14_DecisionLevelMax``, the frame features smoothed over three frames (their maximum
  plus their mean), a dropout, ``fc1`` and a ReLU, a dropout, and ``fc_audioset`` applied
  to each frame: one score per ``frame_hop`` samples (10240 = 0.32 s for CNN14, 5120 for
  CNN10; the published code repeats them to the STFT's 10-ms frames, which is not done here).

The published ``SpecAugmentation`` (training only) is left out: audiotask's augmentation
recipes are where training augments. The front end is kept as the checkpoint's tensors
(persistent buffers named as its keys), never trained.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution
from audiotask.models.resemblyzer import hz_to_mel, mel_to_hz

SAMPLE_RATE = 32000
N_FFT = 1024  # the STFT's window, 32 ms
HOP = 320  # 10 ms
N_MELS = 64
FMIN, FMAX = 50.0, 14000.0
#: power_to_db's floor; its ref of 1.0 subtracts 0 dB and its top_db of None clips nothing
AMIN = 1e-10
#: each variant's convolution blocks: (output channels, (time, frequency) average pooling)
VARIANTS: dict[str, tuple[tuple[int, tuple[int, int]], ...]] = {
    "cnn14": ((64, (2, 2)), (128, (2, 2)), (256, (2, 2)), (512, (2, 2)), (1024, (2, 2)), (2048, (1, 1))),
    "cnn10": ((64, (2, 2)), (128, (2, 2)), (256, (2, 2)), (512, (2, 2))),
}
BLOCK_DROPOUT = 0.2
FEATURE_DROPOUT = 0.5


def stft_kernels(n_fft: int = N_FFT) -> tuple[np.ndarray, np.ndarray]:
    """torchlibrosa ``STFT``'s ``conv_real`` and ``conv_imag`` weights, each (n_fft // 2 + 1, 1,
    n_fft) float32: the DFT's real and imaginary parts (``exp(-2 pi i k n / n_fft)``) times a
    periodic Hann window."""
    samples = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * samples / n_fft)
    # k * n reduced modulo n_fft first: the angles stay exact for the high bins
    angles = 2.0 * np.pi * (np.outer(np.arange(n_fft // 2 + 1), samples) % n_fft) / n_fft
    real, imag = np.cos(angles) * window, -np.sin(angles) * window
    return real[:, None, :].astype(np.float32), imag[:, None, :].astype(np.float32)


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """torchlibrosa ``LogmelFilterBank``'s ``melW``: ``librosa.filters.mel`` (Slaney's scale and
    area normalisation, float32), transposed to (n_fft // 2 + 1, n_mels)."""
    fft_frequencies = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    low, high = hz_to_mel(np.array([fmin]))[0], hz_to_mel(np.array([fmax]))[0]
    edges = mel_to_hz(np.linspace(low, high, n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_frequencies[None, :]
    triangles = np.maximum(0.0, np.minimum(-ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]))
    # rounded to float32 before the normalisation, as librosa fills its float32 array first
    weights = triangles.astype(np.float32) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32).T.copy()


class FixedKernels(nn.Module):
    """A bias-free 1-D convolution whose ``weight`` is a persistent buffer: a fixed transform
    that a checkpoint holds, but that training leaves alone."""

    def __init__(self, weight: np.ndarray, stride: int):
        super().__init__()
        self.stride = stride
        self.register_buffer("weight", torch.from_numpy(weight))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.conv1d(inputs, self.weight, stride=self.stride)


class STFT(nn.Module):
    """torchlibrosa's ``STFT``: the DFT of each window as the convolutions ``conv_real`` and ``conv_imag``."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        real, imag = stft_kernels(n_fft)
        self.conv_real = FixedKernels(real, hop_length)
        self.conv_imag = FixedKernels(imag, hop_length)


class Spectrogram(nn.Module):
    """torchlibrosa's ``Spectrogram`` (centred, reflect-padded, power 2): (batch, samples) ->
    (batch, 1 + samples // hop_length, n_fft // 2 + 1)."""

    def __init__(self, n_fft: int = N_FFT, hop_length: int = HOP):
        super().__init__()
        self.n_fft = n_fft
        self.stft = STFT(n_fft, hop_length)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        padded = F.pad(waveforms[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real, imag = self.stft.conv_real(padded), self.stft.conv_imag(padded)
        return (real ** 2 + imag ** 2).transpose(1, 2)


class LogmelFilterBank(nn.Module):
    """torchlibrosa's ``LogmelFilterBank`` at PANNs' settings: power spectrogram (..., bins) ->
    mel power in dB (..., n_mels)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("melW", torch.from_numpy(mel_filterbank()))

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(torch.matmul(power, self.melW), min=AMIN))


def init_layer(layer: nn.Module) -> None:
    """audioset_tagging_cnn's ``init_layer``: Xavier-uniform weights, zero bias."""
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


class ConvBlock(nn.Module):
    """audioset_tagging_cnn's ``ConvBlock`` with its pooling (``pool_type='avg'``) and the
    dropout that follows it in ``Cnn14.forward`` (training only: this block's mode, so that a
    frozen encoder drops nothing)."""

    def __init__(self, in_channels: int, out_channels: int, pool_size: tuple[int, int]):
        super().__init__()
        self.pool_size = pool_size
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        init_layer(self.conv1)
        init_layer(self.conv2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(batch, in_channels, frames, bins) -> (batch, out_channels, frames / pool, bins / pool)."""
        x = F.relu(self.bn1(self.conv1(inputs)))
        x = F.relu(self.bn2(self.conv2(x)))
        if self.pool_size != (1, 1):
            x = F.avg_pool2d(x, kernel_size=self.pool_size)
        return F.dropout(x, p=BLOCK_DROPOUT, training=self.training)


class PANNs(Model):
    """PANNs CNN14 or CNN10 (32 kHz): AudioSet tags of a chunk, or frame scores once fine-tuned.

    Parameters
    ----------
    sample_rate : int
        32000 only: the published front end and weights.
    num_channels : int
        1 only.
    variant : "cnn14" or "cnn10"
    task : Task, optional

    Attributes
    ----------
    embedding_dimension : int
        Channels of :meth:`frame_embeddings` (2048 for CNN14, 512 for CNN10).
    embedding_hop : int
        Input samples per embedding frame (and per FRAME output): 320 times the blocks' time
        pooling, 10240 (0.32 s) for CNN14, 5120 (0.16 s) for CNN10.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, num_channels: int = 1, variant: str = "cnn14", task=None):
        if variant not in VARIANTS:
            raise ValueError(f"PANNs: variant must be one of {sorted(VARIANTS)}, got {variant!r}.")
        if int(sample_rate) != SAMPLE_RATE or int(num_channels) != 1:
            raise ValueError(f"PANNs: 32 kHz mono only (the published front end and weights), got {sample_rate} Hz, "
                             f"{num_channels} channel(s).")
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        self.variant = variant
        self.spectrogram_extractor = Spectrogram(N_FFT, HOP)
        self.logmel_extractor = LogmelFilterBank()
        self.bn0 = nn.BatchNorm2d(N_MELS)
        in_channels, time_pooling = 1, 1
        for index, (out_channels, pool_size) in enumerate(VARIANTS[variant], start=1):
            setattr(self, f"conv_block{index}", ConvBlock(in_channels, out_channels, pool_size))
            in_channels, time_pooling = out_channels, time_pooling * pool_size[0]
        self.num_blocks = len(VARIANTS[variant])
        self.embedding_dimension = in_channels
        self.time_pooling = time_pooling
        self.embedding_hop = HOP * time_pooling
        self.frame_hop = self.embedding_hop
        self.fc1 = nn.Linear(in_channels, in_channels)
        init_layer(self.fc1)

    def build(self) -> None:
        specifications = self.specifications
        if specifications.problem is Problem.REPRESENTATION:
            raise ValueError("PANNs: a classifier (clip or frame scores), not an embedding model: "
                             "frame_embeddings() gives its features.")
        self.fc_audioset = nn.Linear(self.embedding_dimension, specifications.num_outputs)
        init_layer(self.fc_audioset)

    @property
    def min_samples(self) -> int:
        """The shortest input: more than half an STFT window (the reflect padding) and one
        frame after the blocks' time pooling."""
        return max(N_FFT // 2 + 1, HOP * (self.time_pooling - 1))

    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> log-mel in dB (batch, 1 + samples // 320, 64), torchlibrosa's."""
        self.check_input(waveforms)
        if waveforms.shape[-1] < self.min_samples:
            raise ValueError(f"PANNs ({self.variant}): chunks of at least {self.min_samples} samples "
                             f"({self.min_samples / SAMPLE_RATE:.3f} s) needed, got {waveforms.shape[-1]}.")
        return self.logmel_extractor(self.spectrogram_extractor(waveforms[:, 0]))

    def conv_features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> the last block's output averaged over frequency, (batch,
        embedding_dimension, network frames): ``(1 + samples // 320) // time_pooling`` frames."""
        x = self.log_mel(waveforms).unsqueeze(1)  # (batch, 1, frames, mel bins)
        # bn0 normalises each mel band: the bands as channels
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for index in range(1, self.num_blocks + 1):
            x = getattr(self, f"conv_block{index}")(x)
        return torch.mean(x, dim=3)

    def frame_embeddings(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, samples // embedding_hop, embedding_dimension): the last
        convolution block's output averaged over frequency, frame ``i`` from samples ``[i *
        embedding_hop, (i + 1) * embedding_hop)``.

        The network itself makes ``(1 + samples // 320) // time_pooling`` frames (its STFT is
        centred): one more when the chunk ends within 320 samples of a whole frame; that last,
        partial frame is left out, so that the count is audiotask's (``Model.num_frames``).
        Frame ``i`` pools the STFT frames centred on samples ``[i, i + 1) * embedding_hop``
        (every 320), half an STFT hop (5 ms) before the centre of audiotask's frame ``i``.
        """
        return self.conv_features(waveforms)[..., : self.num_frames(waveforms.shape[-1])].transpose(1, 2)

    def clip_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Frame features (batch, dimension, network frames) -> (batch, classes): ``Cnn14.forward``'s
        clip output, every network frame pooled."""
        x = features.max(dim=2).values + features.mean(dim=2)
        x = F.dropout(x, p=FEATURE_DROPOUT, training=self.fc1.training)
        # fc_audioset reads fc1's output before the dropout that makes the published "embedding"
        return self.fc_audioset(F.relu(self.fc1(x)))

    def frame_logits(self, features: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Frame features (batch, dimension, network frames) -> (batch, num_frames, classes):
        ``Cnn14_DecisionLevelMax``'s segment-wise output before its sigmoid."""
        x = F.max_pool1d(features, kernel_size=3, stride=1, padding=1) + F.avg_pool1d(
            features, kernel_size=3, stride=1, padding=1)
        x = F.dropout(x, p=FEATURE_DROPOUT, training=self.fc1.training).transpose(1, 2)
        x = F.dropout(F.relu(self.fc1(x)), p=FEATURE_DROPOUT, training=self.fc_audioset.training)
        return self.fc_audioset(x[:, :num_frames])

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> logits (batch, classes) at CHUNK resolution, (batch, samples //
        frame_hop, classes) at FRAME resolution."""
        features = self.conv_features(waveforms)
        if self.specifications.resolution is Resolution.CHUNK:
            return self.clip_logits(features)
        return self.frame_logits(features, self.num_frames(waveforms.shape[-1]))

