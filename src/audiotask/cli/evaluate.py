"""Evaluate a model's outputs against a reference.

Sound event detection (--task sed, the default): REFERENCE and PREDICTIONS are DCASE TSV
files (filename, onset, offset, event_label); event-based, segment-based and
intersection-based F1 are computed from the detections, PSDS1 and PSDS2 from the frame
scores when --scores gives the folder `audiotask apply` wrote them to. File durations come
from --durations (filename<TAB>duration) or from the audio files under --audio; without
them, only event-based and intersection-based F1 are computed (over the files of
REFERENCE), since segment-based F1 and PSDS need each file's duration. A predicted class
that REFERENCE has no event of (a misspelt label, a class the test files lack) is an error
naming it and the file, as scores would otherwise be inflated: sed_scores_eval evaluates the
reference's classes only, so that its detections would count neither as true nor as false
positives. --unknown-classes false-positives counts each of its detections as a false
positive (its class has precision and F1 0 and enters the macro and micro averages; in PSDS,
a class of which nothing is found, true positive rate 0); --unknown-classes ignore leaves
it out (a warning names it). A score file that cannot be read is named on stderr, its file
left out of every metric, the others scored, and the exit status is 1.

Voice activity detection (--task vad): REFERENCE and PREDICTIONS are RTTM (or DCASE TSV)
files; the detection error rate is computed (no collar) over the regions of --uem, or
over whole files with --durations.

Overlapped speech detection (--task osd): REFERENCE holds speaker turns (RTTM); the regions
where two or more distinct speakers talk are the reference (overlapping turns of one
speaker are not overlap). PREDICTIONS are the detected overlap events (RTTM or DCASE TSV,
as `audiotask apply` writes them), scored with the detection error rate as for vad.

Speaker diarization (--task diarization): REFERENCE and PREDICTIONS are speaker turns (RTTM,
read strictly: a bad line is an error naming it). DER with its parts (false alarm, missed
detection, confusion, in % of the reference speech and in seconds) and JER, per file and in
total, as pyannote.metrics computes them (TOTAL DER: the seconds of every file summed before
dividing; TOTAL JER: the mean over every reference speaker of every file). With --uem, the
files of the UEM are evaluated inside its regions: a file of the UEM without reference turn
has no speech (its predicted turns are false alarms), and turns of files outside the UEM are
left out, with a warning naming them. Without --uem, the files of REFERENCE are evaluated,
each over the union of its reference and predicted turns' extents, and predictions for a
file without reference turns are an error naming it (RTTM cannot list a file without speech:
give a UEM that does). A file of REFERENCE without predicted turns has all its speech missed.
--collar SECONDS leaves out of the evaluation that much time (full width, as pyannote.metrics'
collar; md-eval's -c 0.25 is --collar 0.5) centred on each reference boundary (default 0);
--skip-overlap leaves out the regions where reference speakers overlap (default: scored).

Audio classification (--task classification): REFERENCE is a clip CSV (a header naming a
filename and a label column, e.g. filename,label,fold) or a DCASE weak-label TSV, one label
per file; PREDICTIONS is the predictions.csv of `audiotask apply`. Accuracy, macro F1,
per-class precision, recall and F1, and the confusion matrix (--plot: as a picture).

Audio tagging (--task tagging): REFERENCE is a DCASE weak-label TSV (filename, event_labels)
or a clip CSV whose labels column holds comma-separated labels; PREDICTIONS is the
scores.csv of `audiotask apply`. Mean average precision (mAP) and each class's AP.

With --fold K, only the files of fold K of the clip CSV are evaluated (the validation fold of
`audiotask train --fold K`). For both, every file of REFERENCE needs a prediction (one missing is an error naming it), a
reference label must be one of the predictions' classes (an error otherwise), and a
prediction for a file absent from REFERENCE is left out, with a warning naming it.

Speaker verification (--task verification, or embedding): the only positional argument is
EMBEDDINGS, the embeddings file of `audiotask apply` (.safetensors, or .npy beside its .txt
of keys); --trials lists one trial per line (1 or 0, enrolment, test; VoxCeleb's format),
scored by the cosine similarity of the embeddings: equal error rate and minDCF. A trial
naming a recording without embedding is an error naming its line.

examples:
  audiotask evaluate data/metadata/test.tsv predictions/detections.tsv \\
      --durations data/metadata/test_durations.tsv --scores predictions/scores
  audiotask evaluate --task classification clips/labels.csv predictions/predictions.csv --plot confusion.png
  audiotask evaluate --task verification --trials trials.txt embeddings/embeddings.safetensors
  audiotask evaluate --task diarization debug.development.rttm diarization/detections.rttm \\
      --uem debug.development.uem
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter
from pathlib import Path

from audiotask.cli.common import CommandError, audio_durations, read_durations
from audiotask.protocols.uris import uri_of
from audiotask.tasks import registry

HELP = "evaluate a model's outputs against a reference"


#: evaluation name -> the registered task whose outputs it evaluates (besides the tasks' own names)
EVALUATION_NAMES = {"verification": "speaker-embedding"}
#: options that only some evaluations take (each registry entry's ``evaluation_options``
#: names those of its task): dest -> flag; given to another evaluation, they are refused
#: (an option that does nothing would mislead)
EVALUATION_OPTIONS = {"durations": "--durations", "audio": "--audio", "scores": "--scores", "uem": "--uem",
                      "plot": "--plot", "fold": "--fold", "trials": "--trials", "unknown_classes": "--unknown-classes"}
#: options an evaluation function takes whichever task it evaluates (besides the registry
#: entries' ``evaluation_options``): the sound event evaluation's
EVALUATION_FUNCTION_OPTIONS = {"audiotask.cli.evaluate:evaluate_sed": ("unknown_classes",)}
#: --unknown-classes: what becomes of a predicted class the reference has no event of
#: (``metrics.events.UNKNOWN_CLASSES``, not imported: it imports pandas)
UNKNOWN_CLASSES = ("error", "false-positives", "ignore")

#: speaker diarization's own options (refused for the other evaluations)
EVALUATION_OPTIONS.update({"collar": "--collar", "skip_overlap": "--skip-overlap"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = ("%(prog)s [--task TASK] [options] REFERENCE PREDICTIONS\n"
                    "       %(prog)s --task verification --trials TRIALS [options] EMBEDDINGS")
    parser.add_argument("paths", nargs="+", type=Path, metavar="FILE",
                        help="REFERENCE PREDICTIONS: the reference (DCASE TSV; RTTM for --task vad, speaker turns for "
                        "--task osd and diarization; clip CSV or DCASE weak TSV for classification and tagging) and the "
                        "outputs of "
                        "`audiotask apply` (detections, predictions.csv, scores.csv); EMBEDDINGS alone for --task "
                        "verification")
    parser.add_argument("--task", choices=evaluated_task_names(), default="sed", metavar="TASK",
                        help=(registry.describe(entry for entry in registry.TASKS if entry.evaluation)
                              + "; verification: speaker verification with the embeddings of a speaker-embedding "
                              "model").replace("%", "%%")
                        + " (default: %(default)s)")
    parser.add_argument("--durations", type=Path, metavar="TSV", help="file durations: filename<TAB>seconds")
    parser.add_argument("--audio", type=Path, metavar="DIR",
                        help="sed: folder of the reference audio (durations read from it)")
    parser.add_argument("--scores", type=Path, metavar="DIR", help="sed: frame scores from `audiotask apply` (PSDS)")
    parser.add_argument("--uem", type=Path, metavar="UEM", help="vad, osd, diarization: evaluated regions of each file "
                        "(UEM; diarization: its files are those evaluated)")
    parser.add_argument("--collar", type=float, metavar="SECONDS",
                        help="diarization: time left out of the evaluation around each reference boundary, full width "
                        "(pyannote.metrics' collar; md-eval's -c 0.25 is 0.5) (default: 0)")
    parser.add_argument("--skip-overlap", action="store_true", default=None,
                        help="diarization: leave the regions where reference speakers overlap out of the evaluation "
                        "(default: scored)")
    parser.add_argument("--plot", type=Path, metavar="PNG",
                        help="classification: draw the confusion matrix into this file")
    parser.add_argument("--fold", metavar="K", help="classification, tagging: evaluate the files of fold K of the "
                        "reference clip CSV only (the fold `audiotask train --fold K` validated on)")
    parser.add_argument("--trials", type=Path, metavar="TRIALS",
                        help="verification: trial list, one 'KEY enrolment test' per line (KEY 1/0 or "
                        "target/nontarget; names as the embeddings' keys, with or without audio extension)")
    parser.add_argument("--unknown-classes", choices=UNKNOWN_CLASSES, metavar="WHAT",
                        help="sed: what becomes of a predicted class that REFERENCE has no event of: error, "
                        "false-positives (each of its detections is one; PSDS: a class of which nothing is found) or "
                        "ignore (left out of every metric, which may inflate them) (default: error)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def read_annotations(path: Path) -> dict:
    """``{uri: pyannote.core.Annotation}`` from an RTTM (read strictly: a bad line is an error
    naming it, see ``protocols.rttm``) or DCASE TSV file."""
    from audiotask.protocols.dcase import read_dcase_tsv
    from audiotask.protocols.rttm import read_rttm

    if not path.is_file():
        raise CommandError(f"no such file: {path}")
    if path.suffix.lower() != ".rttm":
        return read_dcase_tsv(path)
    return read_rttm(path)


def read_uems(path: Path) -> dict:
    """``{uri: pyannote.core.Timeline}`` of the UEM file ``path`` (``CommandError`` if none)."""
    from pyannote.database.util import load_uem

    from audiotask.io import naming_bad_text

    if not path.is_file():
        raise CommandError(f"no such file: {path}")
    with naming_bad_text(path):
        return load_uem(str(path))


def overlap_annotations(annotations: dict) -> dict:
    """``{uri: Annotation}`` of the regions where two or more distinct labels are active.

    Each region is labelled "overlap". Overlapping turns of one speaker are not overlap
    (``Annotation.get_overlap`` compares labels); a file without overlap keeps an empty
    annotation, so that false alarms in it still count.
    """
    from pyannote.core import Annotation

    overlaps = {}
    for uri, annotation in annotations.items():
        overlap = Annotation(uri=uri)
        for segment in annotation.get_overlap():
            overlap[segment] = "overlap"
        overlaps[uri] = overlap
    return overlaps


def evaluate_vad(args: argparse.Namespace, *, overlap: bool = False) -> dict:
    """Detection error rate of ``args.predictions`` against ``args.reference``.

    With ``overlap`` (``--task osd``), against the overlap of the reference's speakers.
    """
    from pyannote.core import Segment, Timeline

    from audiotask.metrics.voice_activity import detection_error_rate

    references, hypotheses = read_annotations(args.reference), read_annotations(args.predictions)
    if overlap:
        references = overlap_annotations(references)
    uems = None
    if args.uem is not None:
        uems = read_uems(args.uem)
    elif args.durations is not None:
        # durations by uri: RTTM files name files by uri, not by filename
        durations = {uri_of(name): seconds for name, seconds in read_durations(args.durations).items()}
        uems = {uri: Timeline([Segment(0.0, durations[uri])], uri=uri) for uri in references if uri in durations}
    return detection_error_rate(references, hypotheses, uems=uems)


#: said on stderr when sed is evaluated without durations
NO_DURATIONS_NOTE = "note: segment-based F1 and PSDS need file durations (--durations or --audio); not computed"


def sed_durations(args: argparse.Namespace, filenames) -> dict | None:
    """File durations from --durations, or from the audio under --audio; None without either."""
    if args.durations is not None:
        if not args.durations.is_file():
            raise CommandError(f"no such file: {args.durations}")
        return read_durations(args.durations)
    if args.audio is not None:
        return audio_durations(args.audio, filenames)
    return None


def evaluate_without_durations(ground_truth: dict, detections: dict, *, unknown_classes: str = "ignore") -> dict:
    """Event-based and intersection-based F1, the metrics that need no file durations.

    Neither counts time: collars and overlap ratios compare events with events, and false
    positives are counted, not normalised by duration. The files evaluated are those of the
    ground truth. Same form as ``evaluate_sound_events``' results; ``unknown_classes`` as there.
    """
    from audiotask.metrics.events import merge_reference, read_ground_truth
    from audiotask.metrics.sound_events import event_based_f1, intersection_based_f1

    # merged once, as evaluate_sound_events does: the metrics then do not warn twice
    ground_truth = merge_reference(read_ground_truth(ground_truth))
    results: dict = {}
    details: dict = {}
    for key, metric in (("event_f1", event_based_f1), ("intersection_f1", intersection_based_f1)):
        details[key] = metric(detections, ground_truth, unknown_classes=unknown_classes)
        results[key] = details[key]["macro"]["f1"]
        results[f"{key}_micro"] = details[key]["micro"]["f1"]
    results["details"] = details
    return results


def evaluate_sed(args: argparse.Namespace) -> dict:
    """Event / segment / intersection F1 of the detections, PSDS of the scores when given.

    Without durations, only event-based and intersection-based F1 (a note on stderr says so).
    A score file that cannot be read is named on stderr and its file left out of every
    metric; the results then list it under "failed".
    """
    from audiotask.inference.formats import read_events_tsv, read_score_files
    from audiotask.metrics.sound_events import evaluate_sound_events

    for path in (args.reference, args.predictions):
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
    if args.scores is not None and args.durations is None and args.audio is None:
        raise CommandError("--scores (PSDS) needs file durations: give --durations FILE or --audio DIR")
    ground_truth = read_events_tsv(args.reference)
    detections = read_events_tsv(args.predictions)
    scores, failed = None, {}
    if args.scores is not None:
        if not args.scores.is_dir():
            raise CommandError(f"no such folder: {args.scores}")
        scores, failed = read_score_files(args.scores)
        for problem in failed.values():
            print(f"audiotask evaluate: failed: {problem}", file=sys.stderr)
    left_out = {path.name[: -len(".tsv")] for path in failed if path.name.endswith(".tsv")}
    ground_truth, detections = without_files(ground_truth, left_out), without_files(detections, left_out)
    unknown_classes = args.unknown_classes or "error"
    check_unknown_classes(args, unknown_classes, ground_truth, detections, scores)
    durations = sed_durations(args, ground_truth)
    if durations is not None:
        durations = without_files(durations, left_out)
    if failed and not ground_truth:
        raise CommandError(f"no file left to evaluate: the score files of every file of {args.reference} failed")
    with warnings.catch_warnings():
        # the classes left out were named above, with the file that has them
        warnings.filterwarnings("ignore", message=LEFT_OUT_CLASSES)
        if durations is None:
            print(NO_DURATIONS_NOTE, file=sys.stderr)
            results = evaluate_without_durations(ground_truth, detections, unknown_classes=unknown_classes)
        else:
            results = evaluate_sound_events(ground_truth, durations, detections=detections, scores=scores,
                                            unknown_classes=unknown_classes)
    if failed:
        results["failed"] = {str(path): problem for path, problem in failed.items()}
        print(f"audiotask evaluate: {len(failed)} score file(s) failed: the results leave out "
              f"{len(left_out)} file(s) of the evaluation", file=sys.stderr)
    return results


#: the start of the warning of ``audiotask.metrics.events.evaluated_classes``
LEFT_OUT_CLASSES = "classes without ground truth events are not evaluated"


def without_files(mapping: dict, uris: set) -> dict:
    """``mapping`` (keyed by filename or uri) less the files of ``uris``."""
    return {name: value for name, value in mapping.items() if uri_of(name) not in uris}


def check_unknown_classes(args: argparse.Namespace, unknown_classes: str, ground_truth: dict, detections: dict,
                          scores) -> None:
    """The predicted labels and scored classes that ``args.reference`` has no event of: a
    ``CommandError`` naming them and the file (``--unknown-classes error``), a warning
    (``ignore``: they are left out) or a note (``false-positives``: counted as such) on stderr.

    sed_scores_eval evaluates classes with reference events only (a class without any has no
    recall): left out, the detections of such a label count nowhere, neither as true nor as
    false positives, and a misspelt label or a class the test files lack would raise the scores.
    """
    used = {label for events in ground_truth.values() for _, _, label in events}
    counts = Counter(label for events in detections.values() for _, _, label in events if label not in used)
    files: dict = {}
    for name, events in detections.items():
        for label in sorted({label for _, _, label in events} - used):
            files.setdefault(label, []).append(name)
    classes = sorted({name for frame in (scores or {}).values() for name in frame.columns[2:]} - used)
    # (what was found, what --unknown-classes false-positives makes of it)
    found = []
    if counts:
        labels = ", ".join(f"{label} ({count} event{'s' * (count > 1)}, e.g. in {files[label][0]})"
                           for label, count in sorted(counts.items()))
        found.append((f"{args.predictions} has label(s) that {args.reference} has no event of: {labels}",
                      "each of their detections counts as a false positive"))
    if classes:
        found.append((f"the scores in {args.scores} have class(es) that {args.reference} has no event of: "
                      f"{', '.join(classes)}", "PSDS counts each as a class of which nothing is found"))
    if not found:
        return
    if unknown_classes == "error":
        raise CommandError("; ".join(line for line, _ in found) + ": give --unknown-classes false-positives to count "
                           "their detections as false positives, or --unknown-classes ignore to leave them out of "
                           "every metric")
    for line, counted in found:
        if unknown_classes == "ignore":
            print(f"audiotask evaluate: warning: {line}, not evaluated (neither true nor false positives: "
                  "--unknown-classes ignore)", file=sys.stderr)
        else:
            print(f"audiotask evaluate: note: {line}: {counted} (--unknown-classes false-positives)", file=sys.stderr)


def evaluate_osd(args: argparse.Namespace) -> dict:
    """Detection error rate of the detected overlap against the overlap of the reference's speakers."""
    return {**evaluate_vad(args, overlap=True), "reference_label": "overlap"}


