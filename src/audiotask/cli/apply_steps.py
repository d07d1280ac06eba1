"""The steps that ``audiotask apply``'s files, workers and outputs share: load a model, score
one decoded file or stream, and say in one line what went wrong with a file.

Its own module so that ``apply`` (the verb), ``apply_files`` (the file loop and its workers)
and ``apply_outputs`` (what each kind of model writes) all import it and not each other.
"""

from __future__ import annotations

import json
from pathlib import Path

from audiotask.cli.common import CommandError, one_line


#: what one file can raise that should not stop the others: undecodable, empty or
#: non-finite audio (AudioError, a ValueError), an unreadable file (OSError), or torch
#: failing on it (RuntimeError, e.g. out of memory on a very long file)
FILE_ERRORS = (ValueError, OSError, RuntimeError)


def load_model(path: Path):
    """``Model.from_pretrained(path)``, or an ``OnnxModel`` for a folder of ``audiotask export``;
    a ``ValueError`` naming the file when it cannot be loaded.

    Not a ``CommandError``: ``audiotask --debug`` then shows where loading failed.
    """
    import pickle

    from audiotask.core.manifest import MANIFEST
    from audiotask.inference.inference import load_for_inference

    if not path.exists():
        raise CommandError(f"no such model: {path}")
    try:
        return load_for_inference(path)
    except json.JSONDecodeError as error:  # its message names a line and column, not the file
        raise ValueError(f"{path / MANIFEST if path.is_dir() else path}: invalid JSON: {error}") from error
    except (ValueError, OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
        reason = f"missing key {error.args[0]!r}" if isinstance(error, KeyError) and error.args else str(error)
        raise ValueError(one_line(f"cannot load the model {path}: {reason}")) from error


def apply_to_file(inference, audio, options: dict):
    """``(scores DataFrame, events)`` of one decoded file (``inference.reading.DecodedFile``),
    up to its end; raises one of :data:`FILE_ERRORS`."""
    return scores_and_events(inference(audio.file), audio.duration, options)


def apply_to_stream(inference, path: Path, options: dict, block: float):
    """As :func:`apply_to_file`, the file read and scored block by block (``--stream``)."""
    from audiotask.inference.streaming import stream_file

    scores = stream_file(inference, path, block)
    return scores_and_events(scores, inference.model.audio.get_duration(str(path)), options)


def scores_and_events(file_scores, end: float, options: dict):
    """``(scores DataFrame, events)`` of a file's scores up to its ``end`` (seconds)."""
    from audiotask.inference.aggregation import is_per_window, windows_to_timeline
    from audiotask.inference.formats import scores_to_dataframe
    from audiotask.inference.postprocessing import scores_to_events

    if is_per_window(file_scores.sliding_window):
        # a chunk model's rows are overlapping windows, the last one running over zero
        # padding: a timeline of step-long cells stopping at the file's end replaces them
        file_scores = windows_to_timeline(file_scores, end=end)
    return scores_to_dataframe(file_scores, end=end), scores_to_events(file_scores, end=end, **options)


def file_problem(path: Path, error: BaseException) -> str:
    """``error`` in one line that names ``path`` (once: library errors often name it already)."""
    message = one_line(str(error))
    return message if str(path) in message else f"{path}: {message}"
