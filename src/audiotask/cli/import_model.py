"""Bring a published pretrained network in as an ordinary audiotask model folder.

Writes, into --output, model.safetensors and audiotask.json (a registered architecture,
the published model's own preprocessing inside it): `audiotask apply`, `evaluate`, `tune`,
`export` and `train` take the folder like any model. The weights are read as data: no code
shipped with them runs.

sources:
  silero-vad   Silero VAD's 16 kHz network, from the installed silero-vad package (its
               ONNX export, read as data: pip install silero-vad 'audiotask[onnx]'), or
               from --weights (an ONNX export or a safetensors file of its layouts); a
               FRAME speech detector (--task vad) with the package's own probabilities.
  resemblyzer  resemblyzer's GE2E speaker encoder, from the pretrained.pt of the installed
               package (read with weights_only=True; pip install --no-deps resemblyzer), or
               from --weights; 256-dimensional embeddings (--task embedding), each chunk's
               as the package's embed_utterance computes it.

example:
  audiotask import silero-vad --output models/silero-vad
  audiotask apply models/silero-vad recordings/ --output speech
"""

from __future__ import annotations

import argparse
from pathlib import Path

from audiotask.cli.common import CommandError

HELP = "import a published pretrained network as an audiotask model folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from audiotask.pretrained import SOURCES

    parser.add_argument("source", choices=sorted(SOURCES), metavar="SOURCE",
                        help="; ".join(f"{name}: {text}" for name, (_, text) in SOURCES.items()))
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="model folder to write")
    parser.add_argument("--weights", type=Path, metavar="FILE",
                        help="the weights file to convert (default: the one the source's package installs)")


def run(args: argparse.Namespace) -> int:
    from audiotask.core.manifest import MANIFEST
    from audiotask.pretrained import SOURCES
    from audiotask.tasks.registry import load_target

    if (args.output / MANIFEST).exists():
        raise CommandError(f"{args.output} already holds a model: choose another --output")
    convert = load_target(SOURCES[args.source][0])
    folder = convert(args.output, weights=args.weights)
    print(f"model: {folder} ({args.source})")
    return 0
