"""What ``audiotask apply`` computes for each file, and writes, for each kind of model.

The kind is the task a model was trained for (its ``specifications.extra["task"]``), whose
registry entry names its class here (``TaskEntry.apply_outputs``), each with ``read(path)`` (what the model needs of a file, decoded: run
in apply's read-ahead thread, so it touches nothing the model uses), ``process(path, audio)``
(one file's result from what ``read`` gave; raises one of ``apply_steps.FILE_ERRORS`` for a file
it cannot process) and ``write(output, results)`` (every file's result at once; returns the
lines that say what was written). Models of the detection tasks carry no task name: they
get :class:`EventOutputs`, apply's original outputs.

Only light modules at the top level (see ``cli/main.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

from audiotask.cli.common import CommandError
from audiotask.protocols.uris import uri_of

if TYPE_CHECKING:
    from audiotask.inference.reading import DecodedFile


class Outputs:
    """Base of the outputs of one kind of model.

    Parameters
    ----------
    args : apply's parsed arguments
    inference : audiotask.inference.inference.Inference
        The model, ready to slide over files.
    postprocessing : keywords of ``scores_to_events`` (:class:`EventOutputs` only)
    """

    def __init__(self, args: argparse.Namespace, inference, postprocessing: Mapping[str, Any]):
        self.args = args
        self.inference = inference
        self.postprocessing = dict(postprocessing)

    @classmethod
    def default_step(cls, specifications) -> Optional[float]:
        """Hop between windows (seconds) without --step; None: ``Inference``'s default."""
        return None

    def read(self, path: Path) -> Optional[DecodedFile]:
        """``path`` decoded at the model's rate; None when ``process`` needs nothing of it.

        ``AudioError`` naming the file when it cannot be decoded, is empty or not finite.
        """
        from audiotask.inference.reading import decode_file

        return decode_file(path, self.inference.sample_rate)

    def process(self, path: Path, audio: Optional[DecodedFile]) -> Any:
        """The result of ``path``, of which ``audio`` is what :meth:`read` gave."""
        raise NotImplementedError

    def seconds_read(self, path: Path) -> float:
        """Seconds of audio :meth:`process` read of ``path`` when :meth:`read` gave None."""
        return 0.0

    def write(self, output: Path, results: Mapping[str, Any]) -> list[str]:
        """Write ``{filename: process's result}`` under ``output``; the lines naming what was written."""
        raise NotImplementedError


class EventOutputs(Outputs):
    """Frame scores (sed_scores_eval TSV, one per file) and detected events (DCASE TSV or RTTM)."""

    def read(self, path: Path) -> Optional[DecodedFile]:
        # --stream reads the file block by block as it scores it
        return None if self.args.stream else super().read(path)

    def seconds_read(self, path: Path) -> float:
        # --stream: the whole file, from its header
        return self.inference.model.audio.get_duration(str(path))

    def process(self, path: Path, audio: Optional[DecodedFile]):
        """``(scores DataFrame, events)`` of one file (see ``apply_steps.apply_to_file``)."""
        from audiotask.cli.apply_steps import apply_to_file, apply_to_stream

        if self.args.stream:
            return apply_to_stream(self.inference, path, self.postprocessing, self.args.block)
        return apply_to_file(self.inference, audio, self.postprocessing)

    def write(self, output: Path, results: Mapping[str, Any]) -> list[str]:
        from audiotask.inference.formats import write_events_tsv, write_rttm, write_scores
        from audiotask.inference.postprocessing import events_to_annotation

        scores = {name: result[0] for name, result in results.items()}
        events = {name: result[1] for name, result in results.items()}
        write_scores(output / "scores", scores)
        if self.args.format == "rttm":
            detections = output / "detections.rttm"
            write_rttm(detections, [events_to_annotation(file_events, uri_of(name))
                                    for name, file_events in events.items()])
        else:
            detections = output / "detections.tsv"
            write_events_tsv(detections, events)
        streamed = [f"streamed in blocks of {self.args.block:g} s: each score out at most "
                    f"{self.inference.stream().latency:.2f} s after its frame ends (plus one block)"] * bool(self.args.stream)
        return streamed + [f"{sum(map(len, events.values()))} events in {len(scores)} files",
                f"scores:     {output / 'scores'}", f"detections: {detections}"]


class ClassificationOutputs(Outputs):
    """predictions.csv: filename, label (the class of highest score), one score column per class."""

    def process(self, path: Path, audio: DecodedFile):
        from audiotask.inference.clip_scores import clip_scores

        return clip_scores(self.inference, audio.file)

    def write(self, output: Path, results: Mapping[str, Any]) -> list[str]:
        from audiotask.inference.formats import write_clip_scores

        classes = self.inference.specifications.classes
        labels = {name: classes[int(scores.argmax())] for name, scores in results.items()}
        path = output / "predictions.csv"
        write_clip_scores(path, results, classes, labels=labels)
        return [f"{len(results)} files classified", f"predictions: {path}"]


