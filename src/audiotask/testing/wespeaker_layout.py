"""Checkpoints of WeSpeaker's ResNet layouts with random weights: the names and shapes of the
``avg_model.pt`` that WeSpeaker publishes (a bare state dict, ``wespeaker/utils/checkpoint.py``'s
``save_checkpoint``), so that ``audiotask import wespeaker`` is tested without downloading it.

Transcribed from wenet-e2e/wespeaker's ``wespeaker/models/resnet.py`` (not from audiotask's
model): ``conv1``/``bn1``, then ``layer1`` to ``layer4`` of blocks named by their index (a
``BasicBlock``'s ``conv1, bn1, conv2, bn2``, a ``Bottleneck``'s also ``conv3, bn3``), a block's
``shortcut.0`` (1x1 convolution) and ``shortcut.1`` (batch normalisation) where it changes the
shape, ``seg_1`` (TSTP has no weights; ``seg_bn_1`` and ``seg_2`` are Identity without
``two_emb_layer``), and ``projection.weight``, the ArcMarginProduct's class weights that
``wespeaker/bin/train.py`` adds to the model for the loss.
"""

from __future__ import annotations

from typing import Sequence

import torch

#: VoxCeleb2's 5994 training speakers, three times: speed-perturbed copies count as speakers
#: (the -LM fine-tuned checkpoints keep the first 5994 rows)
VOXCELEB_LOSS_CLASSES = 3 * 5994
EMBED_DIM = 256
M_CHANNELS = 32
FEAT_DIM = 80


def batch_norm_layout(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    """An ``nn.BatchNorm2d``'s state: affine weights, running statistics, the batch counter (a scalar)."""
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,), f"{prefix}.running_mean": (channels,),
            f"{prefix}.running_var": (channels,), f"{prefix}.num_batches_tracked": ()}


def block_layout(prefix: str, in_planes: int, planes: int, stride: int, bottleneck: bool) -> dict:
    """One ``BasicBlock`` or ``Bottleneck`` of resnet.py."""
    expansion = 4 if bottleneck else 1
    if bottleneck:
        layout = {f"{prefix}.conv1.weight": (planes, in_planes, 1, 1), **batch_norm_layout(f"{prefix}.bn1", planes),
                  f"{prefix}.conv2.weight": (planes, planes, 3, 3), **batch_norm_layout(f"{prefix}.bn2", planes),
                  f"{prefix}.conv3.weight": (expansion * planes, planes, 1, 1),
                  **batch_norm_layout(f"{prefix}.bn3", expansion * planes)}
    else:
        layout = {f"{prefix}.conv1.weight": (planes, in_planes, 3, 3), **batch_norm_layout(f"{prefix}.bn1", planes),
                  f"{prefix}.conv2.weight": (planes, planes, 3, 3), **batch_norm_layout(f"{prefix}.bn2", planes)}
    if stride != 1 or in_planes != expansion * planes:
        layout[f"{prefix}.shortcut.0.weight"] = (expansion * planes, in_planes, 1, 1)
        layout.update(batch_norm_layout(f"{prefix}.shortcut.1", expansion * planes))
    return layout


def wespeaker_resnet_layout(num_blocks: Sequence[int] = (3, 4, 6, 3), bottleneck: bool = False,
                            m_channels: int = M_CHANNELS, feat_dim: int = FEAT_DIM, embed_dim: int = EMBED_DIM,
                            loss_classes: int = VOXCELEB_LOSS_CLASSES) -> dict[str, tuple[int, ...]]:
    """Names and shapes of ``ResNet(block, num_blocks, m_channels, feat_dim, embed_dim,
    pooling_func='TSTP', two_emb_layer=False)`` with its ``projection`` (loss) weights."""
    expansion = 4 if bottleneck else 1
    layout = {"conv1.weight": (m_channels, 1, 3, 3), **batch_norm_layout("bn1", m_channels)}
    in_planes = m_channels
    for layer, (count, stride) in enumerate(zip(num_blocks, (1, 2, 2, 2)), start=1):
        planes = m_channels * 2 ** (layer - 1)
        for index in range(count):
            layout.update(block_layout(f"layer{layer}.{index}", in_planes, planes, stride if index == 0 else 1,
                                       bottleneck))
            in_planes = planes * expansion
    stats_dim = int(feat_dim / 8) * m_channels * 8 * expansion
    layout.update({"seg_1.weight": (embed_dim, 2 * stats_dim), "seg_1.bias": (embed_dim,),
                   "projection.weight": (loss_classes, embed_dim)})
    return layout


#: the published ResNet34 (voxceleb_resnet34, cnceleb_resnet34...: ResNet34(feat_dim=80, embed_dim=256))
RESNET34_LAYOUT = wespeaker_resnet_layout()


def random_wespeaker_checkpoint(seed: int = 0, layout: dict | None = None) -> dict[str, torch.Tensor]:
    """A bare state dict of ``layout`` (default :data:`RESNET34_LAYOUT`) with random weights of
    a trained network's scale: He-initialised convolutions, batch normalisations near the
    identity with positive running variances, a batch counter."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in (RESNET34_LAYOUT if layout is None else layout).items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000 + seed, dtype=torch.int64)
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=generator)
        elif name.endswith(("running_mean", ".bias")):
            state[name] = 0.1 * torch.randn(shape, generator=generator)
        elif len(shape) == 1:  # batch normalisation scales
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            fan_in = 1
            for size in shape[1:]:
                fan_in *= size
            state[name] = (2.0 / fan_in) ** 0.5 * torch.randn(shape, generator=generator)
    return state
