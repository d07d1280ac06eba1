"""``audiotask apply`` for speaker diarization models: who spoke when, in one RTTM file.

``audiotask apply DIARIZATION_MODEL FILES --embedding EMBEDDING_MODEL [--num-speakers N |
--min-speakers A --max-speakers B] --output DIR`` runs the diarization pipeline
(``inference/diarization.py``: the model's local segmentation, one embedding per local
speaker from EMBEDDING_MODEL, clustering across the file, turns) on each file and writes
DIR/diarization.rttm, every file's turns in one file (labels SPEAKER_00, SPEAKER_01... of
each file on its own; a file where nobody speaks has no line), as detection models write
their detections.rttm.

When the model folder holds diarization.json (written by ``audiotask tune``: the pipeline's
hyper-parameters tuned on a development set, and the embedding model they were tuned with),
its parameters are used (--min-duration-on / --min-duration-off given still replace theirs;
--num-speakers and the bounds still apply) and one line says so; its embedding model is the
default of --embedding. A malformed diarization.json is an error in one line naming it.

Its options, the dispatch of a speaker diarization model to :class:`DiarizationOutputs`
and the checks of the options all live here: ``cli/apply.py`` only calls them; so does
``audiotask tune`` of a speaker diarization model (:func:`tune_diarization`: ``cli/tune.py``
only calls it).

Only light modules at the top level (see ``cli/main.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from audiotask.cli.apply_outputs import Outputs
from audiotask.cli.common import CommandError, one_line
from audiotask.protocols.uris import uri_of

#: the registry name of the speaker diarization task: the kind of its models in apply
DIARIZATION = "speaker-diarization"
#: apply's options for its models only: dest -> (flag, kinds), as ``cli/apply.py``'s MODEL_OPTIONS
DIARIZATION_MODEL_OPTIONS = {
    "embedding": ("--embedding", (DIARIZATION,)),
    "num_speakers": ("--num-speakers", (DIARIZATION,)),
    "min_speakers": ("--min-speakers", (DIARIZATION,)),
    "max_speakers": ("--max-speakers", (DIARIZATION,)),
}
#: the file apply writes under --output
RTTM_NAME = "diarization.rttm"
#: the clustering thresholds `audiotask tune` tries (with the pipeline's default): the
#: Euclidean distances between the unit embeddings it cuts at lie in [0, 2]
TUNED_THRESHOLDS = tuple(round(0.1 * k, 2) for k in range(1, 16))


def add_diarization_arguments(parser: argparse.ArgumentParser) -> None:
    """apply's options for speaker diarization models."""
    group = parser.add_argument_group("speaker diarization models (writes OUTPUT/diarization.rttm)")
    group.add_argument("--embedding", type=Path, metavar="EMBEDDING_MODEL",
                       help="the speaker embedding model (trained with --task embedding, or imported) whose "
                       "embeddings of the local speakers are clustered across each file (required, unless "
                       "MODEL/diarization.json of `audiotask tune` names it)")
    group.add_argument("--num-speakers", type=int, metavar="N", help="the number of speakers of every file, when known")
    group.add_argument("--min-speakers", type=int, metavar="A", help="at least this many speakers in every file")
    group.add_argument("--max-speakers", type=int, metavar="B", help="at most this many speakers in every file")


def speaker_options(args: argparse.Namespace) -> dict[str, Optional[int]]:
    """``num_speakers``, ``min_speakers``, ``max_speakers`` of the command line, checked
    (``CommandError``): at least 1, --num-speakers alone, the bounds in order."""
    options = {name: getattr(args, name, None) for name in ("num_speakers", "min_speakers", "max_speakers")}
    for name, value in options.items():
        if value is not None and value < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    bounded = options["min_speakers"] is not None or options["max_speakers"] is not None
    if options["num_speakers"] is not None and bounded:
        raise CommandError("--num-speakers fixes the number of speakers: give it, or --min-speakers / --max-speakers, "
                           "not both")
    low, high = options["min_speakers"], options["max_speakers"]
    if low is not None and high is not None and low > high:
        raise CommandError(f"--min-speakers ({low}) must not exceed --max-speakers ({high})")
    return options


