"""``audiotask import wespeaker --weights avg_model.pt``: a WeSpeaker ResNet speaker encoder.

WeSpeaker (wenet-e2e/wespeaker) publishes its models as a folder of ``config.yaml`` and
``avg_model.pt``, a bare state dict (``wespeaker/utils/checkpoint.py``'s ``save_checkpoint``)
of ``wespeaker/models/resnet.py``'s ``ResNet``, whose names audiotask's
:class:`~audiotask.models.wespeaker_resnet.WeSpeakerResNet` keeps, plus ``projection.*``,
the weights of the training loss (``wespeaker/bin/train.py`` adds its ArcMarginProduct to the
model), which are dropped. The depth (ResNet34's blocks, or the Bottleneck blocks of
ResNet221 and ResNet293), the width, the mel bands and the embedding dimension are read from
the weights' names and shapes; ``config.yaml`` is not needed. The file is read with
``torch.load(weights_only=True)``: tensors and plain containers only, no code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

import torch

from audiotask.pretrained import check_layout, load_checkpoint_data, weights_file

#: prefix of the training loss's weights (ArcMarginProduct and the other projections): not the encoder's
LOSS_PREFIX = "projection."
#: seconds per chunk of ``apply``'s embeddings: WeSpeaker's training crops (``num_frms: 200``,
#: 2 s; the chunk the network learnt from), which still holds a single speaker in conversations
CHUNK_SECONDS = 2.0
#: ResNet34(feat_dim=80, embed_dim=256) with m_channels=32: what a checkpoint's missing keys default to
DEFAULTS = {"num_blocks": (3, 4, 6, 3), "block": "basic", "m_channels": 32, "feat_dim": 80}
DEFAULT_DIMENSION = 256
EXAMPLE = "voxceleb_resnet34/avg_model.pt"


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The encoder's weights in the checkpoint ``path``, the loss's left out (``ValueError``
    naming it when it is not a state dict of tensors)."""
    checkpoint = load_checkpoint_data(path)
    if not isinstance(checkpoint, Mapping) or not all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        raise ValueError(f"{path}: not a bare state dict of tensors (not WeSpeaker's avg_model.pt layout)")
    return {name: tensor for name, tensor in checkpoint.items() if not name.startswith(LOSS_PREFIX)}


def blocks_per_layer(state: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """How many blocks each of ``layer1`` to ``layer4`` holds (0: none)."""
    counts = []
    for layer in range(1, 5):
        count = 0
        while f"layer{layer}.{count}.conv1.weight" in state:
            count += 1
        counts.append(count)
    return tuple(counts)


def resnet_arguments(state: Mapping[str, torch.Tensor]) -> dict:
    """``WeSpeakerResNet``'s arguments read from the weights: the blocks, their kind (a
    ``Bottleneck`` has a ``conv3``), the first layer's width and the mel bands (from
    ``seg_1``'s input, ``2 * int(feat_dim / 8) * m_channels * 8 * expansion``). What cannot be
    read is ResNet34's: the layout check then names the key that does not fit."""
    arguments = dict(DEFAULTS)
    num_blocks = blocks_per_layer(state)
    if min(num_blocks) > 0:
        arguments["num_blocks"] = num_blocks
    bottleneck = "layer1.0.conv3.weight" in state
    arguments["block"] = "bottleneck" if bottleneck else "basic"
    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.ndim == 4 and conv1.shape[0] > 0:
        arguments["m_channels"] = int(conv1.shape[0])
    seg_1 = state.get("seg_1.weight")
    per_band = 2 * arguments["m_channels"] * 8 * (4 if bottleneck else 1)
    if seg_1 is not None and seg_1.ndim == 2 and seg_1.shape[1] > 0 and seg_1.shape[1] % per_band == 0:
        arguments["feat_dim"] = 8 * (int(seg_1.shape[1]) // per_band)
    return arguments


def embedding_dimension(state: Mapping[str, torch.Tensor]) -> int:
    """``seg_1``'s outputs: the embedding dimension (256 for the published ResNets)."""
    seg_1 = state.get("seg_1.weight")
    return int(seg_1.shape[0]) if seg_1 is not None and seg_1.ndim == 2 and seg_1.shape[0] > 0 else DEFAULT_DIMENSION


def specifications(dimension: int = DEFAULT_DIMENSION):
    """What the imported model computes: one speaker embedding per chunk, as ``--task embedding``."""
    from audiotask.core.specifications import TASK_NAME, Problem, Resolution, Specifications

    return Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=CHUNK_SECONDS,
                          extra={TASK_NAME: "speaker-embedding", "dimension": int(dimension)})


def import_wespeaker(output: Union[str, Path], weights: Optional[Union[str, Path]] = None) -> Path:
    """Write the WeSpeaker ResNet of the checkpoint ``weights`` (its ``avg_model.pt``) as an
    audiotask model folder ``output`` and return it."""
    from audiotask.models.wespeaker_resnet import WeSpeakerResNet, depth_name

    path = weights_file(weights, source="wespeaker", example=EXAMPLE)
    state = read_state(path)
    arguments = resnet_arguments(state)
    model = WeSpeakerResNet(**arguments)
    model.attach_specifications(specifications(embedding_dimension(state)))
    network = f"WeSpeaker's {depth_name(arguments['num_blocks'], arguments['block'])}"
    check_layout(state, model.state_dict(), source=str(path), network=network)
    model.load_state_dict(state)
    return model.save_pretrained(output)
