"""The layout of the published PANNs CNN14 and CNN10 AudioSet checkpoints, and checkpoints of it
with random weights: the conversion is tested without downloading anything.

The checkpoints of qiuqiangkong/audioset_tagging_cnn (``Cnn14_mAP=0.431.pth``,
``Cnn10_mAP=0.380.pth``, Zenodo record 3987831) are dicts whose ``"model"`` entry is the
state dict of ``pytorch/models.py``'s ``Cnn14`` / ``Cnn10`` (32 kHz, window 1024, 64 mel
bands, 527 classes): torchlibrosa's frozen front end (``spectrogram_extractor.stft.conv_real``
/ ``conv_imag``, ``logmel_extractor.melW``; its ``SpecAugmentation`` has no state), ``bn0``,
the ``ConvBlock``s (two bias-free 3x3 convolutions, two batch normalisations each), ``fc1``
and ``fc_audioset``. The training script saves the sampler's state beside them.
"""

from __future__ import annotations

import torch

#: output channels of each ConvBlock
CNN14_CHANNELS = (64, 128, 256, 512, 1024, 2048)
CNN10_CHANNELS = (64, 128, 256, 512)
#: torchlibrosa's front end at the published settings: 513 STFT bins of 1024 samples, 64 mel bands
FRONT_END_LAYOUT = {
    "spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
    "spectrogram_extractor.stft.conv_imag.weight": (513, 1, 1024),
    "logmel_extractor.melW": (513, 64),
}
NUM_CLASSES = 527


def batch_norm_layout(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    """The state of an ``nn.BatchNorm2d`` (``num_batches_tracked``: a 0-d int64 tensor)."""
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,), f"{prefix}.running_mean": (channels,),
            f"{prefix}.running_var": (channels,), f"{prefix}.num_batches_tracked": ()}


def conv_block_layout(index: int, in_channels: int, out_channels: int) -> dict[str, tuple[int, ...]]:
    """``conv_block{index}``: ConvBlock registers conv1, conv2, then bn1, bn2."""
    prefix = f"conv_block{index}"
    return {
        f"{prefix}.conv1.weight": (out_channels, in_channels, 3, 3),
        f"{prefix}.conv2.weight": (out_channels, out_channels, 3, 3),
        **batch_norm_layout(f"{prefix}.bn1", out_channels),
        **batch_norm_layout(f"{prefix}.bn2", out_channels),
    }


def panns_layout(channels: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the state dict of a Cnn14 / Cnn10 with blocks of ``channels``."""
    layout = {**FRONT_END_LAYOUT, **batch_norm_layout("bn0", 64)}
    for index, (in_channels, out_channels) in enumerate(zip((1, *channels[:-1]), channels), start=1):
        layout.update(conv_block_layout(index, in_channels, out_channels))
    width = channels[-1]
    layout.update({"fc1.weight": (width, width), "fc1.bias": (width,),
                   "fc_audioset.weight": (NUM_CLASSES, width), "fc_audioset.bias": (NUM_CLASSES,)})
    return layout


#: variant -> {name: shape} of its published checkpoint's "model" entry
PANNS_LAYOUTS = {"cnn14": panns_layout(CNN14_CHANNELS), "cnn10": panns_layout(CNN10_CHANNELS)}


def random_tensor(name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A value for the entry ``name`` that keeps a random network's scores away from 0 and 1:
    He-scaled weights, batch statistics near those of its inputs (``bn0``'s: log-mel levels in dB)."""

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator)

    if name.endswith("num_batches_tracked"):
        return torch.tensor(int(torch.randint(1, 10**6, (), generator=generator)), dtype=torch.int64)
    if name.startswith("bn0."):
        kind = name.rsplit(".", 1)[1]
        return {"weight": uniform(0.8, 1.2), "bias": uniform(-0.1, 0.1), "running_mean": uniform(-40.0, -10.0),
                "running_var": uniform(100.0, 400.0)}[kind]
    if ".bn" in name:
        kind = name.rsplit(".", 1)[1]
        return {"weight": uniform(0.8, 1.2), "bias": uniform(-0.1, 0.1), "running_mean": uniform(0.0, 0.5),
                "running_var": uniform(0.5, 1.5)}[kind]
    if name.endswith(".bias"):
        return 0.1 * torch.randn(shape, generator=generator)
    fan_in = 1
    for size in shape[1:]:
        fan_in *= size
    scale = (1.0 if name.startswith("fc_audioset") else 2.0) / fan_in
    return scale ** 0.5 * torch.randn(shape, generator=generator)


def random_panns_checkpoint(variant: str = "cnn10", seed: int = 0) -> dict:
    """A checkpoint of the published layout of ``variant`` ("cnn14" or "cnn10"): ``{"model":
    state, "iteration": 0}``, the front end's entries torchlibrosa's values, the others random."""
    from audiotask.models.panns import mel_filterbank, stft_kernels

    real, imag = stft_kernels()
    front_end = {"spectrogram_extractor.stft.conv_real.weight": torch.from_numpy(real),
                 "spectrogram_extractor.stft.conv_imag.weight": torch.from_numpy(imag),
                 "logmel_extractor.melW": torch.from_numpy(mel_filterbank())}
    generator = torch.Generator().manual_seed(seed)
    state = {name: front_end[name] if name in front_end else random_tensor(name, shape, generator)
             for name, shape in PANNS_LAYOUTS[variant].items()}
    return {"model": state, "iteration": 0}