def evaluate_diarization(args: argparse.Namespace) -> dict:
    """DER (false alarm, missed detection, confusion) and JER of the predicted speaker turns
    against the reference's, per file and in total (``metrics.diarization``)."""
    from audiotask.metrics.diarization import diarization_error_rates

    collar = 0.0 if args.collar is None else args.collar
    if not collar >= 0.0:  # NaN too
        raise CommandError(f"--collar takes seconds, 0 or more: not {args.collar}")
    references, hypotheses = read_annotations(args.reference), read_annotations(args.predictions)
    uems = None if args.uem is None else read_uems(args.uem)
    return diarization_error_rates(references, hypotheses, uems, collar=collar, skip_overlap=bool(args.skip_overlap))


def evaluated_task_names() -> list[str]:
    """Names and aliases of the registered tasks that have an evaluation here, then the
    evaluations' own names (``verification``)."""
    return registered_evaluation_names() + list(EVALUATION_NAMES)


def registered_evaluation_names() -> list[str]:
    """Names and aliases of the registered tasks that have an evaluation."""
    return [name for name in registry.names() if registry.resolve(name).evaluation]


def evaluated_task(name: str) -> registry.TaskEntry:
    """The registry entry of the task evaluated by ``--task name``."""
    return registry.resolve(EVALUATION_NAMES.get(name, name))


