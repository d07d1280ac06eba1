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

  wespeaker    a WeSpeaker ResNet checkpoint (--weights avg_model.pt): speaker embeddings
               (--task embedding), its Kaldi filterbank and mean normalisation inside.
  panns        a PANNs CNN14 or CNN10 checkpoint (--weights Cnn14_mAP=0.431.pth): AudioSet's
               527 tags at 32 kHz (--task tagging); --labels class_labels_indices.csv names them.
  beats        a BEATs checkpoint (--weights BEATs_iter3.pt): frame embeddings (an encoder
               for --features-from), and AudioSet's tags when the checkpoint is fine-tuned.

A checkpoint file may come first, its layout named by --format:
  audiotask import avg_model.pt --format wespeaker --output models/wespeaker

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
    from audiotask.pretrained import FORMATS, SOURCES

    parser.add_argument("source", metavar="SOURCE",
                        help="; ".join(f"{name}: {text}" for name, (_, text) in SOURCES.items())
                        + "; or a checkpoint file, with --format")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="model folder to write")
    parser.add_argument("--weights", type=Path, metavar="FILE",
                        help="the weights file to convert (default: the one the source's package installs)")
    parser.add_argument("--format", choices=FORMATS, metavar="FORMAT",
                        help=f"the layout of the checkpoint file given as SOURCE: {', '.join(FORMATS)}")
    parser.add_argument("--labels", type=Path, metavar="CSV",
                        help="class names of a tagging checkpoint (AudioSet's class_labels_indices.csv: "
                             "index,mid,display_name); without it, audioset_000 ... audioset_526")



def source_and_weights(args: argparse.Namespace) -> tuple[str, Path | None]:
    """What to convert: ``SOURCE [--weights FILE]``, or ``FILE --format SOURCE``."""
    from audiotask.pretrained import FORMATS, SOURCES

    if args.format is not None:
        if args.weights is not None:
            raise CommandError(f"give the checkpoint once: {args.source} --format {args.format}, or "
                               f"{args.format} --weights FILE")
        return args.format, Path(args.source)
    if args.source not in SOURCES:
        raise CommandError(f"unknown source {args.source!r}: known sources are {', '.join(sorted(SOURCES))} "
                           f"(or a checkpoint file with --format {'|'.join(FORMATS)})")
    return args.source, args.weights


def run(args: argparse.Namespace) -> int:
    import inspect

    from audiotask.core.manifest import MANIFEST
    from audiotask.pretrained import SOURCES
    from audiotask.tasks.registry import load_target

    source, weights = source_and_weights(args)
    if (args.output / MANIFEST).exists():
        raise CommandError(f"{args.output} already holds a model: choose another --output")
    convert = load_target(SOURCES[source][0])
    options = {}
    if args.labels is not None:
        if "labels" not in inspect.signature(convert).parameters:
            raise CommandError(f"--labels: {source}'s classes come with it")
        options["labels"] = args.labels
    folder = convert(args.output, weights=weights, **options)
    print(f"model: {folder} ({source})")
    return 0
