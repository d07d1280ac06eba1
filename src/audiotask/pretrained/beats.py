"""``audiotask import beats --weights FILE``: a BEATs checkpoint of microsoft/unilm.

The published checkpoints (``beats/README.md``: ``BEATs_iter3.pt``,
``BEATs_iter3_plus_AS2M.pt``, ``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``, ...) are
dicts of ``"cfg"`` (the plain values ``BEATsConfig`` is updated with), ``"model"`` (the
state dict of ``BEATs.py``'s ``BEATs``) and, in the fine-tuned ones, ``"label_dict"``
(class index -> AudioSet label, read by the README's example). They are read with
``torch.load(weights_only=True)``: tensors and plain containers only, no code.

The cfg gives :class:`~audiotask.models.beats.BEATs`'s arguments; a key it lacks takes
``BEATsConfig``'s default, as the published code does; a key neither reads is ignored, as
the published code ignores it; values of training only (dropouts, layer drop, the gradient
decay) change nothing at inference. A value that changes the network in a way audiotask's
model does not compute (another ``activation_fn`` than GELU, ``deep_norm`` with
``layer_norm_first``, a value of the wrong type) is refused, naming the key.

The state dict maps by name, but for the position bias table: ``backbone.py`` shares layer
0's ``relative_attention_bias`` with every layer, so the published state dict lists it
under each; the copies are checked (names, shapes) and left out, audiotask's model holding
layer 0's. A fine-tuned checkpoint (``finetuned_model``: a ``predictor``) becomes an AudioSet
tagger (``--task tagging``), the others an encoder of 768-dimensional clip embeddings
(``--task embedding``) whose frame embeddings another model can use as features.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from audiotask.pretrained import check_layout, first_line, load_checkpoint_data, weights_file

EXAMPLE = "BEATs_iter3.pt"
#: seconds per chunk: AudioSet's ten-second clips, which BEATs was pre-trained and fine-tuned on
CHUNK_SECONDS = 10.0
AUDIOSET_CLASSES = 527
#: ``BEATsConfig``'s defaults (``BEATs.py``), which a checkpoint's cfg updates
CONFIG_DEFAULTS: dict[str, Any] = {
    "input_patch_size": -1, "embed_dim": 512, "conv_bias": False, "encoder_layers": 12, "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12, "activation_fn": "gelu",
    "layer_wise_gradient_decay_ratio": 1.0, "layer_norm_first": False, "deep_norm": False, "dropout": 0.1,
    "attention_dropout": 0.1, "activation_dropout": 0.0, "encoder_layerdrop": 0.0, "dropout_input": 0.0,
    "conv_pos": 128, "conv_pos_groups": 16, "relative_position_embedding": False, "num_buckets": 320,
    "max_distance": 1280, "gru_rel_pos": False, "finetuned_model": False, "predictor_dropout": 0.1,
    "predictor_class": 527,
}
#: the cfg keys that are the model's arguments, with their kind
ARGUMENT_KINDS: dict[str, type] = {
    "encoder_layers": int, "encoder_embed_dim": int, "encoder_ffn_embed_dim": int, "encoder_attention_heads": int,
    "input_patch_size": int, "embed_dim": int, "conv_bias": bool, "conv_pos": int, "conv_pos_groups": int,
    "relative_position_embedding": bool, "num_buckets": int, "max_distance": int, "gru_rel_pos": bool,
    "deep_norm": bool, "layer_norm_first": bool,
}
#: cfg values the published network reads that audiotask's model computes one way only
REQUIRED_VALUES = {"activation_fn": "gelu"}
SHARED_BIAS = "self_attn.relative_attention_bias.weight"


def read_checkpoint(path: Path) -> tuple[Mapping[str, Any], dict[str, torch.Tensor], Optional[Mapping]]:
    """``(cfg, state dict, label_dict or None)`` of the checkpoint ``path`` (``ValueError``
    naming it when it is not one of BEATs' layout or holds more than tensors and plain values)."""
    checkpoint = load_checkpoint_data(path)
    if not (isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("cfg"), Mapping)
            and isinstance(checkpoint.get("model"), Mapping)):
        raise ValueError(f"{path}: no 'cfg' and 'model' (not a BEATs checkpoint: {{'cfg': ..., 'model': state dict}})")
    state = dict(checkpoint["model"])
    odd = next((name for name, value in state.items() if not isinstance(value, torch.Tensor)), None)
    if odd is not None:
        raise ValueError(f"{path}: 'model' holds {odd!r}, which is not a tensor")
    label_dict = checkpoint.get("label_dict")
    return checkpoint["cfg"], state, label_dict if isinstance(label_dict, Mapping) else None


