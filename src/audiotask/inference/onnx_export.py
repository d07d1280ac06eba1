"""ONNX export of a trained model (``audiotask export --format onnx``).

Writes the folder that :class:`~audiotask.inference.onnx.OnnxModel` runs (see that module).

Why the graph ends with the activation (sigmoid or softmax, as the specifications call for),
not with logits: an export is for inference only, and a runtime outside Python should get
scores without re-implementing :func:`audiotask.core.objectives.activation`.

Why the log-mel front end is rewritten at export: ``torch.stft`` returns complex tensors,
which the TorchScript-based exporter refuses ("STFT does not currently support complex
types"), and the torch.export-based one fails on the bidirectional GRU (torch 2.13). A
real DFT written as a strided convolution (:func:`dft_log_mel_spectrogram`) computes the same
log-mel (within float32 rounding) with operators every exporter and runtime has, and
onnxruntime runs it faster than its own ``STFT`` operator (0.15 s against 0.21 s for a
batch of 32 two-second chunks through the default CRNN, one thread; end-to-end figures:
benchmarks/inference.py).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn

from audiotask.core.frames import seconds_to_samples
from audiotask.core.manifest import MANIFEST
from audiotask.core.model import Model
from audiotask.core.specifications import Resolution, Specifications
from audiotask.inference.inference import shares_encoder
from audiotask.inference.onnx import (
    DECODER_GRAPH, ENCODER_GRAPH, FEATURES, GRAPH, INPUT, OUTPUT, OnnxModel, require,
)
from audiotask.models.features import LogMel

#: ONNX opset of exports: 17 has every operator the models use, and onnxruntime >= 1.14 runs it
OPSET = 17
#: largest |onnxruntime - PyTorch| score difference an export may show on its own check
TOLERANCE = 1e-4
#: files of a model folder that an export carries over unchanged (tuned post-processing)
CARRIED = ("postprocessing.json",)


# ---- a front end that exports: the DFT as a convolution ------------------------------------
def dft_basis(window: torch.Tensor) -> torch.Tensor:
    """(2 * (n_fft // 2 + 1), 1, n_fft) convolution kernels: windowed cosines, then sines.

    Convolved with a waveform at stride ``hop_length``, they give the real and imaginary parts
    of its one-sided STFT (``torch.stft``'s convention, ``exp(-2 pi i k t / n_fft)``).
    """
    n_fft = window.shape[-1]
    # float64 angles: k * t reaches n_fft**2 / 2, where float32 loses the phase's low bits
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    t = torch.arange(n_fft, dtype=torch.float64)[None, :]
    angle = 2.0 * math.pi * k * t / n_fft
    windowed = window.to(torch.float64)
    basis = torch.cat([torch.cos(angle) * windowed, -torch.sin(angle) * windowed])
    return basis.to(torch.float32).unsqueeze(1)


def dft_log_mel_spectrogram(
    waveforms: torch.Tensor, basis: torch.Tensor, filterbank: torch.Tensor, *, hop_length: int
) -> torch.Tensor:
    """(batch, samples) -> (batch, samples // hop_length, n_mels), as :func:`~audiotask.models.features.log_mel_spectrogram`.

    ``basis`` from :func:`dft_basis`; ``filterbank`` (n_fft // 2 + 1, n_mels). The waveform is
    reflect-padded by ``n_fft // 2`` on both sides, as the centred STFT is.
    """
    n_fft = basis.shape[-1]
    bins = basis.shape[0] // 2
    padded = torch.nn.functional.pad(waveforms.unsqueeze(1), (n_fft // 2, n_fft // 2), mode="reflect")
    spectrum = torch.nn.functional.conv1d(padded, basis, stride=hop_length)  # (batch, 2 * bins, frames)
    power = spectrum[:, :bins].pow(2) + spectrum[:, bins:].pow(2)
    power = power[..., : waveforms.shape[-1] // hop_length]
    return torch.log(torch.matmul(power.transpose(1, 2), filterbank) + 1e-6)


class DftLogMel(nn.Module):
    """:class:`~audiotask.models.features.LogMel` with the DFT as a convolution (for export)."""

    def __init__(self, log_mel: LogMel):
        super().__init__()
        self.hop_length = log_mel.hop_length
        self.register_buffer("basis", dft_basis(log_mel.window), persistent=False)
        self.register_buffer("filterbank", log_mel.filterbank.clone(), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return dft_log_mel_spectrogram(waveforms.mean(dim=1), self.basis, self.filterbank, hop_length=self.hop_length)


def with_exportable_front_end(model: Model) -> Model:
    """A copy of ``model`` whose :class:`LogMel` modules are :class:`DftLogMel` ones."""
    model = copy.deepcopy(model).eval()
    for name, module in list(model.named_modules()):
        if isinstance(module, LogMel):
            parent_name, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attribute, DftLogMel(module))
    return model


class Scores(nn.Module):
    """Waveforms (batch, channels, samples) -> activated outputs: the graph that is exported."""

    def __init__(self, model: Model):
        super().__init__()
        self.model = model

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.model.default_activation(self.model(waveforms))


class Encoder(nn.Module):
    """Waveforms (batch, channels, samples) -> frame features: the exported ``Model.encode``."""

    def __init__(self, model: Model):
        super().__init__()
        self.model = model

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.model.encode(waveforms)


class DecoderScores(nn.Module):
    """Frame features of windows -> activated outputs: the exported ``Model.decode``."""

    def __init__(self, model: Model):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.default_activation(self.model.decode(features))


# ---- export -----------------------------------------------------------------------------
def output_axes(specifications: Specifications) -> dict[int, str]:
    """Dynamic axes of the exported output: batch, and frames for a FRAME model."""
    return {0: "batch", 1: "frames"} if specifications.resolution is Resolution.FRAME else {0: "batch"}


def export_onnx(model: Model, directory: Union[str, Path], *, opset: int = OPSET,
                source: Optional[Union[str, Path]] = None) -> float:
    """Write ``model.onnx`` and ``audiotask.json`` into ``directory``; return the check's difference.

    Parameters
    ----------
    model : Model
        A model with specifications (e.g. from :meth:`Model.from_pretrained`).
    directory : str or Path
        Created if missing.
    opset : int
        ONNX opset of the graph.
    source : str or Path, optional
        The model folder ``model`` was loaded from: its tuned ``postprocessing.json`` is copied.

    Returns
    -------
    float
        Largest |onnxruntime - PyTorch| score on two random chunks of the model's duration;
        a ``RuntimeError`` when it exceeds :data:`TOLERANCE`.
    """
    require("onnx")  # the TorchScript-based exporter writes its protobuf with it
    model = model.eval()
    specifications = model.specifications
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    samples = seconds_to_samples(float(specifications.duration), model.sample_rate)
    example = torch.randn(2, model.num_channels, samples, generator=torch.Generator().manual_seed(0))
    exportable = with_exportable_front_end(model)
    export_graph(Scores(exportable), example, directory / GRAPH, input_name=INPUT, output_name=OUTPUT,
                 input_axes={0: "batch", 2: "samples"}, output_axes=output_axes(specifications), opset=opset)
    split = shares_encoder(model)
    if split:
        with torch.inference_mode():
            features = model.encode(example)
        export_graph(Encoder(exportable), example, directory / ENCODER_GRAPH, input_name=INPUT, output_name=FEATURES,
                     input_axes={0: "batch", 2: "samples"}, output_axes={0: "batch", 1: "frames"}, opset=opset)
        export_graph(DecoderScores(exportable), features, directory / DECODER_GRAPH, input_name=FEATURES,
                     output_name=OUTPUT, input_axes={0: "batch", 1: "frames"},
                     output_axes=output_axes(specifications), opset=opset)
    manifest = model.manifest()
    manifest["onnx"] = {
        "graph": GRAPH, "opset": opset, "exporter": "torchscript", "input": INPUT, "output": OUTPUT,
        "activated": True, "sample_rate": model.sample_rate, "num_channels": model.num_channels,
        "frame_hop": model.frame_hop,
        **({"encoder": ENCODER_GRAPH, "decoder": DECODER_GRAPH, "features": FEATURES,
            "encoder_context": model.encoder_context} if split else {}),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))
    for name in CARRIED:
        if source is not None and (Path(source) / name).is_file():
            shutil.copyfile(Path(source) / name, directory / name)
    exported = OnnxModel(directory)
    with torch.inference_mode():
        expected = Scores(model)(example).numpy()
        difference = float(np.abs(exported(example).numpy() - expected).max())
        if split:
            features = model.encode(example)
            difference = max(difference, float((exported.encode(example) - features).abs().max()),
                             float(np.abs(exported.decode(features).numpy() - expected).max()))
    if not difference <= TOLERANCE:
        raise RuntimeError(f"{directory / GRAPH}: onnxruntime's scores differ from PyTorch's by {difference:.2e} "
                           f"(more than {TOLERANCE:.0e})")
    return difference


def export_graph(module: nn.Module, example: torch.Tensor, path: Path, *, input_name: str, output_name: str,
                 input_axes: dict[int, str], output_axes: dict[int, str], opset: int) -> None:
    """``module`` traced on ``example`` and written to ``path`` as one ONNX graph with dynamic axes."""
    with warnings.catch_warnings():
        # the shape checks (check_input) are Python conditions the trace does not keep: intended
        warnings.simplefilter("ignore")
        # dynamo=False: the torch.export-based exporter fails on nn.GRU(bidirectional=True)
        torch.onnx.export(
            module.eval(), (example,), str(path), input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: input_axes, output_name: output_axes}, opset_version=opset, dynamo=False,
        )
