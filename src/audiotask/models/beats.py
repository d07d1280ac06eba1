"""BEATs (Chen et al., "BEATs: Audio Pre-Training with Acoustic Tokenizers", 2022), as an
audiotask model (``audiotask import beats``).

The network of microsoft/unilm's ``beats/`` folder (``BEATs.py``: ``BEATs``, ``BEATsConfig``;
``backbone.py``: ``TransformerEncoder``, ``TransformerSentenceEncoderLayer``,
``MultiheadAttention``; ``modules.py``: ``SamePad``), at inference (no dropout, no layer drop):

- ``preprocess``: the waveform times 2 ** 15 through Kaldi's 128-band log mel filterbank
  (25-ms frames every 10 ms, torchaudio's ``compliance.kaldi.fbank`` defaults; here
  :class:`~audiotask.models.kaldi_fbank.KaldiFbank`), normalised as ``(fbank - 15.41663) /
  (2 * 6.55582)``;
- ``patch_embedding``: the (frames, 128) image cut into 16x16 patches by a strided
  convolution, in time-major order (patch ``t * 8 + f``: time step ``t``, frequency band
  ``f``), then ``layer_norm`` and ``post_extract_proj`` (512 -> 768);
- ``encoder``: a convolutional position embedding (``pos_conv``: a grouped, weight-normalised
  convolution over the patches, kernel 128, the last output dropped as ``SamePad`` does, a
  GELU) added to the patches, a layer norm (before the layers, or after them when
  ``layer_norm_first``), then post-norm transformer layers whose residuals are scaled by
  DeepNorm's ``(2 * layers) ** 0.25`` (``deep_norm``), with a relative position bias
  (bucketed distances, one table held by layer 0 and used by every layer) that each layer
  gates by its queries (``gru_rel_pos``: ``grep_linear``, ``grep_a``);
- ``predictor`` (the fine-tuned checkpoints): a linear layer applied to every patch and
  averaged over them; the published probabilities are its sigmoid (the model's
  ``default_activation`` of these logits).

The modules keep the checkpoints' names, so that a published state dict loads as it is,
except for two things the importer (``audiotask/pretrained/beats.py``) handles: the
position bias table, which the published ``state_dict()`` lists under every layer (one
module shared by all), is held by layer 0 only; and ``pos_conv``'s weight normalisation
keeps the published ``weight_g`` / ``weight_v`` parameters, the weight computed from them
(``nn.utils.weight_norm(..., dim=2)``: one norm per kernel position).

Outputs, by the specifications:

- CHUNK classification (and regression): ``predictor`` on the patches' mean (equal to the
  published mean of the per-patch logits, the layer being linear);
- FRAME: ``predictor`` on each time step of :meth:`BEATs.frame_embeddings`, one output per
  ``frame_hop`` = 2560 samples (160 ms);
- REPRESENTATION CHUNK: the patches' mean (768 values, the DCASE baseline's "global"
  embedding); when the task asks for another dimension, a linear ``predictor`` projects it
  (trained by the task; there is none at 768).

The published padding mask (variable-length batches) is not used: chunks are whole.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution
from audiotask.models.kaldi_fbank import KaldiFbank

SAMPLE_RATE = 16000
NUM_MEL_BINS = 128
FRAME_LENGTH = 400  # 25 ms
HOP = 160  # 10 ms
#: BEATs.preprocess's normalisation of the filterbank (its AudioSet statistics)
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582
#: waveforms in [-1, 1] scaled to 16-bit sample values, as BEATs.preprocess feeds Kaldi
WAVEFORM_SCALE = 2 ** 15
#: zeros appended at FRAME resolution: the filterbank then has ``samples // 160`` frames
FRAME_PADDING = FRAME_LENGTH - HOP


class SamePad(nn.Module):
    """``modules.py``'s SamePad (not causal): drops the last output of an even kernel."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : x.shape[-1] - self.remove]


class WeightNormConv1d(nn.Module):
    """``nn.utils.weight_norm(nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2,
    groups=groups), name="weight", dim=2)``, with its parameters ``weight_g`` (1, 1, kernel)
    and ``weight_v``: the weight is ``weight_v * weight_g / norm``, the norm taken over the
    output and input channels at each kernel position."""

    def __init__(self, channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.padding, self.groups = kernel_size // 2, groups
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel_size))
        nn.init.normal_(self.weight_v, mean=0.0, std=math.sqrt(4.0 / (kernel_size * channels)))
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(self.weight_v.detach(), dim=(0, 1), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(channels))

    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / torch.linalg.vector_norm(self.weight_v, dim=(0, 1), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight(), self.bias, padding=self.padding, groups=self.groups)