def cfg_value(config: Mapping[str, Any], key: str, kind: type, source: str):
    """``config[key]`` as a positive int or a bool (a flag may be 0 or 1), else ``ValueError``."""
    value = config[key]
    if kind is bool:
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return bool(value)
        raise ValueError(f"{source}: cfg {key!r} is {value!r}, not a flag")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{source}: cfg {key!r} is {value!r}, not a positive integer")
    return int(value)


def model_arguments(cfg: Mapping[str, Any], source: str) -> dict[str, Any]:
    """:class:`~audiotask.models.beats.BEATs`'s arguments from a checkpoint's cfg (``ValueError``
    naming the key of a value the model does not compute)."""
    config = {**CONFIG_DEFAULTS, **cfg}
    for key, value in REQUIRED_VALUES.items():
        if config[key] != value:
            raise ValueError(f"{source}: cfg {key!r} is {config[key]!r}: audiotask's BEATs computes {value!r} only")
    arguments = {key: cfg_value(config, key, kind, source) for key, kind in ARGUMENT_KINDS.items()}
    if arguments["deep_norm"] and arguments["layer_norm_first"]:
        raise ValueError(f"{source}: cfg 'deep_norm' and 'layer_norm_first' are both set (BEATs.py refuses it)")
    return arguments


def predictor_classes(cfg: Mapping[str, Any], source: str) -> Optional[int]:
    """The fine-tuned predictor's classes, or None when the checkpoint has none."""
    config = {**CONFIG_DEFAULTS, **cfg}
    if not cfg_value(config, "finetuned_model", bool, source):
        return None
    return cfg_value(config, "predictor_class", int, source)


