"""``audiotask import silero-vad``: the network the silero-vad package runs, as a SileroVAD model.

The package is located, not imported (``importlib.util.find_spec`` runs none of its code),
and its weights are read as data. Two layouts are read:

- the package's ONNX export ``silero_vad/data/silero_vad_16k_op15.onnx`` (the default):
  the same weights as its ``load_silero_vad()`` network, so that the imported model gives
  the package's own probabilities. Its initializers are read with ``onnx`` (a protobuf:
  data, no code), which ``pip install 'audiotask[onnx]'`` installs;
- a safetensors file of the layout of ``silero_vad/tinygrad_model.py`` (``--weights
  FILE.safetensors``). The package's own ``silero_vad_16k.safetensors`` (silero-vad 6.2.3)
  holds other weights than its ONNX and TorchScript networks: another version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

import torch

from audiotask.pretrained import check_layout, package_file, weights_file

#: the package's export of the network that ``load_silero_vad()`` runs, below its folder
PACKAGE_WEIGHTS = Path("data") / "silero_vad_16k_op15.onnx"
#: the names of the ONNX export's initializers, then of tinygrad_model.py's layout, in SileroVAD's
ONNX_KEYS = {
    "model.stft.forward_basis_buffer": "stft_conv.weight",
    **{f"model.encoder.{index}.reparam_conv.{kind}": f"conv{index + 1}.{kind}"
       for index in range(4) for kind in ("weight", "bias")},
    **{f"model.decoder.rnn.{kind}": f"lstm.{kind}_l0" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
    "model.decoder.decoder.2.weight": "final_conv.weight", "model.decoder.decoder.2.bias": "final_conv.bias",
}
#: the chunk-by-chunk LSTM cell's weights are those of a one-layer nn.LSTM
SAFETENSORS_KEYS = {f"lstm_cell.{kind}": f"lstm.{kind}_l0" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
#: seconds of audio a window of sliding inference holds: the LSTM starts afresh in each, where
#: the package carries its state over the whole file. Detection error rate on debug-speech's
#: test files (30 s each; silero's own post-processing): 5-s windows 35.2 %, 20-s 30.1 %,
#: 30-s 30.3 %, 60-s (each file in one window) 28.5 %
WINDOW_SECONDS = 60.0


def package_weights() -> Path:
    """The ONNX export of the installed silero-vad package."""
    return package_file("silero_vad", str(PACKAGE_WEIGHTS), install="pip install silero-vad")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an ONNX export's initializers or of a safetensors file, by their names there."""
    if path.suffix == ".onnx":
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError:
            raise ImportError("reading silero-vad's ONNX weights needs onnx: pip install 'audiotask[onnx]'") from None
        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception as error:  # protobuf's DecodeError and others: a file that is no ONNX model
            raise ValueError(f"{path}: not an ONNX model ({error})") from None
        return {item.name: torch.from_numpy(numpy_helper.to_array(item).copy()) for item in graph.initializer}
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as error:
        raise ValueError(f"{path}: not a safetensors file ({error})") from None


def converted_state(state: Mapping[str, torch.Tensor], *, source: str) -> dict[str, torch.Tensor]:
    """``state`` (either layout) under SileroVAD's names; ``ValueError`` naming ``source`` and
    the keys when it is of neither."""
    from audiotask.models.silero_vad import SileroVAD

    renamed = {**ONNX_KEYS, **SAFETENSORS_KEYS}
    converted = {renamed.get(name, name): tensor for name, tensor in state.items()}
    check_layout(converted, reference_model(SileroVAD).state_dict(), source=source, network="Silero VAD's 16 kHz network")
    return converted


def specifications():
    """What the imported model detects: speech, frame by frame, as ``--task vad`` trains it."""
    from audiotask.core.specifications import TASK_NAME, Problem, Resolution, Specifications

    return Specifications(problem=Problem.BINARY_CLASSIFICATION, resolution=Resolution.FRAME,
                          duration=WINDOW_SECONDS, classes=["speech"],
                          extra={TASK_NAME: "voice-activity-detection"})


def reference_model(cls):
    """An untrained ``cls`` with the imported model's specifications."""
    model = cls()
    model.attach_specifications(specifications())
    return model


def import_silero_vad(output: Union[str, Path], weights: Optional[Union[str, Path]] = None) -> Path:
    """Write Silero VAD as an audiotask model folder ``output`` and return it; ``weights``: an
    ONNX export or safetensors file of its layouts (default: the installed package's ONNX)."""
    from audiotask.models.silero_vad import SileroVAD

    path = weights_file(weights, default=package_weights)
    model = reference_model(SileroVAD)
    model.load_state_dict(converted_state(read_weights(path), source=str(path)))
    return model.save_pretrained(output)