def relative_position_buckets(length: int, num_buckets: int, max_distance: int,
                              device: Optional[torch.device] = None) -> torch.Tensor:
    """(length, length) bucket of each (query, key) pair: ``MultiheadAttention.
    _relative_positions_bucket`` (bidirectional) of ``key - query``. Half the buckets for
    keys after the query; within each half, distances below a quarter of the buckets have one
    bucket each, longer ones share logarithmically spaced buckets up to ``max_distance``."""
    positions = torch.arange(length, dtype=torch.long, device=device)
    relative = positions[None, :] - positions[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).to(torch.long) * half
    distance = relative.abs()
    max_exact = half // 2
    # float32 throughout, as the published code computes it (bucket edges land where its do);
    # clamped at 1: log(0) is only ever computed for the small distances it does not use
    large = max_exact + (torch.log(distance.float().clamp_min(1.0) / max_exact) / math.log(max_distance / max_exact)
                         * (half - max_exact)).to(torch.long)
    large = torch.clamp(large, max=half - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class MultiheadAttention(nn.Module):
    """``backbone.py``'s MultiheadAttention (self-attention) with its relative position bias
    gated by the queries (``gru_rel_pos``)."""

    def __init__(self, embed_dim: int, num_heads: int, has_relative_attention_bias: bool, num_buckets: int,
                 max_distance: int, gru_rel_pos: bool):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.num_buckets, self.max_distance = num_buckets, max_distance
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.gru_rel_pos = gru_rel_pos
        if gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))

    def position_bias(self, length: int) -> torch.Tensor:
        """(heads, length, length) bias of every (query, key) pair (``compute_bias``)."""
        buckets = relative_position_buckets(length, self.num_buckets, self.max_distance,
                                            device=self.relative_attention_bias.weight.device)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def gated_bias(self, queries: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        """(batch, heads, length, length): the position bias scaled, per head and query, by
        ``a * (b * grep_a - 1) + 2``, where ``a`` and ``b`` are sigmoids of sums of
        ``grep_linear``'s outputs on the (unscaled) query."""
        batch, heads, length, _ = queries.shape
        gates = torch.sigmoid(self.grep_linear(queries).view(batch, heads, length, 2, 4).sum(-1))
        gate_a, gate_b = gates.chunk(2, dim=-1)
        return (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * position_bias.unsqueeze(0)

    def forward(self, x: torch.Tensor, position_bias: Optional[torch.Tensor]) -> torch.Tensor:
        """(batch, length, dim) -> (batch, length, dim); ``position_bias`` (heads, length,
        length) or None. ``softmax(q k / sqrt(head_dim) + bias) v``: the published code scales
        the queries down by 32 and subtracts each row's maximum before scaling back (for
        half precision), which changes nothing else."""
        queries = self.split_heads(self.q_proj(x))
        keys, values = self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))
        bias = None
        if position_bias is not None:
            bias = self.gated_bias(queries, position_bias) if self.gru_rel_pos else position_bias.unsqueeze(0)
            bias = bias.to(queries.dtype)
        attended = F.scaled_dot_product_attention(queries, keys, values, attn_mask=bias)
        batch, _, length, _ = attended.shape
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, -1))


class TransformerSentenceEncoderLayer(nn.Module):
    """``backbone.py``'s layer with a GELU feed-forward: post-norm, the residuals scaled by
    ``deep_norm_alpha``, or pre-norm (``layer_norm_first``)."""

    def __init__(self, embed_dim: int, ffn_dim: int, num_heads: int, layer_norm_first: bool, deep_norm_alpha: float,
                 has_relative_attention_bias: bool, num_buckets: int, max_distance: int, gru_rel_pos: bool):
        super().__init__()
        self.self_attn = MultiheadAttention(embed_dim, num_heads, has_relative_attention_bias, num_buckets,
                                            max_distance, gru_rel_pos)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)
        self.layer_norm_first, self.deep_norm_alpha = layer_norm_first, deep_norm_alpha

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))

    def forward(self, x: torch.Tensor, position_bias: Optional[torch.Tensor]) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x), position_bias)
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x * self.deep_norm_alpha + self.self_attn(x, position_bias))
        return self.final_layer_norm(x * self.deep_norm_alpha + self.feed_forward(x))