class TaggingOutputs(Outputs):
    """scores.csv (filename, one score column per class) and tags.tsv (DCASE weak labels: the
    classes scored at or above --onset)."""

    def process(self, path: Path, audio: DecodedFile):
        from audiotask.inference.clip_scores import clip_scores

        return clip_scores(self.inference, audio.file)

    def write(self, output: Path, results: Mapping[str, Any]) -> list[str]:
        from audiotask.inference.formats import write_clip_scores, write_tags_tsv

        classes = self.inference.specifications.classes
        onset = self.postprocessing["onset"]
        tags = {name: [label for label, score in zip(classes, scores) if score >= onset]
                for name, scores in results.items()}
        write_clip_scores(output / "scores.csv", results, classes)
        write_tags_tsv(output / "tags.tsv", tags)
        return [f"{sum(map(len, tags.values()))} tags in {len(results)} files (scores >= {onset})",
                f"scores: {output / 'scores.csv'}", f"tags:   {output / 'tags.tsv'}"]


class SNROutputs(Outputs):
    """snr/URI.tsv (onset, offset, snr in dB, one row per frame, speech or not) and snr.csv
    (filename, the file's mean SNR in dB, its frames weighted by their duration)."""

    def process(self, path: Path, audio: DecodedFile):
        from audiotask.inference.formats import scores_to_dataframe

        return scores_to_dataframe(self.inference(audio.file), end=audio.duration)

    def write(self, output: Path, results: Mapping[str, Any]) -> list[str]:
        import numpy as np

        from audiotask.inference.formats import write_clip_scores, write_scores

        column = results[next(iter(results))].columns[2]  # the model's one output ("snr")
        means = {name: [np.average(frames[column], weights=frames["offset"] - frames["onset"])]
                 for name, frames in results.items()}
        write_scores(output / "snr", results)
        write_clip_scores(output / "snr.csv", means, [column], decimals=3)
        return [f"SNR of {len(results)} files, frame by frame",
                f"frames:  {output / 'snr'}", f"summary: {output / 'snr.csv'}"]


class EmbeddingOutputs(Outputs):
    """One embedding per file (key: its uri), or per segment of --segments (key:
    ``uri/start-end``, seconds at 3 decimals), in embeddings.safetensors or embeddings.npy
    plus embeddings.txt (the keys of its rows)."""

    def __init__(self, args: argparse.Namespace, inference, postprocessing: Mapping[str, Any]):
        super().__init__(args, inference, postprocessing)
        self.segments = None if args.segments is None else read_segments(args.segments)

    @classmethod
    def default_step(cls, specifications) -> Optional[float]:
        from audiotask.inference.embeddings import EMBEDDING_STEP

        return EMBEDDING_STEP * specifications.duration

    def read(self, path: Path) -> Optional[DecodedFile]:
        # a file without a turn in --segments gets no embedding: it is not even decoded
        if self.segments is not None and not self.segments.get(uri_of(path.name)):
            return None
        return super().read(path)

    def process(self, path: Path, audio: Optional[DecodedFile]) -> dict:
        from audiotask.inference.embeddings import file_embedding, segment_embeddings

        uri = uri_of(path.name)
        if self.segments is None:
            return {uri: file_embedding(self.inference, audio.file)}
        segments = self.segments.get(uri, [])
        if not segments:
            return {}
        # the whole file, decoded ahead, is cut into its turns in memory
        vectors = segment_embeddings(self.inference, audio.file, segments)
        return {segment_key(uri, start, end): vector for (start, end), vector in zip(segments, vectors)}

    def write(self, output: Path, results: Mapping[str, Any]) -> list[str]:
        from audiotask.inference.formats import write_embeddings

        if self.segments is not None:
            unsegmented = sorted(name for name, embeddings in results.items() if not embeddings)
            if unsegmented:
                print(f"audiotask apply: warning: {self.args.segments} has no segment of {len(unsegmented)} file(s), "
                      f"which get no embedding: {', '.join(unsegmented)}", file=sys.stderr)
        embeddings = {key: vector for file_embeddings in results.values() for key, vector in file_embeddings.items()}
        if not embeddings:
            raise CommandError(f"no segment of {self.args.segments} in any of the files: no embedding written")
        written = write_embeddings(output / f"embeddings.{self.args.embedding_format}", embeddings)
        unit = "segments" if self.segments is not None else "files"
        return [f"{len(embeddings)} embeddings of {unit}", *(f"embeddings: {path}" for path in written)]


def segment_key(uri: str, start: float, end: float) -> str:
    """Key of a segment's embedding: ``uri/start-end``, seconds at 3 decimals."""
    return f"{uri}/{start:.3f}-{end:.3f}"


def read_segments(path: Path) -> dict[str, list[tuple[float, float]]]:
    """``{uri: [(start, end), ...]}`` of an RTTM file's turns (sorted; a segment of two
    speakers once: an embedding is keyed by its segment)."""
    from pyannote.database.util import load_rttm

    from audiotask.io import naming_bad_text

    with naming_bad_text(path):
        annotations = load_rttm(str(path))
    segments = {}
    for uri, annotation in annotations.items():
        keys = {segment_key(uri, segment.start, segment.end): (segment.start, segment.end)
                for segment, _ in annotation.itertracks()}
        segments[uri] = sorted(keys.values())
    return segments

