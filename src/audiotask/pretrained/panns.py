"""``audiotask import panns``: a PANNs CNN14 or CNN10 AudioSet tagging checkpoint as a PANNs model.

The checkpoints of qiuqiangkong/audioset_tagging_cnn (Zenodo record 3987831, e.g.
``Cnn14_mAP=0.431.pth``, ``Cnn10_mAP=0.380.pth``: 32 kHz, 527 AudioSet classes) are read
with ``torch.load(weights_only=True)``: tensors and plain containers only. The training
script (``pytorch/main.py``) saves ``{"iteration", "model", "sampler"}``, the sampler's state
holding numpy arrays: numpy's array and scalar constructors (data, no code) are allowed too,
so that such a file loads. The ``"model"`` entry (or a bare state dict) is the network's
state; which network it is (CNN14 or CNN10) is read from its keys.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch

from audiotask.pretrained import check_layout, load_checkpoint_data, weights_file

STATE_KEY = "model"
NUM_CLASSES = 527
#: AudioSet's clips: the duration the published taggers were trained on
CLIP_SECONDS = 10.0
#: (variant, a key only its checkpoints have), checked in order: CNN14 has CNN10's blocks and two more
VARIANT_KEYS = (("cnn14", "conv_block6.conv1.weight"), ("cnn10", "conv_block4.conv1.weight"))
NETWORKS = {"cnn14": "a PANNs CNN14 (32 kHz, 527 classes)", "cnn10": "a PANNs CNN10 (32 kHz, 527 classes)"}
#: the columns of AudioSet's class_labels_indices.csv
LABEL_COLUMNS = ("index", "mid", "display_name")
EXAMPLE = "Cnn14_mAP=0.431.pth"


def numpy_data_globals() -> list:
    """numpy's constructors of arrays, scalars and numeric dtypes, under the names numpy 1 and 2
    pickle them with: they rebuild data from bytes and run no other code (an object array's
    items would still need globals of their own, which stay refused)."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    allowed = [np.ndarray, np.dtype, *{type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    return allowed


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The network's state in the checkpoint ``path``: its ``"model"`` entry, or the whole file
    when it is a bare state dict (``ValueError`` naming ``path`` otherwise)."""
    checkpoint = load_checkpoint_data(path, allowed_globals=numpy_data_globals())
    state = checkpoint.get(STATE_KEY, checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: neither a state dict nor a checkpoint with a {STATE_KEY!r} state dict "
                         "(not a PANNs checkpoint)")
    return dict(state)


def detect_variant(state: Mapping[str, torch.Tensor], *, source: str) -> str:
    """"cnn14" or "cnn10", from the convolution blocks that ``state`` has."""
    for variant, key in VARIANT_KEYS:
        if key in state:
            return variant
    raise ValueError(f"{source}: not a PANNs CNN14 or CNN10 checkpoint (no {VARIANT_KEYS[-1][1]})")


def default_labels(count: int = NUM_CLASSES) -> list[str]:
    """``"audioset_000"``, ``"audioset_001"``...: the output classes when AudioSet's names are not given."""
    return [f"audioset_{index:03d}" for index in range(count)]


def read_labels(path: Union[str, Path], count: int = NUM_CLASSES) -> list[str]:
    """The ``display_name`` of each row of AudioSet's ``class_labels_indices.csv`` (columns
    index, mid, display_name), in index order; a name that two classes share is told apart by
    its ``mid`` ("Name (/m/...)")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such labels file: {path}")
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is no column name
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not set(LABEL_COLUMNS) <= {name.strip() for name in reader.fieldnames}:
            raise ValueError(f"{path}: not AudioSet's class_labels_indices.csv (columns {', '.join(LABEL_COLUMNS)} "
                             f"expected, got {reader.fieldnames})")
        rows = [{key.strip(): (value or "").strip() for key, value in row.items() if key} for row in reader]
    if [row["index"] for row in rows] != [str(index) for index in range(len(rows))]:
        raise ValueError(f"{path}: its index column is not 0, 1, 2... in order")
    if len(rows) != count:
        raise ValueError(f"{path}: {len(rows)} classes, the checkpoint has {count}")
    names = [row["display_name"] for row in rows]
    return [f"{name} ({row['mid']})" if names.count(name) > 1 else name for name, row in zip(names, rows)]


def specifications(classes: Sequence[str]):
    """What the imported model computes: AudioSet tags of 10-second chunks, as ``--task tagging`` trains them."""
    from audiotask.core.specifications import TASK_NAME, Problem, Resolution, Specifications

    return Specifications(problem=Problem.MULTI_LABEL_CLASSIFICATION, resolution=Resolution.CHUNK,
                          duration=CLIP_SECONDS, classes=list(classes), extra={TASK_NAME: "audio-tagging"})


def import_panns(output: Union[str, Path], weights: Optional[Union[str, Path]] = None,
                 labels: Optional[Union[str, Path]] = None) -> Path:
    """Write a PANNs CNN14 or CNN10 checkpoint as an audiotask model folder ``output`` and return it.

    Parameters
    ----------
    output : path
        The model folder to write.
    weights : path
        The published checkpoint (e.g. ``Cnn14_mAP=0.431.pth``); which network it is is read
        from its keys.
    labels : path, optional
        AudioSet's ``class_labels_indices.csv`` (columns index, mid, display_name), whose
        display names become the class names. Without it (it is not downloaded here), the
        classes are named ``"audioset_000"`` to ``"audioset_526"``, in the checkpoint's order.
    """
    from audiotask.models.panns import PANNs

    path = weights_file(weights, source="panns", example=EXAMPLE)
    state = read_state(path)
    variant = detect_variant(state, source=str(path))
    classes = default_labels() if labels is None else read_labels(labels)
    model = PANNs(variant=variant)
    model.attach_specifications(specifications(classes))
    check_layout(state, model.state_dict(), source=str(path), network=NETWORKS[variant])
    model.load_state_dict(state)
    return model.save_pretrained(output)
