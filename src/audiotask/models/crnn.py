"""CRNN: log-mel, convolution blocks, bidirectional GRU; frame, chunk (attention) or embedding output."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution
from audiotask.models.features import LogMel
from audiotask.models.pretrained_features import PretrainedFeatures, describe_encoder


class FrequencyDynamicConv2d(nn.Module):
    """Frequency-dynamic convolution (Nam et al., "Frequency Dynamic Convolution", Interspeech
    2022; the DCASE 2022-2023 top systems' FDY-CRNN): ``num_bases`` 3x3 kernels, mixed at
    each frequency bin by weights that the input's time-averaged features choose there.

    A plain convolution applies one kernel at every frequency although a sound's pattern is
    not the same at every height of the spectrogram; here each bin gets its own mixture.
    The convolution being linear, mixing the kernels is mixing their outputs, which is what
    :meth:`forward` does (one convolution with ``num_bases`` times the channels).

    The weights read the mean over all the window's frames: the features of a frame depend
    on the whole window (a CRNN with it scores windows whole).
    """

    def __init__(self, in_channels: int, out_channels: int, num_bases: int = 4, temperature: float = 31.0):
        super().__init__()
        self.num_bases, self.out_channels, self.temperature = num_bases, out_channels, float(temperature)
        self.bases = nn.Conv2d(in_channels, out_channels * num_bases, kernel_size=3, padding=1)
        hidden = max(in_channels // 4, 4)
        # along frequency: the time-averaged channels at each bin and its neighbours -> one logit per kernel
        self.attention = nn.Sequential(
            nn.Conv1d(in_channels, hidden, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Conv1d(hidden, num_bases, kernel_size=1),
        )

    def mixture(self, inputs: torch.Tensor) -> torch.Tensor:
        """(batch, channels, frames, bins) -> the kernels' weights (batch, num_bases, bins), summing to 1."""
        return torch.softmax(self.attention(inputs.mean(dim=2)) / self.temperature, dim=1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(batch, in_channels, frames, bins) -> (batch, out_channels, frames, bins)."""
        batch, _, frames, bins = inputs.shape
        outputs = self.bases(inputs).view(batch, self.num_bases, self.out_channels, frames, bins)
        return (outputs * self.mixture(inputs)[:, :, None, None, :]).sum(dim=1)


def conv_block(in_channels: int, out_channels: int, pool: tuple[int, int], dropout: float,
               frequency_dynamic: bool = False) -> nn.Sequential:
    return nn.Sequential(
        FrequencyDynamicConv2d(in_channels, out_channels) if frequency_dynamic
        else nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(pool),
        nn.Dropout(dropout),
    )


def encoder_context(n_fft: int, hop_length: int, time_pooling: Sequence[int]) -> int:
    """Output frames on each side of a frame that the log-mel and the convolution blocks read.

    A centred STFT frame reads ``n_fft / 2`` samples on each side; each block's 3-wide
    convolution reads one frame on each side at its input's resolution (the time pooling of
    the blocks before it); pooling windows stay aligned, windows starting on the output grid.
    """
    spectrogram_frames = math.ceil(n_fft / 2 / hop_length)
    resolution = 1
    for pool in time_pooling:
        spectrogram_frames += resolution  # kernel 3, padding 1
        resolution *= pool
    return math.ceil(spectrogram_frames / resolution)


#: how the CRNN normalises its log-mel before the convolutions (``normalization``)
NORMALIZATIONS = ("batch", "instance")
#: the convolutions of the CRNN's blocks (``convolution``)
CONVOLUTIONS = ("static", "frequency_dynamic")


class InstanceFrequencyNormalization(nn.Module):
    """Per-frequency normalisation of each example: every mel band less its mean over the
    example's frames, then a batch normalisation. The mean removes what a recording
    condition adds to every frame of a band (the level, a microphone's or a room's
    colouring), which the batch statistics alone leave in."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.batch = nn.BatchNorm1d(n_mels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, frames) -> the same."""
        return self.batch(features - features.mean(dim=2, keepdim=True))


class AttentionPooling(nn.Module):
    """(batch, frames, features) -> (batch, classes): per-class softmax attention over frames."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.attention = nn.Linear(in_features, num_classes)
        self.classifier = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.attention(features), dim=1)
        return (weights * self.classifier(features)).sum(dim=1)


class ClipPooling(nn.Module):
    """Clip output of a frame model, as in DCASE's baseline: the frame probabilities of each
    class averaged with attention weights (a softmax over frames) computed from the frames'
    features. Returns logits (the logit of the pooled probability), like every output."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.attention = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor, frame_logits: torch.Tensor) -> torch.Tensor:
        """(batch, frames, features), (batch, frames, classes) -> (batch, classes) logits."""
        weights = torch.softmax(self.attention(features), dim=1)
        probability = (weights * torch.sigmoid(frame_logits)).sum(dim=1)
        return torch.logit(probability.clamp(1e-6, 1.0 - 1e-6))


def statistics_pooling(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(batch, frames, features) -> (batch, 2 * features): the mean and standard deviation over frames.

    The standard deviation is the population one (a chunk of one frame gives 0, not NaN),
    kept off 0 by ``eps`` so that its gradient stays finite.
    """
    mean = features.mean(dim=1)
    variance = (features - mean.unsqueeze(1)).pow(2).mean(dim=1)
    return torch.cat([mean, torch.sqrt(variance + eps)], dim=1)


class StatisticsEmbedding(nn.Module):
    """(batch, frames, features) -> (batch, dimension): statistics pooling, then a linear layer
    (x-vector style). The embedding is not normalised: the loss and the scoring do it."""

    def __init__(self, in_features: int, dimension: int):
        super().__init__()
        self.embedding = nn.Linear(2 * in_features, dimension)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.embedding(statistics_pooling(features))


class CRNN(Model):
    """Convolutional recurrent network for sound event detection, voice activity detection and
    speaker embeddings (REPRESENTATION: the GRU output's statistics pooled, then projected to
    the specifications' ``num_outputs``, the embedding dimension).

    Parameters
    ----------
    sample_rate : int
    num_channels : int
    n_fft, hop_length, n_mels : int
        Log-mel front end (hop in samples).
    channels : sequence of int
        Output channels of each convolution block.
    time_pooling : sequence of int
        Time pooling of each block; output frame hop = ``hop_length * prod(time_pooling)``.
    hidden_size : int
        GRU units per direction.
    dropout : float
    normalization : "batch" or "instance"
        How the log-mel is normalised: each band by the statistics of the training batches
        ("batch"), or first by its mean over the example's own frames ("instance", see
        :class:`InstanceFrequencyNormalization`). An example's mean depends on all its
        frames: the "instance" CRNN does not split into encode / decode, so inference
        scores each window whole.
    convolution : "static" or "frequency_dynamic"
        The blocks' convolutions: one kernel everywhere ("static"), or, in every block but
        the first (as FDY-CRNN), kernels mixed per frequency bin
        (:class:`FrequencyDynamicConv2d`; the CRNN then scores windows whole).
    pretrained_features : mapping, optional
        A frozen pretrained encoder whose frame embeddings join the convolutions' features
        (the DCASE 2023 baseline's BEATs + CRNN): ``{"architecture", "arguments"}`` of a
        registered model that gives frame embeddings (see
        :mod:`audiotask.models.pretrained_features`; :meth:`with_pretrained_features` makes
        it from a loaded encoder). Pooled to the output frames, concatenated with the
        convolutions' features and projected back to their size before the GRU. The
        encoder's weights are the model's (saved with it) and never trained; windows are
        scored whole.
    task : Task, optional
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        num_channels: int = 1,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 64,
        channels: Sequence[int] = (32, 64, 64),
        time_pooling: Sequence[int] = (2, 2, 1),
        hidden_size: int = 64,
        dropout: float = 0.1,
        normalization: str = "batch",
        convolution: str = "static",
        pretrained_features: Optional[Mapping[str, Any]] = None,
        task=None,
    ):
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        if len(channels) != len(time_pooling):
            raise ValueError("CRNN: channels and time_pooling must have one entry per block.")
        self.frame_hop = hop_length * int(torch.tensor(list(time_pooling)).prod())
        self.features = LogMel(sample_rate, n_fft, hop_length, n_mels)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"CRNN: normalization must be one of {NORMALIZATIONS}, got {normalization!r}.")
        self.normalization = normalization
        self.normalize = nn.BatchNorm1d(n_mels) if normalization == "batch" else InstanceFrequencyNormalization(n_mels)
        if convolution not in CONVOLUTIONS:
            raise ValueError(f"CRNN: convolution must be one of {CONVOLUTIONS}, got {convolution!r}.")
        self.convolution = convolution
        blocks, in_channels, mel_bins = [], 1, n_mels
        for index, (out_channels, pool) in enumerate(zip(channels, time_pooling)):
            frequency_pool = 4 if mel_bins >= 4 else 1
            dynamic = convolution == "frequency_dynamic" and index > 0
            blocks.append(conv_block(in_channels, out_channels, (pool, frequency_pool), dropout, dynamic))
            in_channels, mel_bins = out_channels, mel_bins // frequency_pool
        self.convolutions = nn.Sequential(*blocks)
        convolution_features = in_channels * mel_bins
        #: log-mel bands at the start of :meth:`spectrogram`'s last axis (the rest: pretrained features)
        self.spectrogram_bands = n_mels
        self.pretrained_features = None
        if pretrained_features is not None:
            self.pretrained_features = PretrainedFeatures(pretrained_features, sample_rate)
            self.features_projection = nn.Linear(convolution_features + self.pretrained_features.dimension,
                                                 convolution_features)
        self.gru = nn.GRU(convolution_features, hidden_size, batch_first=True, bidirectional=True)
        self.embedding_size = 2 * hidden_size
        # a per-example mean, kernel weights from a time average, or an encoder of its own
        # read every frame: then no frame's features are local
        local = normalization == "batch" and convolution == "static" and pretrained_features is None
        self.encoder_context = encoder_context(n_fft, hop_length, time_pooling) if local else None

    training_only_prefixes = ("clip_head.",)

    @classmethod
    def with_pretrained_features(cls, encoder: Model, **arguments) -> "CRNN":
        """A CRNN (``arguments``: its other parameters) fed the frame embeddings of ``encoder``,
        a loaded model (e.g. ``Model.from_pretrained("models/beats")``), whose weights it takes;
        at the encoder's sample rate unless ``arguments`` give one."""
        arguments.setdefault("sample_rate", encoder.sample_rate)
        model = cls(pretrained_features=describe_encoder(encoder), **arguments)
        model.pretrained_features.load_encoder(encoder)
        return model

    def build(self) -> None:
        num_outputs = self.specifications.num_outputs
        if self.specifications.problem is Problem.REPRESENTATION:
            if self.specifications.resolution is not Resolution.CHUNK:
                raise ValueError(f"{type(self).__name__}: embeddings (REPRESENTATION) are one per chunk: CHUNK resolution only.")
            self.head = StatisticsEmbedding(self.embedding_size, num_outputs)
        elif self.specifications.resolution is Resolution.CHUNK:
            self.head = AttentionPooling(self.embedding_size, num_outputs)
        else:
            self.head = nn.Linear(self.embedding_size, num_outputs)
            # the clip output that weakly labelled files train (see forward_spectrogram)
            self.clip_head = ClipPooling(self.embedding_size, num_outputs)

    @property
    def spectrogram_frames_per_output(self) -> int:
        """Spectrogram frames per output frame (the convolutions' time pooling): a time shift
        of the spectrogram by a multiple of it shifts the outputs by whole frames."""
        return self.frame_hop // self.features.hop_length

    def spectrogram(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> log-mel (batch, frames, n_mels), before normalisation:
        where training augments in the time-frequency domain. With pretrained features, the
        encoder's embeddings at each log-mel frame follow the bands on the last axis
        (``spectrogram_bands`` says where they start): time shifts, mixup and time masks move
        both together, the frequency augmentations touch the bands only."""
        self.check_input(waveforms)
        log_mel = self.features(waveforms)
        if self.pretrained_features is None:
            return log_mel
        return torch.cat([log_mel, self.pretrained_features(waveforms, log_mel.shape[1])], dim=2)

    def encode_spectrogram(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """:meth:`spectrogram`'s (batch, frames, n_mels [+ embeddings]) -> convolution
        features (batch, output frames, features)."""
        log_mel = spectrogram[..., : self.spectrogram_bands]
        features = self.normalize(log_mel.transpose(1, 2)).transpose(1, 2)
        hidden = self.convolutions(features.unsqueeze(1))  # (batch, channels, frames, mel)
        hidden = hidden.permute(0, 2, 1, 3).flatten(start_dim=2)
        if self.pretrained_features is None:
            return hidden
        # the embeddings averaged over each output frame's log-mel frames, as the pooling does
        pooling = self.spectrogram_frames_per_output
        embeddings = F.avg_pool1d(spectrogram[..., self.spectrogram_bands:].transpose(1, 2), pooling, pooling)
        return self.features_projection(torch.cat([hidden, embeddings.transpose(1, 2)[:, : hidden.shape[1]]], dim=2))

    def encode(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> convolution features (batch, output frames, features):
        log-mel and convolutions, the same at every time shift (see ``encoder_context``)."""
        return self.encode_spectrogram(self.spectrogram(waveforms))

    def decode(self, features: torch.Tensor, *, clip: bool = False):
        """Convolution features of one window each -> logits: the GRU and the head; with
        ``clip``, also the clip logits (see :meth:`forward_spectrogram`)."""
        output, _ = self.gru(features)
        logits = self.head(output)
        if not clip:
            return logits
        if self.specifications.resolution is not Resolution.FRAME:
            raise ValueError(f"{type(self).__name__}: a clip output exists at FRAME resolution only.")
        return logits, self.clip_head(output, logits)

    def forward_spectrogram(self, spectrogram: torch.Tensor, *, clip: bool = False):
        """Log-mel (batch, frames, n_mels) -> logits, as :meth:`forward`; with ``clip`` (FRAME
        resolution), ``(frame logits (batch, frames, classes), clip logits (batch, classes))``."""
        return self.decode(self.encode_spectrogram(spectrogram), clip=clip)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> logits (batch, frames, classes) or (batch, classes), or
        embeddings (batch, dimension) for REPRESENTATION."""
        return self.decode(self.encode(waveforms))
