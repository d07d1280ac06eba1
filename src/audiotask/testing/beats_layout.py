"""Checkpoints of BEATs' published layout with random weights: the ``{"cfg": ..., "model":
...}`` dicts of microsoft/unilm's BEATs checkpoints (``BEATs_iter3.pt``,
``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``, ...), so that ``audiotask import beats``
is tested without downloading them.

The names and shapes are transcribed from the published modules (``beats/BEATs.py``,
``beats/backbone.py``), not from audiotask's model: ``BEATs.state_dict()`` lists
``patch_embedding`` (no bias unless ``conv_bias``), ``layer_norm``, ``post_extract_proj``
(when ``embed_dim != encoder_embed_dim``), the encoder's ``pos_conv.0`` (a Conv1d under
``nn.utils.weight_norm(dim=2)``: ``weight_g`` of shape (1, 1, kernel), ``weight_v``,
``bias``), ``encoder.layer_norm``, each layer's ``self_attn`` (``k_proj``, ``v_proj``,
``q_proj``, ``out_proj``; ``grep_linear`` (head_dim -> 8) and ``grep_a`` with
``gru_rel_pos``; ``relative_attention_bias`` (buckets, heads) with
``relative_position_embedding``: layer 0's module, which ``TransformerEncoder.__init__``
assigns to every other layer, so that the state dict lists it under every layer, one tensor
shared), ``self_attn_layer_norm``, ``fc1``, ``fc2``, ``final_layer_norm``, and, for a
fine-tuned checkpoint (``finetuned_model``), ``predictor``. A fine-tuned checkpoint also
holds ``label_dict`` (class index -> AudioSet label), which the README's example reads.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

#: BEATs_iter3.pt's cfg (the values BEATsConfig is updated with; dropouts are training's)
BEATS_ITER3_CFG: dict[str, Any] = {
    "encoder_layers": 12, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12,
    "activation_fn": "gelu", "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
    "encoder_layerdrop": 0.05, "dropout_input": 0.0, "layer_norm_first": False, "conv_bias": False, "conv_pos": 128,
    "conv_pos_groups": 16, "relative_position_embedding": True, "num_buckets": 320, "max_distance": 800,
    "gru_rel_pos": True, "deep_norm": True, "input_patch_size": 16, "layer_wise_gradient_decay_ratio": 0.6,
    "embed_dim": 512, "finetuned_model": False, "predictor_dropout": 0.0, "predictor_class": 527,
}
#: a checkpoint fine-tuned on AudioSet-2M: the same network and a 527-class predictor
BEATS_ITER3_FINETUNED_CFG: dict[str, Any] = {**BEATS_ITER3_CFG, "finetuned_model": True}
AUDIOSET_CLASSES = 527


def linear_layout(prefix: str, inputs: int, outputs: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    layout = {f"{prefix}.weight": (outputs, inputs)}
    if bias:
        layout[f"{prefix}.bias"] = (outputs,)
    return layout


def layer_norm_layout(prefix: str, dimension: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (dimension,), f"{prefix}.bias": (dimension,)}


def encoder_layer_layout(prefix: str, cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """One ``TransformerSentenceEncoderLayer`` (GELU feed-forward)."""
    dimension, heads = cfg["encoder_embed_dim"], cfg["encoder_attention_heads"]
    attention = f"{prefix}.self_attn"
    layout: dict[str, tuple[int, ...]] = {}
    if cfg["relative_position_embedding"]:
        layout[f"{attention}.relative_attention_bias.weight"] = (cfg["num_buckets"], heads)
    for projection in ("k_proj", "v_proj", "q_proj", "out_proj"):
        layout.update(linear_layout(f"{attention}.{projection}", dimension, dimension))
    if cfg["gru_rel_pos"]:
        layout.update(linear_layout(f"{attention}.grep_linear", dimension // heads, 8))
        layout[f"{attention}.grep_a"] = (1, heads, 1, 1)
    layout.update(layer_norm_layout(f"{prefix}.self_attn_layer_norm", dimension))
    layout.update(linear_layout(f"{prefix}.fc1", dimension, cfg["encoder_ffn_embed_dim"]))
    layout.update(linear_layout(f"{prefix}.fc2", cfg["encoder_ffn_embed_dim"], dimension))
    layout.update(layer_norm_layout(f"{prefix}.final_layer_norm", dimension))
    return layout


def beats_layout(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Names and shapes of ``BEATs(BEATsConfig(cfg)).state_dict()``."""
    embed, dimension, patch = cfg["embed_dim"], cfg["encoder_embed_dim"], cfg["input_patch_size"]
    layout: dict[str, tuple[int, ...]] = {"patch_embedding.weight": (embed, 1, patch, patch)}
    if cfg["conv_bias"]:
        layout["patch_embedding.bias"] = (embed,)
    layout.update(layer_norm_layout("layer_norm", embed))
    if embed != dimension:
        layout.update(linear_layout("post_extract_proj", embed, dimension))
    kernel = cfg["conv_pos"]
    layout.update({"encoder.pos_conv.0.bias": (dimension,), "encoder.pos_conv.0.weight_g": (1, 1, kernel),
                   "encoder.pos_conv.0.weight_v": (dimension, dimension // cfg["conv_pos_groups"], kernel)})
    for index in range(cfg["encoder_layers"]):
        layout.update(encoder_layer_layout(f"encoder.layers.{index}", cfg))
    layout.update(layer_norm_layout("encoder.layer_norm", dimension))
    if cfg["finetuned_model"]:
        layout.update(linear_layout("predictor", dimension, cfg["predictor_class"]))
    return layout


#: the names and shapes of BEATs_iter3.pt's "model", and of a checkpoint fine-tuned on AudioSet
BEATS_ITER3_LAYOUT = beats_layout(BEATS_ITER3_CFG)
BEATS_ITER3_FINETUNED_LAYOUT = beats_layout(BEATS_ITER3_FINETUNED_CFG)


def random_tensor(name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Weights of a trained network's scale, so that every part of the computation matters:
    norms near 1, linear maps that keep the scale, a position bias of a few units."""
    noise = torch.randn(shape, generator=generator)
    if "layer_norm" in name and name.endswith(".weight"):
        return 1.0 + 0.1 * noise
    if name.endswith("weight_g"):
        return 1.0 + 0.5 * torch.rand(shape, generator=generator)
    if name.endswith("grep_a"):
        return 1.0 + 0.2 * noise
    if name.endswith("relative_attention_bias.weight"):
        return noise
    if len(shape) == 1:
        return 0.1 * noise
    fan_in = 1
    for size in shape[1:]:
        fan_in *= size
    return noise / fan_in ** 0.5


def random_beats_checkpoint(seed: int = 0, finetuned: bool = False, layers: int = 12, **cfg) -> dict:
    """``{"cfg", "model"}`` (and ``"label_dict"`` when ``finetuned``) of BEATs_iter3's layout
    with ``layers`` encoder layers and random weights; ``cfg`` keywords change other values
    of the cfg (e.g. ``layer_norm_first=True, deep_norm=False``). As in the published state
    dict, every layer's ``relative_attention_bias.weight`` is layer 0's tensor."""
    config = {**(BEATS_ITER3_FINETUNED_CFG if finetuned else BEATS_ITER3_CFG), "encoder_layers": int(layers), **cfg}
    generator = torch.Generator().manual_seed(seed)
    shared_bias = "encoder.layers.0.self_attn.relative_attention_bias.weight"
    state: dict[str, torch.Tensor] = {}
    for name, shape in beats_layout(config).items():
        if name.endswith("self_attn.relative_attention_bias.weight") and shared_bias in state:
            state[name] = state[shared_bias]
        else:
            state[name] = random_tensor(name, shape, generator)
    checkpoint = {"cfg": config, "model": state}
    if config["finetuned_model"]:
        checkpoint["label_dict"] = {index: audioset_like_label(index) for index in range(config["predictor_class"])}
    return checkpoint


def audioset_like_label(index: int) -> str:
    """A made-up AudioSet machine identifier (``/m/...``) for class ``index``."""
    return f"/m/0beats{index:03d}"