def take_positionals(args: argparse.Namespace, task: registry.TaskEntry) -> None:
    """Name the positional files as ``task``'s evaluation reads them (``args.reference`` and
    ``args.predictions``, or ``args.embeddings``); ``CommandError`` for another count."""
    names = task.evaluation_inputs
    if len(args.paths) != len(names):
        expected = " ".join(name.upper() for name in names)
        raise CommandError(f"--task {args.task} takes {len(names)} file(s), {expected}; got {len(args.paths)}: "
                           + " ".join(map(str, args.paths)))
    for name, path in zip(names, args.paths):
        setattr(args, name, path)


def refuse_other_options(args: argparse.Namespace, task: registry.TaskEntry) -> None:
    """``CommandError`` naming the options of :data:`EVALUATION_OPTIONS` given that ``task``'s
    evaluation does not take."""
    taken = (*task.evaluation_options, *EVALUATION_FUNCTION_OPTIONS.get(task.evaluation, ()))
    refused = [flag for dest, flag in EVALUATION_OPTIONS.items()
               if getattr(args, dest, None) is not None and dest not in taken]
    if refused:
        raise CommandError(f"{', '.join(refused)} do{'es' * (len(refused) == 1)} not apply to --task {args.task}")


def plain(value):
    """``json.dumps``' fallback: NumPy arrays and numbers as lists and Python numbers."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def run(args: argparse.Namespace) -> int:
    task = evaluated_task(args.task)
    take_positionals(args, task)
    refuse_other_options(args, task)
    # a ValueError (the metrics name the file or class at fault) is said in one line by cli/main.py
    results = registry.load_target(task.evaluation)(args)
    if args.json:
        print(json.dumps(results, indent=2, default=plain))
    elif task.evaluation_table:
        print(registry.load_target(task.evaluation_table)(results))
    else:
        from audiotask.metrics.sound_events import format_table

        print(format_table(results))
    return 1 if results.get("failed") else 0
