"""WeSpeaker's ResNet speaker encoders, as an audiotask model (``audiotask import wespeaker``).

The networks of wenet-e2e/wespeaker's ``wespeaker/models/resnet.py`` (``ResNet`` of
``BasicBlock`` for ResNet18/34, of ``Bottleneck`` for ResNet50 to 293; ``m_channels=32``,
``two_emb_layer=False``, as the published checkpoints are) with the ``TSTP`` statistics pooling
of ``wespeaker/models/pooling_layers.py``, and the front end that WeSpeaker trains them on
(``wespeaker/dataset/processor.py``: ``compute_fbank``, then ``apply_cmvn`` with means only),
as pyannote.audio runs it at inference (``pyannote/audio/models/embedding/wespeaker/__init__.py``):

- the 16 kHz waveform times ``1 << 15`` (Kaldi's 16-bit sample scale);
- ``torchaudio.compliance.kaldi.fbank(num_mel_bins=80, frame_length=25, frame_shift=10,
  dither=0.0, window_type="hamming", use_energy=False)``: Kaldi's filterbank with a Hamming
  window instead of its default Povey window (``energy_floor`` and ``htk_compat``, which
  some of WeSpeaker's scripts pass, only concern the energy column that ``use_energy=False``
  leaves out). ``wespeaker/cli/speaker.py`` calls the same ``fbank`` with the Povey window:
  the models were trained with the Hamming window, so it is the one used here;
- cepstral mean normalisation: the features less their mean over the chunk's frames;
- the ResNet over (frequency, time), the mean and the standard deviation (unbiased, ``+ 1e-7``
  under the square root) of its last feature maps over time, and the linear layer ``seg_1``.

The embedding is the output of ``seg_1``, not normalised: WeSpeaker and pyannote score
embeddings by their cosine. A chunk too short for the ResNet's three time strides to leave two
frames (about 0.1 s, so that the standard deviation is defined) is repeated up to that length,
as WeSpeaker's ``get_random_chunk`` repeats short utterances in training.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution
from audiotask.models.kaldi_fbank import KaldiFbank

SAMPLE_RATE = 16000
#: Kaldi's scale of 16-bit samples: WeSpeaker multiplies [-1, 1] waveforms by it
SAMPLE_SCALE = float(1 << 15)
#: TSTP's floor under the variance (wespeaker/models/pooling_layers.py; 1e-8 in its first versions)
VARIANCE_FLOOR = 1e-7
#: frames the pooled statistics need: the unbiased variance of a single frame is undefined
MIN_POOLED_FRAMES = 2
#: the ResNet's time stride (layer2, layer3 and layer4 each halve the time axis)
TIME_STRIDE = 8


class BasicBlock(nn.Module):
    """resnet.py's ``BasicBlock``: two 3x3 convolutions and a shortcut (a strided 1x1
    convolution where the shape changes)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """resnet.py's ``Bottleneck``: 1x1, strided 3x3 and 1x1 (4 times wider) convolutions, and a shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """The identity (an empty Sequential, as resnet.py's, so that the weights' names match), or a
    strided 1x1 convolution and a batch normalisation where the block changes the shape."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_planes))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
#: the depths resnet.py names: (blocks per layer, block)
DEPTHS = {
    "ResNet18": ((2, 2, 2, 2), "basic"), "ResNet34": ((3, 4, 6, 3), "basic"),
    "ResNet50": ((3, 4, 6, 3), "bottleneck"), "ResNet101": ((3, 4, 23, 3), "bottleneck"),
    "ResNet152": ((3, 8, 36, 3), "bottleneck"), "ResNet221": ((6, 16, 48, 3), "bottleneck"),
    "ResNet293": ((10, 20, 64, 3), "bottleneck"),
}


def depth_name(num_blocks: Sequence[int], block: str) -> str:
    """resnet.py's name of the network (``"ResNet34"``), or a description of an unnamed one."""
    for name, (blocks, kind) in DEPTHS.items():
        if tuple(num_blocks) == blocks and kind == block:
            return name
    return f"ResNet of {block} blocks {tuple(num_blocks)}"


