"""Tune class-wise post-processing on a protocol's development set and store it with the model.

Scores every file of --subset with MODEL, then picks for each class the median filter
length (among --median-filter-lengths) and the threshold with the best F1 (--metric;
sed_scores_eval finds the best threshold exactly). The result is written to
MODEL/postprocessing.json, which `audiotask apply` then uses unless it is given --onset,
--offset, --median-filter or --no-tuned. A table compares each class's F1 before (threshold
0.5 and a 0.45-s median filter for every class, the demo's post-processing) and after.

A speaker diarization model (given --embedding EMBEDDING_MODEL) is tuned otherwise: the
clustering threshold of least DER on the files of --subset (their "annotation", and
"annotated" as UEM) among 0.1, 0.2 ... 1.5 and the one used before (that of an existing
MODEL/diarization.json, whose other parameters are kept, else the pipeline's default), one
line per threshold, written with the pipeline's other parameters, the embedding model and
the DER to MODEL/diarization.json, which `audiotask apply` then uses (see
cli/apply_diarization.py). --embedding is refused for other models.

A file that cannot be processed (undecodable, empty, with NaN or infinite samples) does not
stop the others: it is named on stderr, left out of the tuning, and the exit status is 1.
Stopped by Ctrl-C or SIGTERM, tune writes nothing (one line says so) and exits with status
130 or 143.

example:
  audiotask tune run/model --database data/database.yml \\
      --protocol AudiotaskDemo.SpeakerDiarization.SoundEvents --metric intersection_f1
  audiotask tune run/diarization --embedding run/embedding --database data/database.yml \\
      --protocol MyDatabase.SpeakerDiarization.MyProtocol
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from audiotask.cli.common import CommandError, Interrupted, quiet_warnings, signal_name, stopped_by_signal

HELP = "tune class-wise thresholds and median filters on a development set"

#: metric names, as ``audiotask.inference.tuned_postprocessing.METRICS`` keys them (that module imports pandas)
METRIC_NAMES = ("intersection_f1", "event_f1")
DEFAULT_LENGTHS = "0,0.15,0.3,0.45,0.6,0.9"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model folder (save_pretrained): postprocessing.json (diarization.json "
                        "for a speaker diarization model) is written into it")
    data = parser.add_argument_group("data")
    data.add_argument("--database", action="append", default=[], metavar="YML",
                      help="pyannote.database configuration (repeatable; default: $PYANNOTE_DATABASE_CONFIG)")
    data.add_argument("--protocol", required=True, help="protocol name, e.g. MyDatabase.SpeakerDiarization.MyProtocol")
    data.add_argument("--subset", choices=("train", "development", "test"), default="development",
                      help="files tuned on (default: %(default)s)")
    tuning = parser.add_argument_group("tuning")
    tuning.add_argument("--metric", choices=METRIC_NAMES, default="intersection_f1",
                        help="F1 maximised: intersection-based (dtc = gtc = 0.7) or event-based (collars 200 ms, "
                             "offset 20 %%) (default: %(default)s)")
    tuning.add_argument("--median-filter-lengths", default=DEFAULT_LENGTHS, metavar="SECONDS,...",
                        help="median filter lengths tried, in seconds (default: %(default)s)")
    diarization = parser.add_argument_group("speaker diarization models (writes MODEL/diarization.json)")
    diarization.add_argument("--embedding", type=Path, metavar="EMBEDDING_MODEL",
                             help="the speaker embedding model the diarization pipeline clusters with (required, "
                             "unless MODEL/diarization.json names it)")
    inference = parser.add_argument_group("inference")
    inference.add_argument("--step", type=float, help="hop between chunks in seconds (default: 10%% of the chunk)")
    inference.add_argument("--batch-size", type=int, default=32, help="chunks per forward pass (default: %(default)s)")
    inference.add_argument("--device", help="e.g. cpu, cuda (default: cuda when available)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def parse_lengths(text: str) -> list[float]:
    """``"0,0.15,0.3"`` -> ``[0.0, 0.15, 0.3]``; ``CommandError`` unless non-negative seconds."""
    try:
        lengths = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--median-filter-lengths: expected comma-separated seconds, got {text!r}") from None
    if not lengths or not all(0.0 <= length < math.inf for length in lengths):
        raise CommandError(f"--median-filter-lengths: expected non-negative seconds, got {text!r}")
    return lengths


def development_files(protocol, subset: str, classes: list[str], name: str):
    """``(files, reference)``: the subset's protocol files and ``{uri: [(onset, offset, label)]}``.

    ``CommandError`` when the subset is empty or labels an event with a class the model lacks.
    """
    from audiotask.core.protocol_files import has_subset

    if not has_subset(protocol, subset):
        raise CommandError(f"protocol {name} has no {subset} files")
    files = list(getattr(protocol, subset)())
    reference = {}
    for file in files:
        annotation = file["annotation"]
        reference[file["uri"]] = [(segment.start, segment.end, label)
                                  for segment, _, label in annotation.itertracks(yield_label=True)]
        unknown = sorted({label for _, _, label in reference[file["uri"]]} - set(classes))
        if unknown:
            raise CommandError(f"{file['uri']} of {name} ({subset}) has events of {', '.join(unknown)}, "
                               f"which the model does not score (its classes: {', '.join(classes)})")
    return files, reference


def score_files(inference, files, *, progress: bool):
    """``(scores, durations, failed)`` by uri; a file that fails is named on stderr and left out."""
    from tqdm.auto import tqdm

    from audiotask.cli.apply_steps import FILE_ERRORS, file_problem
    from audiotask.core.protocol_files import entry

    scores, durations, failed = {}, {}, {}
    for file in tqdm(files, desc="Files", unit="file", disable=not progress):
        uri = file["uri"]
        try:
            duration = entry(file, "duration")
            durations[uri] = float(duration) if duration is not None else inference.model.audio.get_duration(file)
            scores[uri] = inference(file)
        except FILE_ERRORS as error:
            durations.pop(uri, None)
            failed[uri] = file_problem(Path(str(entry(file, "audio") or uri)), error)
            tqdm.write(f"audiotask tune: failed: {failed[uri]}", file=sys.stderr)
    return scores, durations, failed


def format_table(tuned, before: dict) -> str:
    """Per class: threshold, median filter length, F1 before and after (in %), then the macro mean."""
    width = max(len("macro mean"), *map(len, tuned.classes))
    header = f"{'class':<{width}}  {'threshold':>9}  {'median (s)':>10}  {'F1 before':>9}  {'F1 after':>8}"
    lines = [f"{tuned.metric} on the development files (%)", header, "-" * len(header)]

    def percent(value):
        return "-" if value is None else f"{100 * value:.2f}"

    for name, onset, length, after in zip(tuned.classes, tuned.onset, tuned.median_filter_length, tuned.scores):
        lines.append(f"{name:<{width}}  {onset:>9.4f}  {length:>10.2f}  {percent(before[name]):>9}  {percent(after):>8}")
    tuned_classes = [k for k, value in enumerate(tuned.scores) if value is not None]
    mean_before = sum(before[tuned.classes[k]] for k in tuned_classes) / len(tuned_classes)
    mean_after = sum(tuned.scores[k] for k in tuned_classes) / len(tuned_classes)
    lines.append(f"{'macro mean':<{width}}  {'':>9}  {'':>10}  {percent(mean_before):>9}  {percent(mean_after):>8}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        return tune(args)
    except BaseException as stop:  # Ctrl-C, SIGTERM: the tuned values are written whole or not
        if not stopped_by_signal(stop):
            raise
        from audiotask.inference.tuned_postprocessing import FILENAME

        written = getattr(args, "tuned_file", FILENAME)  # tune() says which, once it knows the model
        raise Interrupted(f"stopped by {signal_name()} before tuning ended: {args.model / written} was not "
                          "written (left as it was); run tune again") from stop


def tune(args: argparse.Namespace) -> int:
    """Score the subset, tune, write MODEL/postprocessing.json, print the table (see the module)."""
    import torch

    from audiotask.cli.apply_diarization import DIARIZATION, tune_diarization
    from audiotask.cli.apply_steps import load_model
    from audiotask.cli.train import load_protocol
    from audiotask.demo.pipeline import DemoConfig
    from audiotask.inference.diarization import TUNED_FILENAME
    from audiotask.inference.inference import Inference
    from audiotask.metrics.tuning import fscores, tune_postprocessing
    from audiotask.metrics.events import merge_reference

    quiet_warnings()
    lengths = parse_lengths(args.median_filter_lengths)
    if not args.model.is_dir():
        raise CommandError(f"{args.model}: not a model folder (save_pretrained); the tuned values are saved "
                           "into the model's folder")
    model = load_model(args.model)
    if model.specifications.task_name == DIARIZATION:
        args.tuned_file = TUNED_FILENAME
        return tune_diarization(args, model)
    if args.embedding is not None:
        raise CommandError(f"--embedding applies to speaker diarization models only, not to {args.model} (trained "
                           f"for {model.specifications.task_name or model.specifications.problem.value})")
    classes = list(model.specifications.classes or [])
    protocol = load_protocol(args.database, args.protocol)
    files, reference = development_files(protocol, args.subset, classes, args.protocol)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        inference = Inference(model, step=args.step, batch_size=args.batch_size, device=device)
    except ValueError as error:  # --step outside (0, chunk duration], --batch-size < 1
        raise CommandError(str(error)) from None
    scores, durations, failed = score_files(inference, files, progress=args.progress)
    if not scores:
        raise CommandError(f"every {args.subset} file of {args.protocol} failed: nothing to tune on")
    # merged here, once: tuning and the F1 before would each warn about the same events
    reference = merge_reference({uri: events for uri, events in reference.items() if uri in scores})
    common = dict(classes=classes, metric=args.metric)
    tuned = tune_postprocessing(scores, reference, durations, median_filter_lengths=lengths, **common)
    demo = DemoConfig()
    before = fscores(scores, reference, durations, onset=demo.onset,
                     median_filter_length=demo.median_filter_length, **common)
    path = tuned.save(args.model)
    print(format_table(tuned, before))
    print(f"post-processing: {path}")
    if failed:
        print(f"audiotask tune: {len(failed)} of {len(files)} files failed; tuned on the other {len(scores)}",
              file=sys.stderr)
        return 1
    return 0
