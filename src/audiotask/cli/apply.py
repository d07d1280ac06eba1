"""Apply a trained model to audio files and write what its task calls for.

What is written under --output depends on the task the model was trained for:

  detection models (sed, vad, osd, mls): scores/ (one sed_scores_eval TSV of frame scores
    per file) and detections.tsv (DCASE format: filename, onset, offset, event_label), or
    detections.rttm with --format rttm. A chunk-level model's scores of overlapping windows
    are spread onto cells one step long (each the mean of the windows covering it), up to
    the file's end. When the model folder holds postprocessing.json (written by `audiotask
    tune`), its class-wise thresholds and median filter lengths are used, unless --onset,
    --offset or --median-filter is given (then none of it is) or --no-tuned; a line says
    which were used.
  audio classification: predictions.csv (filename, label: the class of highest score, then
    one score column per class, 6 decimals), one row per file; a file's scores are the mean
    of the class probabilities of its windows (one window every --step seconds).
  audio tagging: scores.csv (filename, one score column per class, each the maximum over
    the file's windows) and tags.tsv (DCASE weak labels: filename, event_labels, the classes
    scored at or above --onset; a file without any has an empty event_labels).
  SNR estimation: snr/URI.tsv (onset, offset, snr in dB, one row per frame) and snr.csv
    (filename, snr: the file's mean over its frames, in dB). Every frame is estimated,
    those without speech too: their values say little; read them with a voice activity
    detector's output at hand.
  speaker embedding: one embedding per file (key: its uri), or per turn of --segments
    (key: uri/start-end, in seconds at 3 decimals), in embeddings.safetensors (one tensor
    per key), or embeddings.npy (one row per key) and embeddings.txt (its keys, one per
    line) with --embedding-format npy.
  speaker diarization (with --embedding EMBEDDING_MODEL, and --num-speakers N or
    --min-speakers / --max-speakers when known): diarization.rttm, the speaker turns of
    every file (SPEAKER_00, SPEAKER_01... within each file); see cli/apply_diarization.py.

An option that does not apply to the model's task (--median-filter for a classifier,
--segments for a detector) is refused in one line before anything runs.

A file that cannot be processed (undecodable, empty, with NaN or infinite samples) does not
stop the others: it is named on stderr, the outputs of the others are written, and the
exit status is 1. Stopped by Ctrl-C or SIGTERM, apply writes the outputs of the files it
finished, says in one line how many of them, and exits with status 130 or 143.

Many files: the next files are decoded (and resampled) while the model runs on one, a
progress bar counts files, and a last line says how many files and seconds of audio were
processed, in how long (files/s, real-time factor). On a multi-core machine, --workers N
shares the files among N processes, each loading the model once and taking cores / N
threads; the outputs are those of one process on as many threads (torch on another number
of threads may round a score's last bit differently).

--stream (detection models): each file is read block by block (--block seconds) and scored
as the blocks arrive, as live audio would be (Inference.stream); the outputs are those of
offline apply, and a line says the latency: how long after a frame ends its score is out.

examples:
  audiotask apply run/model data/audio/test --output predictions --median-filter 0.45
  audiotask apply classifier/model clips/ --output predictions
  audiotask apply embedding/model audio/ --segments turns.rttm --output embeddings
  audiotask apply run/model data/audio/ --output predictions --workers 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiotask.cli.apply_diarization import DIARIZATION, DIARIZATION_MODEL_OPTIONS, add_diarization_arguments
from audiotask.cli.common import CommandError, Interrupted, find_audio_files, one_line, signal_name, stopped_by_signal

HELP = "apply a trained model to audio files"

#: post-processing without --onset / --median-filter nor tuned values
DEFAULT_ONSET = 0.5
DEFAULT_MEDIAN_FILTER = 0.0
#: the options that set what `audiotask tune` tunes: any of them given, the tuned values are not used
TUNED_OPTIONS = ("onset", "offset", "median_filter")
#: seconds of audio per block of --stream
DEFAULT_BLOCK = 0.5
#: the kind of the models without a task name in their specifications: the detection tasks'
EVENTS = "events"
#: what apply writes for them (a registry entry's default ``apply_outputs``)
EVENT_OUTPUTS = "audiotask.cli.apply_outputs:EventOutputs"
#: options that only some models take: dest -> (flag, the kinds of model that take it: task
#: names, EVENTS for the detection models); given to another model, they are refused
MODEL_OPTIONS = {
    "onset": ("--onset", (EVENTS, "audio-tagging")),
    "offset": ("--offset", (EVENTS,)),
    "median_filter": ("--median-filter", (EVENTS,)),
    "no_tuned": ("--no-tuned", (EVENTS, DIARIZATION)),
    "min_duration_on": ("--min-duration-on", (EVENTS, DIARIZATION)),
    "min_duration_off": ("--min-duration-off", (EVENTS, DIARIZATION)),
    "format": ("--format", (EVENTS,)),
    "stream": ("--stream", (EVENTS,)),
    "block": ("--block", (EVENTS,)),
    "segments": ("--segments", ("speaker-embedding",)),
    "embedding_format": ("--embedding-format", ("speaker-embedding",)),
}
MODEL_OPTIONS.update(DIARIZATION_MODEL_OPTIONS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model folder (save_pretrained), Lightning .ckpt, or folder of "
                        "`audiotask export` (run by onnxruntime)")
    parser.add_argument("audio", nargs="+", help="audio files, or folders searched recursively for the formats "
                        "soundfile decodes (wav, flac, ogg, mp3...)")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="output folder")
    inference = parser.add_argument_group("inference")
    inference.add_argument("--step", type=float, help="hop between chunks in seconds (default: 10%% of the chunk; "
                           "speaker embedding models: half the chunk)")
    inference.add_argument("--batch-size", type=int, default=32, help="chunks per forward pass (default: %(default)s)")
    inference.add_argument("--device", help="e.g. cpu, cuda (default: cuda when available)")
    inference.add_argument("--workers", type=int, default=1, metavar="N",
                           help="processes sharing the files, each with the model and cores / N threads: for a "
                           "multi-core machine (default: %(default)s, this process)")
    inference.add_argument("--stream", action="store_true", default=None,
                           help="detection models: read each file in blocks and score them as they arrive "
                           "(Inference.stream: the scores of offline inference, at a fixed latency, printed)")
    inference.add_argument("--block", type=float, metavar="SECONDS",
                           help=f"with --stream, seconds of audio per block (default: {DEFAULT_BLOCK})")
    post = parser.add_argument_group("post-processing (scores -> events; detection models)")
    # None when not given: the tuned values of postprocessing.json then apply
    post.add_argument("--onset", type=float, help="activation threshold, in [0, 1] (default: the tuned ones of "
                      f"MODEL/postprocessing.json, else {DEFAULT_ONSET}); tagging models: the score from which a "
                      f"class is a tag (default: {DEFAULT_ONSET})")
    post.add_argument("--offset", type=float, help="deactivation threshold (default: --onset)")
    post.add_argument("--median-filter", type=float, metavar="SECONDS",
                      help="median filter length in seconds (default: the tuned ones of MODEL/postprocessing.json, "
                      f"else {DEFAULT_MEDIAN_FILTER}, none)")
    post.add_argument("--no-tuned", action="store_true", default=None,
                      help="ignore MODEL/postprocessing.json (class-wise values from `audiotask tune`) or, for a "
                           "diarization model, MODEL/diarization.json (its tuned clustering)")
    post.add_argument("--min-duration-on", type=float, metavar="SECONDS",
                      help="drop events shorter than this (default: 0)")
    post.add_argument("--min-duration-off", type=float, metavar="SECONDS",
                      help="fill gaps shorter than this (default: 0)")
    post.add_argument("--format", choices=("tsv", "rttm"), help="events as DCASE TSV or RTTM (default: tsv)")
    embedding = parser.add_argument_group("speaker embedding models")
    embedding.add_argument("--segments", type=Path, metavar="RTTM",
                           help="one embedding per turn of this RTTM file (of the files named by their uri) "
                           "instead of one per file")
    embedding.add_argument("--embedding-format", choices=("safetensors", "npy"),
                           help="embeddings.safetensors, or embeddings.npy and embeddings.txt (default: safetensors)")
    add_diarization_arguments(parser)
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def postprocessing_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of ``scores_to_events`` from the command line, checked.

    Raises ``CommandError`` for options that ``scores_to_events`` would refuse or that make
    no sense, so that they fail before the model has run over every file.
    """
    onset = DEFAULT_ONSET if args.onset is None else args.onset
    median_filter = DEFAULT_MEDIAN_FILTER if args.median_filter is None else args.median_filter
    min_duration_on = 0.0 if args.min_duration_on is None else args.min_duration_on
    min_duration_off = 0.0 if args.min_duration_off is None else args.min_duration_off
    for name in ("onset", "offset"):
        value = getattr(args, name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise CommandError(f"--{name} must be a score threshold in [0, 1], got {value}")
    if args.offset is not None and args.offset > onset:
        raise CommandError(f"--offset ({args.offset}) must not exceed --onset ({onset}): "
                           "an event starts above --onset and ends at or below --offset")
    for name, value in (("median_filter", median_filter), ("min_duration_on", min_duration_on),
                        ("min_duration_off", min_duration_off)):
        if not value >= 0.0:  # NaN too
            raise CommandError(f"--{name.replace('_', '-')} must be a non-negative number of seconds, got {value}")
    return dict(
        onset=onset,
        offset=args.offset,
        median_filter_length=median_filter,
        min_duration_on=min_duration_on,
        min_duration_off=min_duration_off,
    )


def with_tuned_values(args: argparse.Namespace, options: dict, classes) -> dict:
    """``options`` with the class-wise values of MODEL/postprocessing.json when they apply.

    They apply when the file exists and none of --onset, --offset, --median-filter,
    --no-tuned is given; one line on stdout says whether they were used. A malformed file, or
    one tuned for other classes than ``classes`` (the model's), is a ``CommandError``.
    """
    from audiotask.inference.tuned_postprocessing import FILENAME, PostProcessing

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


def model_kind(model) -> str:
    """The task name in ``model``'s specifications when its registry entry has outputs of its
    own (``TaskEntry.apply_outputs``), else :data:`EVENTS` (the detection models, and models
    saved without a task name)."""
    entry = task_entry(model)
    return entry.name if entry is not None and entry.apply_outputs != EVENT_OUTPUTS else EVENTS


def task_entry(model):
    """The registry entry of the task named in ``model``'s specifications, or None."""
    from audiotask.tasks import registry

    name = model.specifications.task_name
    try:
        return registry.resolve(name) if name else None
    except registry.UnknownTaskError:  # a task of a newer audiotask, or of another package
        return None


def model_outputs(model) -> type:
    """What apply writes for ``model``: its task's ``apply_outputs`` (see ``cli/apply_outputs.py``)."""
    from audiotask.tasks.registry import load_target

    entry = task_entry(model)
    return load_target(EVENT_OUTPUTS if entry is None else entry.apply_outputs)


def refuse_other_options(args: argparse.Namespace, kind: str) -> None:
    """``CommandError`` naming every option of :data:`MODEL_OPTIONS` given that ``kind`` does not take.

    Refused rather than ignored: an option that silently does nothing (a --median-filter
    given to a classifier) would let its user believe it shaped the outputs.
    """
    refused = [flag for dest, (flag, kinds) in MODEL_OPTIONS.items()
               if getattr(args, dest, None) is not None and kind not in kinds]
    if refused:
        takes = [flag for flag, kinds in MODEL_OPTIONS.values() if kind in kinds]
        raise CommandError(f"{', '.join(refused)} do{'es' * (len(refused) == 1)} not apply to the "
                           f"{'detection' if kind == EVENTS else kind} model {args.model}"
                           + (f" (of these options, it takes {', '.join(takes)})" if takes else ""))


def check_inputs(args: argparse.Namespace) -> None:
    """Fail at once on a file an option names (--segments) or a --workers below 1, not after the model ran."""
    if args.segments is not None and not args.segments.is_file():
        raise CommandError(f"no such file: {args.segments}")
    if args.workers < 1:
        raise CommandError(f"--workers must be at least 1 (processes sharing the files), got {args.workers}")
    if args.block is not None and not args.stream:
        raise CommandError("--block is the block size of --stream: give --stream too")
    if args.block is not None and not args.block > 0:
        raise CommandError(f"--block must be a positive number of seconds, got {args.block}")


def throughput(files: int, seconds: float, elapsed: float) -> str:
    """The last line of apply: ``files`` processed, holding ``seconds`` of audio, in ``elapsed`` seconds."""
    line = f"{files} file{'s' * (files != 1)} ({seconds:.1f} s of audio) in {elapsed:.1f} s: " \
           f"{files / max(elapsed, 1e-9):.1f} files/s"
    return line + (f", real-time factor {elapsed / seconds:.4f}" if seconds > 0 else "")


def run(args: argparse.Namespace) -> int:
    import time
    from dataclasses import replace

    import torch
    from tqdm.auto import tqdm

    from audiotask.cli.apply_files import Setup, process_files, process_in_workers
    from audiotask.cli.apply_steps import load_model

    options = postprocessing_options(args)
    check_inputs(args)
    files = find_audio_files(args.audio)
    model = load_model(args.model)
    kind = model_kind(model)
    refuse_other_options(args, kind)
    args.format = args.format or "tsv"
    args.embedding_format = args.embedding_format or "safetensors"
    args.block = args.block or DEFAULT_BLOCK
    if kind == EVENTS:
        options = with_tuned_values(args, options, model.specifications.classes)
    kind_outputs = model_outputs(model)
    step = kind_outputs.default_step(model.specifications) if args.step is None else args.step
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    setup = Setup(args, kind_outputs, options, step, device)
    workers = min(args.workers, len(files))
    try:
        # with workers, this process's model only checks the options and writes: no GPU for it
        outputs = (setup if workers == 1 else replace(setup, device="cpu")).build(model)
    except ValueError as error:  # --step outside (0, chunk duration], --batch-size < 1
        raise CommandError(str(error)) from None
    start = time.perf_counter()
    outcomes = process_files(outputs, enumerate(files)) if workers == 1 else process_in_workers(setup, files, workers)
    # one file that cannot be processed must not cost the others their outputs
    results, failed, seconds, stopped = {}, {}, 0.0, False
    with tqdm(total=len(files), desc="Files", unit="file", disable=not args.progress) as progress:
        try:
            for outcome in outcomes:
                path = files[outcome.index]
                if outcome.problem is None:
                    results[outcome.index], seconds = outcome.result, seconds + outcome.seconds
                else:
                    failed[path] = outcome.problem
                    tqdm.write(f"audiotask apply: failed: {failed[path]}", file=sys.stderr)
                progress.update()
        except BaseException as stop:  # Ctrl-C, SIGTERM: keep what is finished
            if not stopped_by_signal(stop):
                raise
            stopped = True
            outcomes.close()  # stops reading ahead, ends the workers
    elapsed = time.perf_counter() - start
    # in the order of the files, whichever worker finished first
    results = {files[index].name: results[index] for index in sorted(results)}
    if results:
        args.output.mkdir(parents=True, exist_ok=True)
        for line in outputs.write(args.output, results):
            print(line)
        print(throughput(len(results), seconds, elapsed))
    if stopped:
        done = len(results) + len(failed)
        written = f"the outputs of {len(results)} written under {args.output}" if results else "nothing written"
        raise Interrupted(f"stopped by {signal_name()} after {done} of {len(files)} files: {written}; the other "
                          f"{len(files) - done} were not processed (apply them again)")
    if failed:
        written = f"outputs written for the other {len(results)}" if results else "nothing written"
        print(f"audiotask apply: {len(failed)} of {len(files)} files failed; {written}", file=sys.stderr)
        return 1
    return 0
