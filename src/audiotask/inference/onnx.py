"""The onnxruntime model that :class:`~audiotask.inference.inference.Inference` runs, from a
folder that :func:`audiotask.inference.onnx_export.export_onnx` wrote.

An export is a folder: ``model.onnx`` (waveforms ``(batch, channels, samples)`` -> activated
scores, batch and samples dynamic) and ``audiotask.json`` (the model's manifest, plus an
``"onnx"`` entry: opset, exporter, input and output names, frame hop). Nothing in it is
pickled, and loading it needs no model class: the manifest says all that inference needs,
so this module imports neither the models nor Lightning (seconds of start-up and about
200 MB of memory that inference from an export does without).
A model that splits into ``encode`` / ``decode`` (see ``Model.encoder_context``) also gets
``encoder.onnx`` (waveforms -> frame features) and ``decoder.onnx`` (features of windows ->
activated scores), so that inference through onnxruntime encodes each file once too.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch

from audiotask.core.audio import Audio
from audiotask.core.frames import Frames
from audiotask.core.manifest import MANIFEST
from audiotask.core.specifications import Specifications

GRAPH = "model.onnx"
#: the two halves of a model that splits into encode / decode
ENCODER_GRAPH, DECODER_GRAPH = "encoder.onnx", "decoder.onnx"
INPUT, OUTPUT, FEATURES = "waveforms", "scores", "features"


def require(module: str):
    """Import ``module`` (onnx, onnxruntime); a ``RuntimeError`` saying how to install it when missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise RuntimeError(f"{module} is not installed: pip install 'audiotask[onnx]'") from error


def is_onnx_export(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a folder written by :func:`~audiotask.inference.onnx_export.export_onnx`."""
    return Path(path).is_dir() and (Path(path) / GRAPH).is_file()


class OnnxModel:
    """An exported model run by onnxruntime, with what :class:`Inference` uses of a :class:`Model`.

    Calling it maps waveforms ``(batch, channels, samples)`` (torch) to the graph's output,
    which is already activated: :meth:`default_activation` is therefore the identity, and
    ``Inference``'s cut-score-aggregate steps run unchanged. Loading reads JSON and the
    ONNX protobuf; it never unpickles.

    Parameters
    ----------
    directory : str or Path
        A folder written by :func:`~audiotask.inference.onnx_export.export_onnx`.
    num_threads : int, optional
        onnxruntime's intra-op threads; default: ``torch.get_num_threads()``, as PyTorch would use.
    """

    def __init__(self, directory: Union[str, Path], *, num_threads: Optional[int] = None):
        directory = Path(directory)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{directory} is not an exported audiotask model: {MANIFEST} is missing.")
        manifest = json.loads(manifest_path.read_text())
        if "onnx" not in manifest:
            raise ValueError(f"{manifest_path} describes no ONNX export (no 'onnx' entry).")
        self.directory = directory
        self.manifest: dict[str, Any] = manifest
        exported = manifest["onnx"]
        self.specifications = Specifications.from_dict(manifest["specifications"])
        self.sample_rate = int(exported["sample_rate"])
        self.num_channels = int(exported["num_channels"])
        self.frame_hop: Optional[int] = exported.get("frame_hop")
        self.audio = Audio(sample_rate=self.sample_rate)
        self.num_threads = torch.get_num_threads() if num_threads is None else int(num_threads)
        self._output = exported.get("output", OUTPUT)
        self._features = exported.get("features", FEATURES)
        #: None unless the export holds the encoder and decoder graphs (see ``Model.encoder_context``)
        self.encoder_context: Optional[int] = exported.get("encoder_context")
        self._graphs = {"model": GRAPH}
        if self.encoder_context is not None:
            self._graphs.update(encoder=exported["encoder"], decoder=exported["decoder"])
        self._open(["CPUExecutionProvider"])

    def _open(self, providers: list[str]) -> None:
        """One onnxruntime session per graph of the export, on ``providers``."""
        self.sessions = {name: self._session(graph, providers) for name, graph in self._graphs.items()}

    def _session(self, graph: str, providers: list[str]):
        onnxruntime = require("onnxruntime")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        # one graph runs at a time: threads across operators would only compete with those inside
        options.inter_op_num_threads = 1
        # idle threads sleep instead of spinning: between runs, PyTorch's threads cut and add
        # windows, and spinning ones took their cores (debug-speech, 2 threads: real-time
        # factor 0.0029 spinning, 0.0018 not)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(str(self.directory / graph), options, providers=providers)

    # ---- what Inference and the apply outputs use of a Model ---------------------------
    @property
    def frames(self) -> Frames:
        if self.frame_hop is None:
            raise ValueError(f"the exported model {self.directory} does not emit frames.")
        return Frames.from_hop(self.frame_hop, self.sample_rate)

    def num_frames(self, num_samples: int) -> int:
        return self.frames.num_frames(num_samples)

    def eval(self) -> "OnnxModel":
        return self

    def parameters(self) -> Iterator[torch.Tensor]:
        """None: ``Inference.device`` then says CPU, where inputs are handed to onnxruntime."""
        return iter(())

    def to(self, device: Union[str, torch.device]) -> "OnnxModel":
        """Run on ``device``: CPU, or CUDA when onnxruntime has its CUDA provider (else a warning, and CPU)."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        if device.type == "cuda" and "CUDAExecutionProvider" in require("onnxruntime").get_available_providers():
            self._open(["CUDAExecutionProvider", "CPUExecutionProvider"])
        else:
            warnings.warn(f"onnxruntime cannot run {self.directory / GRAPH} on {device} here: running it on CPU.")
        return self

    def default_activation(self, scores: torch.Tensor) -> torch.Tensor:
        """The identity: the graph ends with the activation."""
        return scores

    def check_input(self, waveforms: torch.Tensor) -> None:
        """Raise unless ``waveforms`` is (batch, channels, samples)."""
        if waveforms.ndim != 3 or waveforms.shape[1] != self.num_channels:
            raise ValueError(f"the exported model expects waveforms of shape (batch, {self.num_channels}, samples), "
                             f"got {tuple(waveforms.shape)}.")

    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> scores (batch, frames, classes) or (batch, classes)."""
        self.check_input(waveforms)
        return self._run("model", INPUT, waveforms, self._output)

    def encode(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> frame features, as ``Model.encode`` (split exports only)."""
        self.check_input(waveforms)
        return self._run("encoder", INPUT, waveforms, self._features)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Frame features of windows -> scores, as ``Model.decode`` then the activation (split exports only)."""
        return self._run("decoder", self._features, features, self._output)

    def _run(self, graph: str, input_name: str, inputs: torch.Tensor, output_name: str) -> torch.Tensor:
        if graph not in self.sessions:
            raise ValueError(f"the exported model {self.directory} has no {graph} graph: export it again.")
        array = inputs.detach().cpu().numpy().astype(np.float32, copy=False)
        (outputs,) = self.sessions[graph].run([output_name], {input_name: np.ascontiguousarray(array)})
        return torch.from_numpy(outputs)
