"""``audiotask apply`` for speaker diarization models: who spoke when, in one RTTM file.

``audiotask apply DIARIZATION_MODEL FILES --embedding EMBEDDING_MODEL [--num-speakers N |
--min-speakers A --max-speakers B] --output DIR`` runs the diarization pipeline
(``inference/diarization.py``: the model's local segmentation, one embedding per local
speaker from EMBEDDING_MODEL, clustering across the file, turns) on each file and writes
DIR/diarization.rttm, every file's turns in one file (labels SPEAKER_00, SPEAKER_01... of
each file on its own; a file where nobody speaks has no line), as detection models write
their detections.rttm.

Its options, the dispatch of a speaker diarization model to :class:`DiarizationOutputs`
and the checks of the options all live here: ``cli/apply.py`` only calls them.

Only light modules at the top level (see ``cli/main.py``).
"""

from __future__ import annotations

import argparse
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


def add_diarization_arguments(parser: argparse.ArgumentParser) -> None:
    """apply's options for speaker diarization models."""
    group = parser.add_argument_group("speaker diarization models (writes OUTPUT/diarization.rttm)")
    group.add_argument("--embedding", type=Path, metavar="EMBEDDING_MODEL",
                       help="required: the speaker embedding model (trained with --task embedding, or imported) "
                       "whose embeddings of the local speakers are clustered across each file")
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


class DiarizationOutputs(Outputs):
    """diarization.rttm: the speaker turns of every file (one ``Annotation`` each)."""

    def __init__(self, args: argparse.Namespace, inference, postprocessing: Mapping[str, Any]):
        from audiotask.inference.diarization import DiarizationPipeline

        super().__init__(args, inference, postprocessing)
        self.speakers = speaker_options(args)
        embedding = embedding_inference(args, str(inference.device))
        # only the durations given on the command line replace the pipeline's own
        durations = {name: postprocessing[name] for name in ("min_duration_on", "min_duration_off")
                     if getattr(args, name, None) is not None}
        self.pipeline = DiarizationPipeline(inference, embedding, **durations)

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