class TransformerEncoder(nn.Module):
    """``backbone.py``'s TransformerEncoder at inference: position convolution, layer norm
    (first, or last with ``layer_norm_first``), the layers; the position bias is layer 0's,
    computed once and given to every layer."""

    def __init__(self, *, encoder_layers: int, encoder_embed_dim: int, encoder_ffn_embed_dim: int,
                 encoder_attention_heads: int, conv_pos: int, conv_pos_groups: int, relative_position_embedding: bool,
                 num_buckets: int, max_distance: int, gru_rel_pos: bool, deep_norm: bool, layer_norm_first: bool):
        super().__init__()
        self.pos_conv = nn.Sequential(WeightNormConv1d(encoder_embed_dim, conv_pos, conv_pos_groups),
                                      SamePad(conv_pos), nn.GELU())
        alpha = math.pow(2 * encoder_layers, 1 / 4) if deep_norm else 1.0
        self.relative_position_embedding = relative_position_embedding
        self.layers = nn.ModuleList(
            TransformerSentenceEncoderLayer(
                encoder_embed_dim, encoder_ffn_embed_dim, encoder_attention_heads, layer_norm_first, alpha,
                # the table of layer 0 only: the published layers share it
                relative_position_embedding and index == 0, num_buckets, max_distance, gru_rel_pos)
            for index in range(encoder_layers))
        self.layer_norm_first = layer_norm_first
        self.layer_norm = nn.LayerNorm(encoder_embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, patches, dim) -> (batch, patches, dim)."""
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        position_bias = self.layers[0].self_attn.position_bias(x.shape[1]) if self.relative_position_embedding else None
        for layer in self.layers:
            x = layer(x, position_bias)
        return self.layer_norm(x) if self.layer_norm_first else x


class BEATs(Model):
    """BEATs audio encoder: patch embeddings of a Kaldi filterbank through a transformer.

    Parameters
    ----------
    sample_rate : int
        16000 only (the published front end).
    num_channels : int
        1 only.
    encoder_layers, encoder_embed_dim, encoder_ffn_embed_dim, encoder_attention_heads,
    input_patch_size, embed_dim, conv_bias, conv_pos, conv_pos_groups,
    relative_position_embedding, num_buckets, max_distance, gru_rel_pos, deep_norm,
    layer_norm_first
        The checkpoint's ``cfg`` values of these names (``BEATsConfig``); the defaults are
        BEATs_iter3's.
    task : Task, optional

    Attributes
    ----------
    embedding_dimension : int
        Dimension of :meth:`frame_embeddings` (``encoder_embed_dim``, 768).
    embedding_hop : int
        Input samples per embedding step (and per FRAME output): a patch's 16 filterbank
        frames of 160 samples, 2560 (160 ms).
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, num_channels: int = 1, encoder_layers: int = 12,
                 encoder_embed_dim: int = 768, encoder_ffn_embed_dim: int = 3072, encoder_attention_heads: int = 12,
                 input_patch_size: int = 16, embed_dim: int = 512, conv_bias: bool = False, conv_pos: int = 128,
                 conv_pos_groups: int = 16, relative_position_embedding: bool = True, num_buckets: int = 320,
                 max_distance: int = 800, gru_rel_pos: bool = True, deep_norm: bool = True,
                 layer_norm_first: bool = False, task=None):
        if int(sample_rate) != SAMPLE_RATE or int(num_channels) != 1:
            raise ValueError(f"BEATs: 16 kHz mono only (the published front end and weights), got {sample_rate} Hz, "
                             f"{num_channels} channel(s).")
        check_arguments(encoder_embed_dim=encoder_embed_dim, encoder_attention_heads=encoder_attention_heads,
                     conv_pos_groups=conv_pos_groups, input_patch_size=input_patch_size, deep_norm=deep_norm,
                     layer_norm_first=layer_norm_first)
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        self.fbank = KaldiFbank(NUM_MEL_BINS, SAMPLE_RATE)
        self.input_patch_size = int(input_patch_size)
        self.patch_embedding = nn.Conv2d(1, embed_dim, kernel_size=input_patch_size, stride=input_patch_size,
                                         bias=conv_bias)
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.post_extract_proj = nn.Linear(embed_dim, encoder_embed_dim) if embed_dim != encoder_embed_dim else None
        self.encoder = TransformerEncoder(
            encoder_layers=encoder_layers, encoder_embed_dim=encoder_embed_dim,
            encoder_ffn_embed_dim=encoder_ffn_embed_dim, encoder_attention_heads=encoder_attention_heads,
            conv_pos=conv_pos, conv_pos_groups=conv_pos_groups, relative_position_embedding=relative_position_embedding,
            num_buckets=num_buckets, max_distance=max_distance, gru_rel_pos=gru_rel_pos, deep_norm=deep_norm,
            layer_norm_first=layer_norm_first)
        #: patches per time step: the frequency bands the 128 mel bins are cut into (8)
        self.frequency_patches = NUM_MEL_BINS // self.input_patch_size
        self.embedding_dimension = int(encoder_embed_dim)
        self.embedding_hop = HOP * self.input_patch_size
        self.frame_hop = self.embedding_hop

    def build(self) -> None:
        """The head ``predictor``: a linear layer to the task's outputs, except for an embedding
        of the encoder's own dimension (the patches' mean as it is)."""
        specifications = self.specifications
        if specifications.problem is Problem.REPRESENTATION:
            if specifications.resolution is not Resolution.CHUNK:
                raise ValueError("BEATs: embeddings are per chunk (REPRESENTATION, CHUNK); frame_embeddings() "
                                 "gives them per time step.")
            if specifications.num_outputs == self.embedding_dimension:
                self.predictor = nn.Identity()
                return
        self.predictor = nn.Linear(self.embedding_dimension, specifications.num_outputs)

    # ---- the published network --------------------------------------------------------
    @property
    def min_samples(self) -> int:
        """The shortest input with a patch: 16 filterbank frames, 2800 samples (0.175 s)."""
        return FRAME_LENGTH + HOP * (self.input_patch_size - 1)

    def num_steps(self, num_samples: int) -> int:
        """Time steps of :meth:`frame_embeddings` for ``num_samples`` samples: the filterbank's
        ``1 + (num_samples - 400) // 160`` frames (none below 400 samples), cut into whole
        patches of 16 (the remainder is left out), i.e. ``(num_samples - 240) // 2560``
        (62 for 10 s)."""
        return self.fbank.num_frames(num_samples) // self.input_patch_size

    def preprocess(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, frames, 128): ``BEATs.preprocess``'s normalised
        Kaldi filterbank."""
        self.check_input(waveforms)
        fbank = self.fbank(waveforms[:, 0] * WAVEFORM_SCALE)
        return (fbank - FBANK_MEAN) / (2 * FBANK_STD)

    def patch_features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, steps * 8, dim): the encoder's output for each patch,
        time-major (``BEATs.extract_features`` without a predictor); no patches when the
        input is shorter than :attr:`min_samples`."""
        fbank = self.preprocess(waveforms)
        if fbank.shape[1] < self.input_patch_size:
            return fbank.new_zeros(fbank.shape[0], 0, self.embedding_dimension)
        features = self.patch_embedding(fbank.unsqueeze(1))  # (batch, embed_dim, steps, bands)
        features = self.layer_norm(features.flatten(2).transpose(1, 2))
        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)
        return self.encoder(features)

    def frame_embeddings(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, num_steps(samples), 768): each time step's patches
        (its 8 frequency bands) averaged, one embedding per 160 ms; step ``t`` is computed
        from samples ``[2560 t, 2560 t + 2800)`` (and, through attention, from the whole
        input).

        The DCASE 2023-2024 task-4 baseline (DCASE-REPO/DESED_task, ``local/beats/BEATs.py``'s
        ``BEATsModel``) keeps the 496 patches of a 10-s clip unaveraged, in this time-major
        order, and its CRNN (``aggregation_type: pool1d``) average-pools that sequence to its
        own frame count; averaging the bands of each step first gives every frame whole steps.
        """
        patches = self.patch_features(waveforms)
        batch, count, dimension = patches.shape
        return patches.view(batch, count // self.frequency_patches, self.frequency_patches, dimension).mean(dim=2)

    # ---- audiotask's outputs ----------------------------------------------------------
    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, outputs) at CHUNK resolution, (batch, samples // 2560,
        outputs) at FRAME resolution (logits, or embeddings)."""
        if self.specifications.resolution is Resolution.FRAME:
            # 240 samples more make (samples - 240) // 2560 steps samples // 2560, audiotask's
            # frame count; they change nothing when the chunk ends 240 samples or more past a step
            padded = F.pad(waveforms, (0, FRAME_PADDING))
            return self.predictor(self.frame_embeddings(padded))
        patches = self.patch_features(waveforms)
        if patches.shape[1] == 0:
            raise ValueError(f"BEATs: chunks of at least {self.min_samples} samples "
                             f"({self.min_samples / SAMPLE_RATE} s) needed, got {waveforms.shape[-1]}.")
        return self.predictor(patches.mean(dim=1))


def check_arguments(*, encoder_embed_dim: int, encoder_attention_heads: int, conv_pos_groups: int,
                    input_patch_size: int, deep_norm: bool, layer_norm_first: bool) -> None:
    """``ValueError`` naming the argument when the published code would not build the network."""
    if encoder_embed_dim % encoder_attention_heads:
        raise ValueError(f"BEATs: encoder_embed_dim ({encoder_embed_dim}) must be a multiple of "
                         f"encoder_attention_heads ({encoder_attention_heads}).")
    if encoder_embed_dim % conv_pos_groups:
        raise ValueError(f"BEATs: encoder_embed_dim ({encoder_embed_dim}) must be a multiple of "
                         f"conv_pos_groups ({conv_pos_groups}).")
    if not 0 < input_patch_size <= NUM_MEL_BINS:
        raise ValueError(f"BEATs: input_patch_size must be in [1, {NUM_MEL_BINS}], got {input_patch_size}.")
    if deep_norm and layer_norm_first:
        raise ValueError("BEATs: deep_norm and layer_norm_first exclude each other (BEATs.py asserts it).")