def read_labels(path: Path) -> list[tuple[int, str, str]]:
    """``(index, mid, display_name)`` rows of AudioSet's ``class_labels_indices.csv``."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows or [cell.strip().lower() for cell in rows[0][:3]] != ["index", "mid", "display_name"]:
        raise ValueError(f"{path}: not AudioSet's class_labels_indices.csv (its header is index,mid,display_name)")
    try:
        return [(int(row[0]), row[1].strip(), row[2].strip()) for row in rows[1:]]
    except (ValueError, IndexError):
        raise ValueError(f"{path}: each row must be index,mid,display_name") from None


def checkpoint_labels(label_dict: Optional[Mapping], count: int) -> Optional[list[str]]:
    """The checkpoint's label of each output (its ``label_dict``), or None when it has no
    label for every output."""
    if label_dict is None:
        return None
    try:
        by_index = {int(index): str(label) for index, label in label_dict.items()}
    except (TypeError, ValueError):
        return None
    return [by_index[index] for index in range(count)] if set(by_index) == set(range(count)) else None


def class_names(count: int, label_dict: Optional[Mapping] = None, labels: Optional[Path] = None) -> list[str]:
    """Names of the predictor's ``count`` outputs: ``audioset_000``... (``class_000``... for
    another count) without ``labels``; with it, the display names of its rows, matched to
    the outputs by the checkpoint's ``label_dict`` when its labels are the file's mids, else
    by index."""
    if labels is None:
        prefix = "audioset" if count == AUDIOSET_CLASSES else "class"
        return [f"{prefix}_{index:03d}" for index in range(count)]
    rows = read_labels(labels)
    by_mid = {mid: name for _, mid, name in rows}
    outputs = checkpoint_labels(label_dict, count)
    if outputs is not None and all(label in by_mid for label in outputs):
        names = [by_mid[label] for label in outputs]
    else:
        by_index = {index: name for index, _, name in rows}
        if len(rows) != count or set(by_index) != set(range(count)):
            raise ValueError(f"{labels}: {len(rows)} rows, indices {min(by_index, default=None)} to "
                             f"{max(by_index, default=None)}: the checkpoint's predictor has {count} classes")
        names = [by_index[index] for index in range(count)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{labels}: display names must be unique, repeated: {repeated[:5]}")
    return names


def tagging_specifications(classes: list[str]):
    """A fine-tuned checkpoint: AudioSet tags of ten-second clips, as ``--task tagging``."""
    from audiotask.core.specifications import TASK_NAME, Problem, Resolution, Specifications

    return Specifications(problem=Problem.MULTI_LABEL_CLASSIFICATION, resolution=Resolution.CHUNK,
                          duration=CHUNK_SECONDS, classes=classes, extra={TASK_NAME: "audio-tagging"})


def embedding_specifications(dimension: int):
    """A pre-trained checkpoint: one embedding per ten-second chunk, as ``--task embedding``
    (the registry's only embedding task, whose ``apply`` writes embeddings)."""
    from audiotask.core.specifications import TASK_NAME, Problem, Resolution, Specifications

    return Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=CHUNK_SECONDS,
                          extra={TASK_NAME: "speaker-embedding", "dimension": int(dimension)})


def published_layout(model) -> dict[str, torch.Tensor]:
    """The state dict the published ``BEATs`` of ``model``'s arguments has: the model's, with
    layer 0's position bias table listed under every other layer too."""
    expected = dict(model.state_dict())
    table = expected.get(f"encoder.layers.0.{SHARED_BIAS}")
    if table is not None:
        for index in range(1, len(model.encoder.layers)):
            expected[f"encoder.layers.{index}.{SHARED_BIAS}"] = table
    return expected


def import_beats(output: Union[str, Path], weights: Optional[Union[str, Path]] = None,
                 labels: Optional[Union[str, Path]] = None) -> Path:
    """Write the BEATs of the checkpoint ``weights`` as an audiotask model folder ``output`` and
    return it; ``labels``: AudioSet's ``class_labels_indices.csv`` naming a fine-tuned
    checkpoint's classes (default: ``audioset_000`` ... ``audioset_526``)."""
    from audiotask.models.beats import BEATs

    path = weights_file(weights, source="beats", example=EXAMPLE)
    if labels is not None and not Path(labels).is_file():
        raise FileNotFoundError(f"no such labels file: {labels}")
    cfg, state, label_dict = read_checkpoint(path)
    arguments = model_arguments(cfg, str(path))
    classes = predictor_classes(cfg, str(path))
    if classes is None and labels is not None:
        raise ValueError(f"{path}: not a fine-tuned checkpoint (no predictor): --labels names no class")
    try:
        model = BEATs(**arguments)
    except ValueError as error:
        raise ValueError(f"{path}: {first_line(error)}") from None
    if classes is None:
        model.attach_specifications(embedding_specifications(model.embedding_dimension))
    else:
        model.attach_specifications(tagging_specifications(
            class_names(classes, label_dict, None if labels is None else Path(labels))))
    network = f"BEATs ({arguments['encoder_layers']} layers{', fine-tuned' if classes is not None else ''})"
    expected = published_layout(model)
    check_layout(state, expected, source=str(path), network=network)
    kept = set(model.state_dict())  # all but the table's copies
    model.load_state_dict({name: tensor for name, tensor in state.items() if name in kept})
    return model.save_pretrained(output)
