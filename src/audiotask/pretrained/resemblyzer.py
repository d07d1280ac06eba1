"""``audiotask import resemblyzer``: the GE2E speaker encoder that the resemblyzer package ships.

The package is located, not imported (its import is broken on current setuptools, and
importing it would run its code): its ``resemblyzer/pretrained.pt`` is read with
``torch.load(weights_only=True)``, which unpickles tensors and plain containers only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

import torch

from audiotask.pretrained import check_layout, load_checkpoint_data, package_file, weights_file

#: the checkpoint below the package's folder, and the state dict inside it
PACKAGE_WEIGHTS = Path("pretrained.pt")
STATE_KEY = "model_state"
#: GE2E's training-loss parameters (the similarity's scale and bias): not the encoder's
LOSS_KEYS = ("similarity_weight", "similarity_bias")
#: seconds per chunk of ``apply``'s segment embeddings: one partial utterance of 160 frames
CHUNK_SECONDS = 1.6
DIMENSION = 256


def package_weights() -> Path:
    """The checkpoint of the installed resemblyzer package."""
    return package_file("resemblyzer", str(PACKAGE_WEIGHTS), install="pip install --no-deps resemblyzer")


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The encoder's weights in the checkpoint ``path`` (``ValueError`` naming it when it is
    not such a checkpoint, or holds more than tensors)."""
    checkpoint = load_checkpoint_data(path)
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get(STATE_KEY), Mapping):
        raise ValueError(f"{path}: no {STATE_KEY!r} state dict (not resemblyzer's checkpoint layout)")
    return {name: tensor for name, tensor in checkpoint[STATE_KEY].items() if name not in LOSS_KEYS}


def specifications():
    """What the imported model computes: one speaker embedding per chunk, as ``--task embedding``."""
    from audiotask.core.specifications import TASK_NAME, Problem, Resolution, Specifications

    return Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=CHUNK_SECONDS,
                          extra={TASK_NAME: "speaker-embedding", "dimension": DIMENSION})


def import_resemblyzer(output: Union[str, Path], weights: Optional[Union[str, Path]] = None) -> Path:
    """Write resemblyzer's encoder as an audiotask model folder ``output`` and return it;
    ``weights``: a checkpoint of its layout (default: the installed package's)."""
    from audiotask.models.resemblyzer import Resemblyzer

    path = weights_file(weights, default=package_weights)
    state = read_state(path)
    model = Resemblyzer()
    model.attach_specifications(specifications())
    check_layout(state, model.state_dict(), source=str(path), network="resemblyzer's encoder")
    model.load_state_dict(state)
    return model.save_pretrained(output)
