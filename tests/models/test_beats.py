"""BEATs imported as an audiotask model: its checkpoint layout, its front end and its forward
pass, against the published code (microsoft/unilm ``beats/BEATs.py``, ``beats/backbone.py``,
``beats/modules.py``) transcribed below with plain torch, in eval mode (no dropout, no
layer drop), on checkpoints of the published layout with random weights."""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from audiotask.cli.main import main
from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.models.beats import BEATs, relative_position_buckets
from audiotask.pretrained.beats import import_beats, published_layout, tagging_specifications
from audiotask.testing.beats_layout import (BEATS_ITER3_FINETUNED_LAYOUT, BEATS_ITER3_LAYOUT, audioset_like_label,
                                            random_beats_checkpoint)

#: a narrow BEATs (the published code takes any cfg) for the tests that need no full width;
#: 32 buckets up to 64 patches: most distances of a 2-s input take the logarithmic buckets
SMALL = dict(encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4, embed_dim=32, conv_pos=16,
             conv_pos_groups=4, num_buckets=32, max_distance=64)


# ---- the published forward pass, transcribed ----------------------------------------------
def published_preprocess(source, fbank):
    """BEATs.preprocess, ``fbank`` standing for ta_kaldi.fbank(num_mel_bins=128, 25 ms, 10 ms)."""
    fbanks = [fbank(waveform.unsqueeze(0) * 2 ** 15) for waveform in source]
    return (torch.stack(fbanks, dim=0) - 15.41663) / (2 * 6.55582)


def torchaudio_fbank(waveform):
    """torchaudio.compliance.kaldi.fbank(waveform, num_mel_bins=128, sample_frequency=16000,
    frame_length=25, frame_shift=10), its other arguments at their defaults (dither 0,
    remove_dc_offset, preemphasis 0.97, povey window, round_to_power_of_two, snip_edges,
    use_power, use_log_fbank, low_freq 20, high_freq 0, no VTLN warp), transcribed."""
    window_shift, window_size, padded_window_size = 160, 400, 512
    waveform = waveform[0]
    m = 1 + (waveform.size(0) - window_size) // window_shift  # _get_strided, snip_edges
    strided_input = waveform.as_strided((m, window_size), (window_shift * waveform.stride(0), waveform.stride(0)))
    row_means = torch.mean(strided_input, dim=1).unsqueeze(1)
    strided_input = strided_input - row_means
    offset_strided_input = torch.nn.functional.pad(strided_input.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)
    strided_input = strided_input - 0.97 * offset_strided_input[:, :-1]
    window_function = torch.hann_window(window_size, periodic=False).pow(0.85).unsqueeze(0)  # povey
    strided_input = strided_input * window_function
    strided_input = torch.nn.functional.pad(strided_input.unsqueeze(0), (0, padded_window_size - window_size),
                                            mode="constant", value=0).squeeze(0)
    spectrum = torch.fft.rfft(strided_input).abs().pow(2.0)
    # get_mel_banks(128, 512, 16000, low_freq=20, high_freq=0 -> Nyquist)
    num_fft_bins, fft_bin_width = padded_window_size // 2, 16000 / padded_window_size
    mel_low_freq, mel_high_freq = 1127.0 * math.log(1.0 + 20.0 / 700.0), 1127.0 * math.log(1.0 + 8000.0 / 700.0)
    mel_freq_delta = (mel_high_freq - mel_low_freq) / (128 + 1)
    bin = torch.arange(128).unsqueeze(1)
    left_mel = mel_low_freq + bin * mel_freq_delta
    center_mel = mel_low_freq + (bin + 1.0) * mel_freq_delta
    right_mel = mel_low_freq + (bin + 2.0) * mel_freq_delta
    mel = (1127.0 * (1.0 + fft_bin_width * torch.arange(num_fft_bins) / 700.0).log()).unsqueeze(0)
    up_slope = (mel - left_mel) / (center_mel - left_mel)
    down_slope = (right_mel - mel) / (right_mel - center_mel)
    mel_energies = torch.max(torch.zeros(1), torch.min(up_slope, down_slope))
    mel_energies = torch.nn.functional.pad(mel_energies, (0, 1), mode="constant", value=0)
    mel_energies = torch.mm(spectrum, mel_energies.T)
    return torch.max(mel_energies, torch.tensor(torch.finfo(torch.float32).eps)).log()


