"""Apply a trained model to audio files and write its scores and detected events.

Writes, under --output: scores/ (one sed_scores_eval TSV of frame scores per file) and
detections.tsv (DCASE format: filename, onset, offset, event_label), or detections.rttm
with --format rttm. A chunk-level model's scores of overlapping windows are spread onto
cells one step long (each the mean of the windows covering it), up to the file's end.

When the model folder holds postprocessing.json (written by `audiotask tune`), its
class-wise thresholds and median filter lengths are used, unless --onset, --offset or
--median-filter is given (then none of it is) or --no-tuned; a line says which were used.

A file that cannot be processed (undecodable, empty, with NaN or infinite samples) does not
stop the others: it is named on stderr, the outputs of the others are written, and the
exit status is 1.

example:
  audiotask apply run/model data/audio/test --output predictions --median-filter 0.45
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audiotask.cli.common import CommandError, find_audio_files, one_line
from audiotask.protocols.uris import uri_of

HELP = "apply a trained model to audio files"

#: post-processing without --onset / --median-filter nor tuned values
DEFAULT_ONSET = 0.5
DEFAULT_MEDIAN_FILTER = 0.0
#: the options that set what `audiotask tune` tunes: any of them given, the tuned values are not used
TUNED_OPTIONS = ("onset", "offset", "median_filter")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model folder (save_pretrained) or Lightning .ckpt")
    parser.add_argument("audio", nargs="+", help="audio files, or folders searched recursively for the formats "
                        "soundfile decodes (wav, flac, ogg, mp3...)")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="output folder")
    inference = parser.add_argument_group("inference")
    inference.add_argument("--step", type=float, help="hop between chunks in seconds (default: 10%% of the chunk)")
    inference.add_argument("--batch-size", type=int, default=32, help="chunks per forward pass (default: %(default)s)")
    inference.add_argument("--device", help="e.g. cpu, cuda (default: cuda when available)")
    post = parser.add_argument_group("post-processing (scores -> events)")
    # None when not given: the tuned values of postprocessing.json then apply
    post.add_argument("--onset", type=float, help="activation threshold, in [0, 1] (default: the tuned ones of "
                      f"MODEL/postprocessing.json, else {DEFAULT_ONSET})")
    post.add_argument("--offset", type=float, help="deactivation threshold (default: --onset)")
    post.add_argument("--median-filter", type=float, metavar="SECONDS",
                      help="median filter length in seconds (default: the tuned ones of MODEL/postprocessing.json, "
                      f"else {DEFAULT_MEDIAN_FILTER}, none)")
    post.add_argument("--no-tuned", action="store_true",
                      help="ignore MODEL/postprocessing.json (class-wise values from `audiotask tune`)")
    post.add_argument("--min-duration-on", type=float, default=0.0, metavar="SECONDS",
                      help="drop events shorter than this (default: %(default)s)")
    post.add_argument("--min-duration-off", type=float, default=0.0, metavar="SECONDS",
                      help="fill gaps shorter than this (default: %(default)s)")
    parser.add_argument("--format", choices=("tsv", "rttm"), default="tsv",
                        help="events as DCASE TSV or RTTM (default: %(default)s)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def postprocessing_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of ``scores_to_events`` from the command line, checked.

    Raises ``CommandError`` for options that ``scores_to_events`` would refuse or that make
    no sense, so that they fail before the model has run over every file.
    """
    onset = DEFAULT_ONSET if args.onset is None else args.onset
    median_filter = DEFAULT_MEDIAN_FILTER if args.median_filter is None else args.median_filter
    for name in ("onset", "offset"):
        value = getattr(args, name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise CommandError(f"--{name} must be a score threshold in [0, 1], got {value}")
    if args.offset is not None and args.offset > onset:
        raise CommandError(f"--offset ({args.offset}) must not exceed --onset ({onset}): "
                           "an event starts above --onset and ends at or below --offset")
    for name, value in (("median_filter", median_filter), ("min_duration_on", args.min_duration_on),
                        ("min_duration_off", args.min_duration_off)):
        if not value >= 0.0:  # NaN too
            raise CommandError(f"--{name.replace('_', '-')} must be a non-negative number of seconds, got {value}")
    return dict(
        onset=onset,
        offset=args.offset,
        median_filter_length=median_filter,
        min_duration_on=args.min_duration_on,
        min_duration_off=args.min_duration_off,
    )


def with_tuned_values(args: argparse.Namespace, options: dict, classes) -> dict:
    """``options`` with the class-wise values of MODEL/postprocessing.json when they apply.

    They apply when the file exists and none of --onset, --offset, --median-filter,
    --no-tuned is given; one line on stdout says whether they were used. A malformed file, or
    one tuned for other classes than ``classes`` (the model's), is a ``CommandError``.
    """
    from audiotask.inference.tuning import FILENAME, PostProcessing

    path = args.model / FILENAME
    if args.no_tuned or not path.is_file():
        return options
    given = [f"--{name.replace('_', '-')}" for name in TUNED_OPTIONS if getattr(args, name) is not None]
    if given:
        print(f"post-processing: {', '.join(given)} given: {path} not used")
        return options
    try:
        tuned = PostProcessing.load(args.model)
        tuned.check_classes(classes, source=str(path))
    except ValueError as error:
        raise CommandError(f"{one_line(str(error))} (--no-tuned ignores it)") from None
    print(f"post-processing: class-wise thresholds and median filters of {path} (tuned for {tuned.metric})")
    return {**options, **tuned.kwargs()}


#: what one file can raise that should not stop the others: undecodable, empty or
#: non-finite audio (AudioError, a ValueError), an unreadable file (OSError), or torch
#: failing on it (RuntimeError, e.g. out of memory on a very long file)
FILE_ERRORS = (ValueError, OSError, RuntimeError)


def load_model(path: Path):
    """``Model.from_pretrained(path)``; a ``ValueError`` naming the file when it cannot be loaded.

    Not a ``CommandError``: ``audiotask --debug`` then shows where loading failed.
    """
    import pickle

    from audiotask.core.model import MANIFEST, Model

    if not path.exists():
        raise CommandError(f"no such model: {path}")
    try:
        return Model.from_pretrained(path)
    except json.JSONDecodeError as error:  # its message names a line and column, not the file
        raise ValueError(f"{path / MANIFEST if path.is_dir() else path}: invalid JSON: {error}") from error
    except (ValueError, OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
        reason = f"missing key {error.args[0]!r}" if isinstance(error, KeyError) and error.args else str(error)
        raise ValueError(one_line(f"cannot load the model {path}: {reason}")) from error


def apply_to_file(inference, path: Path, options: dict):
    """``(scores DataFrame, events)`` of one audio file; raises one of :data:`FILE_ERRORS` naming it."""
    from audiotask.inference.aggregation import is_per_window, windows_to_timeline
    from audiotask.inference.formats import scores_to_dataframe
    from audiotask.inference.postprocessing import scores_to_events

    end = inference.model.audio.get_duration(str(path))
    file_scores = inference(str(path))
    if is_per_window(file_scores.sliding_window):
        # a chunk model's rows are overlapping windows, the last one running over zero
        # padding: a timeline of step-long cells stopping at the file's end replaces them
        file_scores = windows_to_timeline(file_scores, end=end)
    return scores_to_dataframe(file_scores, end=end), scores_to_events(file_scores, end=end, **options)


def file_problem(path: Path, error: BaseException) -> str:
    """``error`` in one line that names ``path`` (once: library errors often name it already)."""
    message = one_line(str(error))
    return message if str(path) in message else f"{path}: {message}"


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from audiotask.inference.formats import write_events_tsv, write_rttm, write_scores
    from audiotask.inference.inference import Inference
    from audiotask.inference.postprocessing import events_to_annotation

    options = postprocessing_options(args)
    files = find_audio_files(args.audio)
    model = load_model(args.model)
    options = with_tuned_values(args, options, model.specifications.classes)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        inference = Inference(model, step=args.step, batch_size=args.batch_size, device=device)
    except ValueError as error:  # --step outside (0, chunk duration], --batch-size < 1
        raise CommandError(str(error)) from None
    # one file that cannot be processed must not cost the others their outputs
    scores, events, failed = {}, {}, {}
    for path in tqdm(files, desc="Files", unit="file", disable=not args.progress):
        try:
            scores[path.name], events[path.name] = apply_to_file(inference, path, options)
        except FILE_ERRORS as error:
            failed[path] = file_problem(path, error)
            tqdm.write(f"audiotask apply: failed: {failed[path]}", file=sys.stderr)
    if scores:
        args.output.mkdir(parents=True, exist_ok=True)
        write_scores(args.output / "scores", scores)
        if args.format == "tsv":
            detections = args.output / "detections.tsv"
            write_events_tsv(detections, events)
        else:
            detections = args.output / "detections.rttm"
            write_rttm(detections, [events_to_annotation(file_events, uri_of(name))
                                    for name, file_events in events.items()])
        print(f"{sum(map(len, events.values()))} events in {len(scores)} files")
        print(f"scores:     {args.output / 'scores'}")
        print(f"detections: {detections}")
    if failed:
        written = f"outputs written for the other {len(scores)}" if scores else "nothing written"
        print(f"audiotask apply: {len(failed)} of {len(files)} files failed; {written}", file=sys.stderr)
        return 1
    return 0
