"""Apply a trained model to audio files and write its scores and detected events.

Writes, under --output: scores/ (one sed_scores_eval TSV of frame scores per file) and
detections.tsv (DCASE format: filename, onset, offset, event_label), or detections.rttm
with --format rttm.

example:
  audiotask apply run/model data/audio/test --output predictions --median-filter 0.45
"""

from __future__ import annotations

import argparse
from pathlib import Path

from audiotask.cli.common import CommandError, find_audio_files

HELP = "apply a trained model to audio files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model folder (save_pretrained) or Lightning .ckpt")
    parser.add_argument("audio", nargs="+", help="audio files, or folders searched recursively for *.wav / *.flac")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="output folder")
    inference = parser.add_argument_group("inference")
    inference.add_argument("--step", type=float, help="hop between chunks in seconds (default: 10%% of the chunk)")
    inference.add_argument("--batch-size", type=int, default=32, help="chunks per forward pass (default: %(default)s)")
    inference.add_argument("--device", help="e.g. cpu, cuda (default: cuda when available)")
    post = parser.add_argument_group("post-processing (scores -> events)")
    post.add_argument("--onset", type=float, default=0.5, help="activation threshold (default: %(default)s)")
    post.add_argument("--offset", type=float, help="deactivation threshold (default: --onset)")
    post.add_argument("--median-filter", type=float, default=0.0, metavar="SECONDS",
                      help="median filter length in seconds (default: %(default)s, none)")
    post.add_argument("--min-duration-on", type=float, default=0.0, metavar="SECONDS",
                      help="drop events shorter than this (default: %(default)s)")
    post.add_argument("--min-duration-off", type=float, default=0.0, metavar="SECONDS",
                      help="fill gaps shorter than this (default: %(default)s)")
    parser.add_argument("--format", choices=("tsv", "rttm"), default="tsv",
                        help="events as DCASE TSV or RTTM (default: %(default)s)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def postprocessing_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of ``scores_to_events`` from the command line."""
    return dict(
        onset=args.onset,
        offset=args.offset,
        median_filter_length=args.median_filter,
        min_duration_on=args.min_duration_on,
        min_duration_off=args.min_duration_off,
    )


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from audiotask.inference.formats import write_events_tsv, write_rttm, write_scores
    from audiotask.inference.inference import Inference
    from audiotask.inference.postprocessing import events_to_annotation, scores_to_events

    files = find_audio_files(args.audio)
    if not args.model.exists():
        raise CommandError(f"no such model: {args.model}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    inference = Inference(args.model, step=args.step, batch_size=args.batch_size, device=device)
    options = postprocessing_options(args)
    scores, events = {}, {}
    for path in tqdm(files, desc="Files", unit="file", disable=not args.progress):
        scores[path.name] = inference(str(path))
        events[path.name] = scores_to_events(scores[path.name], **options)
    args.output.mkdir(parents=True, exist_ok=True)
    write_scores(args.output / "scores", scores)
    if args.format == "tsv":
        detections = args.output / "detections.tsv"
        write_events_tsv(detections, events)
    else:
        detections = args.output / "detections.rttm"
        write_rttm(detections, [events_to_annotation(file_events, Path(name).stem) for name, file_events in events.items()])
    print(f"{sum(map(len, events.values()))} events in {len(files)} files")
    print(f"scores:     {args.output / 'scores'}")
    print(f"detections: {detections}")
    return 0