def linear(state, prefix, x):
    return F.linear(x, state[f"{prefix}.weight"], state.get(f"{prefix}.bias"))


def layer_norm(state, prefix, x):
    return F.layer_norm(x, x.shape[-1:], state[f"{prefix}.weight"], state[f"{prefix}.bias"])


def gelu(x):  # modules.py
    return torch.nn.functional.gelu(x.float()).type_as(x)


def relative_positions_bucket(relative_positions, num_buckets, max_distance):  # bidirectional
    relative_buckets = 0
    num_buckets = num_buckets // 2
    relative_buckets += (relative_positions > 0).to(torch.long) * num_buckets
    relative_positions = torch.abs(relative_positions)
    max_exact = num_buckets // 2
    is_small = relative_positions < max_exact
    relative_postion_if_large = max_exact + (
        torch.log(relative_positions.float() / max_exact) / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)).to(torch.long)
    relative_postion_if_large = torch.min(relative_postion_if_large,
                                          torch.full_like(relative_postion_if_large, num_buckets - 1))
    relative_buckets += torch.where(is_small, relative_positions, relative_postion_if_large)
    return relative_buckets


def compute_bias(table, query_length, key_length, num_buckets, max_distance):
    context_position = torch.arange(query_length, dtype=torch.long)[:, None]
    memory_position = torch.arange(key_length, dtype=torch.long)[None, :]
    bucket = relative_positions_bucket(memory_position - context_position, num_buckets, max_distance)
    return F.embedding(bucket, table).permute([2, 0, 1])