def embedding_inference(args: argparse.Namespace, device: str):
    """The ``Inference`` of the --embedding model (``CommandError`` in one line naming it when
    it is missing, cannot be loaded, or is no speaker embedding model)."""
    from audiotask.cli.apply_steps import load_model
    from audiotask.core.specifications import Problem
    from audiotask.inference.inference import Inference

    if args.embedding is None:
        raise CommandError(f"{args.model} is a speaker diarization model: give --embedding EMBEDDING_MODEL, the "
                           "speaker embedding model whose embeddings are clustered across each file")
    try:
        model = load_model(args.embedding)
    except ValueError as error:
        raise CommandError(one_line(str(error))) from None
    problem = model.specifications.problem
    if problem is not Problem.REPRESENTATION:
        raise CommandError(f"--embedding {args.embedding}: not a speaker embedding model (it was trained for "
                           f"{model.specifications.task_name or problem.value}); give one trained with --task "
                           "embedding, or imported")
    return Inference(model, batch_size=args.batch_size, device=device)


def tuned_path(args: argparse.Namespace) -> Path:
    """MODEL/diarization.json, where ``audiotask tune`` writes a diarization model's parameters."""
    from audiotask.inference.diarization import TUNED_FILENAME

    return args.model / TUNED_FILENAME


def in_main_process() -> bool:
    """False in apply's --workers processes: what apply says once, its own process says."""
    import multiprocessing

    return multiprocessing.parent_process() is None


def tuned_parameters(args: argparse.Namespace) -> Optional[dict]:
    """MODEL/diarization.json's content (``inference.diarization.load_tuned_parameters``), None
    without one or with --no-tuned; ``CommandError`` in one line naming it when malformed. Its embedding model
    becomes --embedding when none is given."""
    from audiotask.inference.diarization import load_tuned_parameters

    if getattr(args, "no_tuned", False):
        return None
    try:
        tuned = load_tuned_parameters(args.model)
    except ValueError as error:
        raise CommandError(one_line(str(error))) from None
    if tuned is not None and args.embedding is None and isinstance(tuned.get("embedding"), str):
        args.embedding = Path(tuned["embedding"])
    return tuned


def say_tuned(args: argparse.Namespace, tuned: Mapping[str, Any], threshold: float) -> None:
    """One line on stdout: the tuned parameters are used; one on stderr when --embedding is not
    the embedding model they were tuned with."""
    der = tuned.get("der")
    reached = f", DER {100 * der:.2f} % on {tuned.get('protocol', 'the development files')}" \
        if isinstance(der, (int, float)) else ""
    print(f"diarization: tuned parameters of {tuned_path(args)} (threshold {threshold:g}{reached})")
    embedding = tuned.get("embedding")
    if isinstance(embedding, str) and Path(embedding).resolve() != Path(args.embedding).resolve():
        print(f"audiotask apply: warning: {tuned_path(args)} was tuned with the embedding model {embedding}, "
              f"not --embedding {args.embedding}", file=sys.stderr)


class DiarizationOutputs(Outputs):
    """diarization.rttm: the speaker turns of every file (one ``Annotation`` each)."""

    def __init__(self, args: argparse.Namespace, inference, postprocessing: Mapping[str, Any]):
        from audiotask.inference.diarization import DiarizationPipeline

        super().__init__(args, inference, postprocessing)
        self.speakers = speaker_options(args)
        tuned = tuned_parameters(args)
        embedding = embedding_inference(args, str(inference.device))
        pipeline = DiarizationPipeline(inference, embedding)
        if tuned is not None:
            try:
                pipeline = pipeline.with_parameters(**tuned["parameters"])
            except ValueError as error:
                raise CommandError(f"{tuned_path(args)}: {one_line(str(error))}") from None
            if in_main_process():
                say_tuned(args, tuned, pipeline.threshold)
        # only the durations given on the command line replace the pipeline's (or the tuned) ones
        durations = {name: postprocessing[name] for name in ("min_duration_on", "min_duration_off")
                     if getattr(args, name, None) is not None}
        self.pipeline = pipeline.with_parameters(**durations)

    def process(self, path: Path, audio) -> Any:
        """The ``Annotation`` of one file, its uri that of the file's name."""
        annotation = self.pipeline(audio.file, **self.speakers)
        annotation.uri = uri_of(path.name)
        return annotation

    def write(self, output: Path, results: Mapping[str, Any]) -> list[str]:
        from audiotask.inference.formats import write_rttm

        path = output / RTTM_NAME
        write_rttm(path, list(results.values()))
        turns = sum(len(annotation) for annotation in results.values())
        speakers = sum(len(annotation.labels()) for annotation in results.values())
        silent = sum(not annotation for annotation in results.values())
        return [f"{turns} speaker turns of {speakers} speakers in {len(results)} files"
                + (f" ({silent} without speech)" if silent else ""), f"diarization: {path}"]


