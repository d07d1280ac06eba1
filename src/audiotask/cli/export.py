"""Export a trained model for another runtime.

--format onnx (the only one so far) writes into --output:
  model.onnx      waveforms (batch, channels, samples) at the model's sample rate -> scores,
                  activated as the task calls for (sigmoid for detection and tagging,
                  softmax for classification; embeddings and SNR as they are): (batch,
                  frames, classes) for frame models, (batch, classes) for the others. Batch
                  and samples are dynamic axes. The log-mel front end is inside the graph.
  encoder.onnx, decoder.onnx
                  for a model that splits into an encoder and a decoder (the CRNN: log-mel
                  and convolutions, then GRU and head): waveforms -> frame features, and
                  features of windows -> scores, so that sliding-window inference encodes
                  each file once (what `apply` does with the export, as with the model).
  audiotask.json  the model's manifest, with an "onnx" entry (opset, exporter, frame hop,
                  the graphs).
  postprocessing.json, when the model folder has one (tuned by `audiotask tune`).

The export is checked before the command returns: onnxruntime's scores of two random chunks
must match PyTorch's within 1e-4 (the difference is printed). `audiotask apply` and
`Inference` take the exported folder like a model folder and run it with onnxruntime.
Needs the onnx extra: pip install 'audiotask[onnx]'.

example:
  audiotask export run/model --format onnx --output run/model-onnx
  audiotask apply run/model-onnx data/audio/test --output predictions
"""

from __future__ import annotations

import argparse
from pathlib import Path

from audiotask.cli.common import CommandError

HELP = "export a trained model (ONNX) for onnxruntime and other runtimes"
FORMATS = ("onnx",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model folder (save_pretrained) or Lightning .ckpt")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="export format (default: %(default)s)")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder to write the export into")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: 17)")


def run(args: argparse.Namespace) -> int:
    from audiotask.cli.apply_steps import load_model
    from audiotask.inference.onnx import GRAPH, is_onnx_export
    from audiotask.inference.onnx_export import OPSET, export_onnx

    if is_onnx_export(args.model):
        raise CommandError(f"{args.model} is already an ONNX export: export the model folder it was made from")
    if args.output.resolve() == args.model.resolve():
        raise CommandError("--output must not be the model folder")
    model = load_model(args.model)
    opset = OPSET if args.opset is None else args.opset
    source = args.model if args.model.is_dir() else None
    difference = export_onnx(model, args.output, opset=opset, source=source)
    print(f"{args.output / GRAPH}: opset {opset}; onnxruntime matches PyTorch within {difference:.1e}")
    return 0