def temporal_statistics(features: torch.Tensor) -> torch.Tensor:
    """TSTP: (batch, channels, frequencies, frames) -> (batch, 2 * channels * frequencies), the
    mean over frames, then the standard deviation (unbiased, floored under the square root)."""
    mean = features.mean(dim=-1).flatten(start_dim=1)
    std = torch.sqrt(torch.var(features, dim=-1) + VARIANCE_FLOOR).flatten(start_dim=1)
    return torch.cat([mean, std], dim=1)


class WeSpeakerResNet(Model):
    """WeSpeaker's ResNet speaker encoder: one embedding per chunk (``seg_1``'s output, not normalised).

    Parameters
    ----------
    sample_rate, num_channels : int
        16 kHz mono only: what the published networks were trained on.
    num_blocks : four ints
        Blocks of each of the four layers: (3, 4, 6, 3) for ResNet34 (see :data:`DEPTHS`).
    block : "basic" or "bottleneck"
        ``BasicBlock`` (ResNet18, 34) or ``Bottleneck`` (ResNet50 and deeper).
    m_channels : int
        Channels of the first layer (doubled by each next one).
    feat_dim : int
        Mel bands of the filterbank.
    task : Task, optional
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, num_channels: int = 1,
                 num_blocks: Sequence[int] = (3, 4, 6, 3), block: str = "basic", m_channels: int = 32,
                 feat_dim: int = 80, task=None):
        if int(sample_rate) != SAMPLE_RATE or int(num_channels) != 1:
            raise ValueError(f"WeSpeakerResNet: 16 kHz mono only (the network's weights), got {sample_rate} Hz, "
                             f"{num_channels} channel(s).")
        num_blocks, m_channels = tuple(int(count) for count in num_blocks), int(m_channels)
        if block not in BLOCKS or len(num_blocks) != 4 or min(num_blocks) < 1:
            raise ValueError(f"WeSpeakerResNet: block must be one of {sorted(BLOCKS)} and num_blocks four positive "
                             f"counts, got {block!r}, {num_blocks}.")
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        self.fbank = KaldiFbank(int(feat_dim), SAMPLE_RATE, window="hamming")
        self.conv1 = nn.Conv2d(1, m_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        kind, in_planes = BLOCKS[block], m_channels
        for index, (count, stride) in enumerate(zip(num_blocks, (1, 2, 2, 2))):
            planes = m_channels * 2 ** index
            blocks = []
            for block_stride in [stride] + [1] * (count - 1):
                blocks.append(kind(in_planes, planes, block_stride))
                in_planes = planes * kind.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        #: resnet.py's stats_dim * block.expansion: channels times frequencies after layer4
        self.pooled_features = int(feat_dim / 8) * m_channels * 8 * kind.expansion
        #: the shortest input whose last feature maps have the frames the statistics need
        self.min_samples = self.fbank.frame_length + self.fbank.frame_shift * (
            TIME_STRIDE * (MIN_POOLED_FRAMES - 1))

    def build(self) -> None:
        specifications = self.specifications
        if specifications.problem is not Problem.REPRESENTATION or specifications.resolution is not Resolution.CHUNK:
            raise ValueError("WeSpeakerResNet: a speaker encoder, one embedding per chunk (REPRESENTATION, CHUNK).")
        self.seg_1 = nn.Linear(2 * self.pooled_features, specifications.num_outputs)

    def normalized_fbank(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, samples) in [-1, 1] -> (batch, frames, feat_dim): the filterbank of the 16-bit
        scaled samples, less its mean over frames."""
        fbank = self.fbank(waveforms * SAMPLE_SCALE)
        return fbank - fbank.mean(dim=1, keepdim=True)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, feat_dim) normalised features -> (batch, dimension) embeddings."""
        out = F.relu(self.bn1(self.conv1(features.transpose(1, 2).unsqueeze(1))))  # (batch, 1, freq, time)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.seg_1(temporal_statistics(out))

    def repeated_to_min_length(self, samples: torch.Tensor) -> torch.Tensor:
        """(batch, samples), repeated along time up to :attr:`min_samples` when shorter."""
        length = samples.shape[-1]
        if length >= self.min_samples:
            return samples
        if length == 0:
            raise ValueError("WeSpeakerResNet: cannot embed an empty chunk.")
        return samples.repeat(1, -(-self.min_samples // length))[:, :self.min_samples]

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, dimension): each chunk's embedding."""
        self.check_input(waveforms)
        return self.embed_features(self.normalized_fbank(self.repeated_to_min_length(waveforms[:, 0])))