# ---- audiotask tune of a speaker diarization model -------------------------------------------------
def readable_files(pipeline, files: list) -> tuple[list, dict[str, str]]:
    """``(files, failed)``: the protocol files whose audio decodes to finite samples, and the one
    line saying why of each other, by uri (each named on stderr as it fails)."""
    from audiotask.cli.apply_steps import FILE_ERRORS, file_problem
    from audiotask.core.audio import audio_name, check_samples
    from audiotask.core.protocol_files import entry

    readable, failed = [], {}
    for file in files:
        try:
            check_samples(pipeline.segmentation.model.audio(file)[0], audio_name(file))
        except FILE_ERRORS as error:
            failed[file["uri"]] = file_problem(Path(str(entry(file, "audio") or file["uri"])), error)
            print(f"audiotask tune: failed: {failed[file['uri']]}", file=sys.stderr)
            continue
        readable.append(file)
    return readable, failed


def format_ders(tuning, before: float) -> list[str]:
    """One line per threshold tried: its DER (in %), the one used before and the chosen one marked."""
    lines = [f"{'threshold':>9}  {'DER (%)':>7}"]
    for threshold, der in sorted(tuning.ders.items()):
        marks = [name for name, value in (("before", before), ("chosen", tuning.threshold)) if value == threshold]
        lines.append(f"{threshold:>9.2f}  {100 * der:>7.2f}" + (f"  ({', '.join(marks)})" if marks else ""))
    return lines


def tune_diarization(args: argparse.Namespace, model) -> int:
    """``audiotask tune`` of a speaker diarization model: the clustering threshold of least DER
    (``inference.diarization.tune_threshold``: collar 0, overlap scored, each file's "annotated"
    as UEM) on the --subset files of --protocol, among :data:`TUNED_THRESHOLDS` and the one
    used before, written with the other parameters to MODEL/diarization.json.

    The parameters start from those of MODEL/diarization.json when there is one (a re-tune
    keeps what was set there by hand; its embedding model is the default of --embedding),
    else from the pipeline's defaults."""
    import torch

    from audiotask.cli.train import load_protocol
    from audiotask.core.protocol_files import has_subset
    from audiotask.inference.diarization import DiarizationPipeline, save_tuned_parameters, tune_threshold
    from audiotask.inference.inference import Inference

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        segmentation = Inference(model, step=args.step, batch_size=args.batch_size, device=device)
    except ValueError as error:  # --step outside (0, chunk duration], --batch-size < 1
        raise CommandError(str(error)) from None
    previous = tuned_parameters(args)
    pipeline = DiarizationPipeline(segmentation, embedding_inference(args, device))
    if previous is not None:
        try:
            pipeline = pipeline.with_parameters(**previous["parameters"])
        except ValueError as error:
            raise CommandError(f"{tuned_path(args)}: {one_line(str(error))} (delete it to tune from the defaults)") \
                from None
        print(f"starting from the parameters of {tuned_path(args)}")
    protocol = load_protocol(args.database, args.protocol)
    if not has_subset(protocol, args.subset):
        raise CommandError(f"protocol {args.protocol} has no {args.subset} files")
    files = list(getattr(protocol, args.subset)())
    readable, failed = readable_files(pipeline, files)
    if not readable:
        raise CommandError(f"every {args.subset} file of {args.protocol} failed: nothing to tune on")
    before = pipeline.threshold
    tuning = tune_threshold(pipeline, readable, sorted({*TUNED_THRESHOLDS, before}))
    tuned = pipeline.with_parameters(threshold=tuning.threshold)
    path = save_tuned_parameters(
        args.model, tuned.parameters(), embedding=str(args.embedding), der=tuning.der, protocol=args.protocol,
        subset=args.subset, files=len(readable), ders={f"{threshold:g}": der for threshold, der in tuning.ders.items()},
    )
    print(f"DER on the {len(readable)} {args.subset} files of {args.protocol} (collar 0, overlap scored)")
    print("\n".join(format_ders(tuning, before)))
    print(f"chosen threshold: {tuning.threshold:g} (DER {100 * tuning.der:.2f} %; before: {before:g}, "
          f"{100 * tuning.ders[before]:.2f} %)")
    print(f"diarization parameters: {path}")
    if failed:
        print(f"audiotask tune: {len(failed)} of {len(files)} files failed; tuned on the other {len(readable)}",
              file=sys.stderr)
        return 1
    return 0