def multihead_attention(state, prefix, cfg, query, position_bias):
    """MultiheadAttention.forward (self-attention, no masks); query: Time x Batch x Channel."""
    tgt_len, bsz, embed_dim = query.size()
    num_heads = cfg["encoder_attention_heads"]
    head_dim = embed_dim // num_heads
    scaling = head_dim ** -0.5
    if cfg["relative_position_embedding"] and position_bias is None:
        position_bias = compute_bias(state[f"{prefix}.relative_attention_bias.weight"], tgt_len, tgt_len,
                                     cfg["num_buckets"], cfg["max_distance"])
        position_bias = position_bias.unsqueeze(0).repeat(bsz, 1, 1, 1).view(bsz * num_heads, tgt_len, tgt_len)
    q = linear(state, f"{prefix}.q_proj", query)
    k = linear(state, f"{prefix}.k_proj", query)
    v = linear(state, f"{prefix}.v_proj", query)
    q *= scaling
    alpha = 32
    q *= 1 / alpha
    q = q.contiguous().view(tgt_len, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    attn_weights = torch.bmm(q, k.transpose(1, 2))
    attn_weights = (attn_weights - attn_weights.max(dim=-1, keepdim=True)[0]) * alpha
    if position_bias is not None:
        attn_mask_rel_pos = position_bias
        if cfg["gru_rel_pos"] == 1:
            query_layer = q.view(bsz, num_heads, tgt_len, head_dim) * alpha / scaling
            _B, _H, _L, __ = query_layer.size()
            gate_a, gate_b = torch.sigmoid(linear(state, f"{prefix}.grep_linear", query_layer).view(
                _B, _H, _L, 2, 4).sum(-1, keepdim=False)).chunk(2, dim=-1)
            gate_a_1 = gate_a * (gate_b * state[f"{prefix}.grep_a"] - 1.0) + 2.0
            attn_mask_rel_pos = gate_a_1.view(bsz * num_heads, tgt_len, 1) * position_bias
        attn_mask_rel_pos = attn_mask_rel_pos.view(attn_weights.size())
        attn_weights = attn_weights + attn_mask_rel_pos
    attn = torch.bmm(F.softmax(attn_weights, dim=-1), v)
    attn = attn.transpose(0, 1).contiguous().view(tgt_len, bsz, embed_dim)
    return linear(state, f"{prefix}.out_proj", attn), position_bias


def encoder_layer(state, prefix, cfg, x, pos_bias):
    """TransformerSentenceEncoderLayer.forward (GELU)."""
    deep_norm_alpha = math.pow(2 * cfg["encoder_layers"], 1 / 4) if cfg["deep_norm"] else 1
    residual = x
    if cfg["layer_norm_first"]:
        x = layer_norm(state, f"{prefix}.self_attn_layer_norm", x)
        x, pos_bias = multihead_attention(state, f"{prefix}.self_attn", cfg, x, pos_bias)
        x = residual + x
        residual = x
        x = layer_norm(state, f"{prefix}.final_layer_norm", x)
        x = linear(state, f"{prefix}.fc2", gelu(linear(state, f"{prefix}.fc1", x)))
        x = residual + x
    else:
        x, pos_bias = multihead_attention(state, f"{prefix}.self_attn", cfg, x, pos_bias)
        x = residual * deep_norm_alpha + x
        x = layer_norm(state, f"{prefix}.self_attn_layer_norm", x)
        residual = x
        x = linear(state, f"{prefix}.fc2", gelu(linear(state, f"{prefix}.fc1", x)))
        x = residual * deep_norm_alpha + x
        x = layer_norm(state, f"{prefix}.final_layer_norm", x)
    return x, pos_bias


def transformer_encoder(state, cfg, x):
    """TransformerEncoder.forward: pos_conv (weight-normalised Conv1d, SamePad, GELU), the layers."""
    dimension = cfg["encoder_embed_dim"]
    pos_conv = nn.Conv1d(dimension, dimension, kernel_size=cfg["conv_pos"], padding=cfg["conv_pos"] // 2,
                         groups=cfg["conv_pos_groups"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nn.utils.weight_norm is deprecated; the published code calls it
        pos_conv = nn.utils.weight_norm(pos_conv, name="weight", dim=2)
    pos_conv.load_state_dict({name: state[f"encoder.pos_conv.0.{name}"] for name in ("weight_g", "weight_v", "bias")})
    x_conv = pos_conv(x.transpose(1, 2))
    if cfg["conv_pos"] % 2 == 0:  # SamePad
        x_conv = x_conv[:, :, :-1]
    x = x + nn.GELU()(x_conv).transpose(1, 2)
    if not cfg["layer_norm_first"]:
        x = layer_norm(state, "encoder.layer_norm", x)
    x = x.transpose(0, 1)
    pos_bias = None
    for index in range(cfg["encoder_layers"]):
        x, pos_bias = encoder_layer(state, f"encoder.layers.{index}", cfg, x, pos_bias)
    x = x.transpose(0, 1)
    if cfg["layer_norm_first"]:
        x = layer_norm(state, "encoder.layer_norm", x)
    return x


@torch.no_grad()
def published_extract_features(checkpoint, fbank):
    """BEATs.extract_features after preprocess (no padding mask): the encoder's output
    (batch, patches, dim), and the fine-tuned model's probabilities (or None)."""
    cfg, state = checkpoint["cfg"], checkpoint["model"]
    features = F.conv2d(fbank.unsqueeze(1), state["patch_embedding.weight"], state.get("patch_embedding.bias"),
                        stride=cfg["input_patch_size"])
    features = features.reshape(features.shape[0], features.shape[1], -1).transpose(1, 2)
    features = layer_norm(state, "layer_norm", features)
    if cfg["embed_dim"] != cfg["encoder_embed_dim"]:
        features = linear(state, "post_extract_proj", features)
    x = transformer_encoder(state, cfg, features)
    if not cfg["finetuned_model"]:
        return x, None
    return x, torch.sigmoid(linear(state, "predictor", x).mean(dim=1))


def dcase_frames(x, bands=8):
    """The patches (time-major, ``bands`` frequency patches per step) averaged per time step."""
    return x.reshape(x.shape[0], -1, bands, x.shape[-1]).mean(dim=2)


# ---- helpers ---------------------------------------------------------------------------------
def sounds(seconds, batch=2, seed=0):
    """(batch, 1, samples) of tones in noise, at speech-like levels."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    rows = [0.2 * np.sin(2 * np.pi * (300 + 700 * k) * t * (1 + 0.3 * t)) + 0.05 * rng.standard_normal(t.size)
            for k in range(batch)]
    return torch.from_numpy(np.stack(rows).astype(np.float32)).unsqueeze(1)


def imported(tmp_path, checkpoint, name="model", **options):
    torch.save(checkpoint, tmp_path / f"{name}.pt")
    return Model.from_pretrained(import_beats(tmp_path / name, weights=tmp_path / f"{name}.pt", **options))


def write_labels(path, count, order=None):
    """A class_labels_indices.csv whose row ``i`` has the made-up mid of class ``order[i]``."""
    order = range(count) if order is None else order
    lines = ["index,mid,display_name"] + [f'{row},{audioset_like_label(index)},"Sound {index}, made up"'
                                          for row, index in enumerate(order)]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- the layout ---------------------------------------------------------------------------------
def test_the_model_has_the_published_layout_of_beats_iter3():
    # patch embedding, layer norm, projection; pos_conv; 20 per layer; the encoder's layer norm
    assert len(BEATS_ITER3_LAYOUT) == 5 + 3 + 12 * 20 + 2
    assert BEATS_ITER3_LAYOUT["encoder.pos_conv.0.weight_v"] == (768, 48, 128)
    assert BEATS_ITER3_LAYOUT["encoder.layers.11.self_attn.relative_attention_bias.weight"] == (320, 12)
    assert BEATS_ITER3_FINETUNED_LAYOUT["predictor.weight"] == (527, 768)
    with torch.device("meta"):
        model = BEATs()
    assert model.embedding_dimension == 768 and model.embedding_hop == 2560 and model.frequency_patches == 8
    model.attach_specifications(tagging_specifications([f"c{index}" for index in range(527)]))
    ours = {name: tuple(tensor.shape) for name, tensor in published_layout(model).items()}
    assert ours == BEATS_ITER3_FINETUNED_LAYOUT
    # the position bias table: layer 0's only (the published layers share it)
    assert "encoder.layers.1.self_attn.relative_attention_bias.weight" not in model.state_dict()


@pytest.mark.parametrize("num_buckets, max_distance, length", [(320, 800, 1200), (32, 64, 150)])
def test_the_position_buckets_are_the_published(num_buckets, max_distance, length):
    positions = torch.arange(length)
    theirs = relative_positions_bucket(positions[None, :] - positions[:, None], num_buckets, max_distance)
    assert torch.equal(relative_position_buckets(length, num_buckets, max_distance), theirs)


def test_the_front_end_is_the_published_preprocess():
    waveforms = sounds(0.7)
    waveforms[1, 0, :3000] *= 1e-4  # a quiet stretch: the logarithm's floor
    ours = BEATs(encoder_layers=1, **SMALL).preprocess(waveforms)
    theirs = published_preprocess(waveforms[:, 0], torchaudio_fbank)
    assert ours.shape == theirs.shape == (2, 68, 128)
    assert (ours - theirs).abs().max() < 1e-4
    # 128 bands over 256 FFT bins: band 3 holds none, its energy is the floor (as torchaudio's)
    floor = (math.log(torch.finfo(torch.float32).eps) - 15.41663) / (2 * 6.55582)
    assert (theirs[:, :, 3] - floor).abs().max() < 1e-6 and (ours[:, :, 3] - floor).abs().max() < 1e-6


# ---- the forward pass -----------------------------------------------------------------------------
def test_a_fine_tuned_checkpoint_gives_the_published_tags_and_frame_embeddings(tmp_path):
    """BEATs_iter3's width, 2 layers; 2 s: 12 time steps of 8 patches."""
    checkpoint = random_beats_checkpoint(seed=1, finetuned=True, layers=2)
    model = imported(tmp_path, checkpoint)
    assert isinstance(model, BEATs) and model.specifications.task_name == "audio-tagging"
    assert model.specifications.classes[:2] == ["audioset_000", "audioset_001"]
    waveforms = sounds(2.0)
    with torch.no_grad():
        probabilities = model.default_activation(model(waveforms))
        frames = model.frame_embeddings(waveforms)
    x, theirs = published_extract_features(checkpoint, published_preprocess(waveforms[:, 0], torchaudio_fbank))
    assert x.shape == (2, 96, 768) and frames.shape == (2, 12, 768) == (2, model.num_steps(32000), 768)
    assert (frames - dcase_frames(x)).abs().max() < 1e-4
    assert probabilities.shape == (2, 527) and (probabilities - theirs).abs().max() < 1e-4
    assert theirs.std() > 0.01  # the classes' probabilities differ: the comparison means something


@pytest.mark.parametrize("variant", [
    dict(),  # BEATs_iter3's flags: DeepNorm, gated relative position bias
    dict(layer_norm_first=True, deep_norm=False, relative_position_embedding=False, gru_rel_pos=False,
         conv_bias=True, embed_dim=64, conv_pos=15),  # pre-norm, no position bias, no projection, odd kernel
    dict(relative_position_embedding=True, gru_rel_pos=False),  # an ungated position bias
])
def test_a_pre_trained_checkpoint_gives_the_published_embeddings(tmp_path, variant):
    checkpoint = random_beats_checkpoint(seed=2, layers=2, **{**SMALL, **variant})
    model = imported(tmp_path, checkpoint)
    specifications = model.specifications
    assert specifications.problem is Problem.REPRESENTATION and specifications.task_name == "speaker-embedding"
    waveforms = sounds(2.0, batch=3, seed=3)
    with torch.no_grad():
        embeddings, frames = model(waveforms), model.frame_embeddings(waveforms)
    x, _ = published_extract_features(checkpoint, published_preprocess(waveforms[:, 0], torchaudio_fbank))
    assert embeddings.shape == (3, 64) and (embeddings - x.mean(dim=1)).abs().max() < 1e-4  # DCASE's "global"
    assert (frames - dcase_frames(x)).abs().max() < 1e-4
    assert dcase_frames(x).std(dim=1).min() > 0.01  # the steps differ


def test_the_step_count_follows_the_filterbank_and_frame_outputs_audiotasks_grid(tmp_path):
    model = imported(tmp_path, random_beats_checkpoint(seed=3, finetuned=True, layers=1, **SMALL))
    for samples in (0, 399, 400, 2799, 2800, 5359, 5360, 160000):
        frames = 0 if samples < 400 else 1 + (samples - 400) // 160
        assert model.num_steps(samples) == frames // 16
    assert model.num_steps(160000) == 62 and model.min_samples == 2800
    assert model.frame_embeddings(torch.zeros(1, 1, 2799)).shape == (1, 0, 64)
    with pytest.raises(ValueError, match="at least 2800 samples"):
        model(torch.zeros(1, 1, 2799))
    with pytest.warns(UserWarning, match="head rebuilt"):  # the tagger's predictor, now applied to each step
        model.attach_specifications(Specifications(problem=Problem.MULTI_LABEL_CLASSIFICATION,
                                                   resolution=Resolution.FRAME, duration=10.0,
                                                   classes=model.specifications.classes))
    with torch.no_grad():
        # 3 steps and 1000 samples: the same steps as the published; 3 steps and 100: one more
        long = sounds((3 * 2560 + 1000) / 16000, batch=1)
        logits = model(long)
        assert logits.shape == (1, 3, 527) and model.num_frames(long.shape[-1]) == 3
        assert (logits - model.predictor(model.frame_embeddings(long))).abs().max() < 1e-5
        assert model(long[..., : 3 * 2560 + 100]).shape == (1, 3, 527) == (1, model.num_frames(3 * 2560 + 100), 527)


# ---- importing ------------------------------------------------------------------------------------------
def test_the_command_line_imports_a_fine_tuned_checkpoint_with_its_class_names(tmp_path, capsys):
    checkpoint = random_beats_checkpoint(seed=4, finetuned=True, layers=1, **SMALL)
    order = np.random.default_rng(0).permutation(527)
    # the checkpoint's label_dict holds the mids of its outputs; the CSV lists them in another order
    labels = write_labels(tmp_path / "class_labels_indices.csv", 527, order=order)
    torch.save(checkpoint, tmp_path / "finetuned.pt")
    assert main(["import", "beats", "--weights", str(tmp_path / "finetuned.pt"), "--output", str(tmp_path / "m"),
                 "--labels", str(labels)]) == 0
    model = Model.from_pretrained(tmp_path / "m")
    assert model.specifications.classes[:3] == ["Sound 0, made up", "Sound 1, made up", "Sound 2, made up"]
    assert model.specifications.duration == 10.0 and model.specifications.num_outputs == 527
    waveforms = sounds(1.0)
    again = Model.from_pretrained(model.save_pretrained(tmp_path / "again"))
    with torch.no_grad():
        ours = model(waveforms)
        assert torch.equal(again(waveforms), ours)
    _, theirs = published_extract_features(checkpoint, published_preprocess(waveforms[:, 0], torchaudio_fbank))
    assert (torch.sigmoid(ours) - theirs).abs().max() < 1e-4
    # without label_dict, the CSV's rows name the outputs in their order
    del checkpoint["label_dict"]
    model = imported(tmp_path, checkpoint, name="unlabelled", labels=labels)
    assert model.specifications.classes[:2] == [f"Sound {order[0]}, made up", f"Sound {order[1]}, made up"]


def test_a_checkpoint_that_does_not_fit_is_refused_in_one_line_naming_the_key(tmp_path, capsys):
    checkpoint = random_beats_checkpoint(seed=5, layers=2, **SMALL)
    checkpoint["model"]["encoder.layers.1.fc1.weight"] = torch.zeros(100, 64)
    torch.save(checkpoint, tmp_path / "wrong.pt")
    with pytest.raises(ValueError) as error:
        import_beats(tmp_path / "m", weights=tmp_path / "wrong.pt")
    message = str(error.value)
    assert "\n" not in message and "wrong.pt" in message and "'encoder.layers.1.fc1.weight'" in message
    del checkpoint["model"]["encoder.layers.1.self_attn.relative_attention_bias.weight"]
    checkpoint["model"]["encoder.layers.1.fc1.weight"] = torch.zeros(128, 64)
    torch.save(checkpoint, tmp_path / "copy.pt")
    assert main(["import", "beats", "--weights", str(tmp_path / "copy.pt"), "--output", str(tmp_path / "m")]) == 2
    assert "'encoder.layers.1.self_attn.relative_attention_bias.weight'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("change, key", [
    ({"activation_fn": "relu"}, "'activation_fn'"),
    ({"deep_norm": True, "layer_norm_first": True}, "'deep_norm' and 'layer_norm_first'"),
    ({"encoder_layers": 2.5}, "'encoder_layers'"),
    ({"gru_rel_pos": "yes"}, "'gru_rel_pos'"),
    ({"input_patch_size": None}, "'input_patch_size'"),  # None: absent, BEATsConfig's -1
    ({"encoder_attention_heads": 5}, "encoder_attention_heads"),
])
def test_a_cfg_the_model_does_not_compute_is_refused_naming_the_key(tmp_path, change, key):
    checkpoint = random_beats_checkpoint(seed=6, layers=1, **SMALL)
    for name, value in change.items():
        if value is None:
            del checkpoint["cfg"][name]
        else:
            checkpoint["cfg"][name] = value
    torch.save(checkpoint, tmp_path / "cfg.pt")
    with pytest.raises(ValueError, match=key) as error:
        import_beats(tmp_path / "m", weights=tmp_path / "cfg.pt")
    assert "\n" not in str(error.value) and "cfg.pt" in str(error.value)


class Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_files_that_are_no_beats_checkpoint_are_refused(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="beats: give --weights FILE"):
        import_beats(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        import_beats(tmp_path / "m", weights=tmp_path / "absent.pt")
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"cfg": {}, "model": Payload()}, handle)
    with pytest.raises(ValueError, match="evil.pt: not a checkpoint of tensors and plain values"):
        import_beats(tmp_path / "m", weights=tmp_path / "evil.pt")
    assert "unpickled code ran" not in capsys.readouterr().out
    torch.save({"model": {}}, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="bare.pt: no 'cfg' and 'model'"):
        import_beats(tmp_path / "m", weights=tmp_path / "bare.pt")
    torch.save(random_beats_checkpoint(seed=7, layers=1, **SMALL), tmp_path / "encoder.pt")
    labels = write_labels(tmp_path / "labels.csv", 527)
    with pytest.raises(ValueError, match="not a fine-tuned checkpoint"):
        import_beats(tmp_path / "m", weights=tmp_path / "encoder.pt", labels=labels)
    torch.save(random_beats_checkpoint(seed=7, finetuned=True, layers=1, **SMALL), tmp_path / "tagger.pt")
    with pytest.raises(ValueError, match="the checkpoint's predictor has 527 classes"):
        import_beats(tmp_path / "m", weights=tmp_path / "tagger.pt", labels=write_labels(tmp_path / "few.csv", 10))


def test_the_encoder_gives_another_model_its_frame_embeddings(tmp_path):
    from audiotask.models.pretrained_features import PretrainedFeatures, describe_encoder

    encoder = imported(tmp_path, random_beats_checkpoint(seed=8, layers=1, **SMALL))
    features = PretrainedFeatures(describe_encoder(encoder), 16000)
    features.load_encoder(encoder)
    waveforms = sounds(1.0)
    with torch.no_grad():
        frames = features(waveforms, num_frames=24)
        assert frames.shape == (2, 24, 64)
        assert torch.equal(frames[:, 0], encoder.frame_embeddings(waveforms)[:, 0])
