"""Results on disk: detected events (DCASE TSV, RTTM) and frame scores (sed_scores_eval TSV).

Events are keyed by *filename* (``clip.wav``), as DCASE files name them; RTTM files and
score files are keyed by *uri* (``clip``), as pyannote and sed_scores_eval name them.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
from pyannote.core import Annotation, SlidingWindowFeature

from audiotask.inference.aggregation import is_per_window, windows_to_timeline
from audiotask.core.frames import cell_boundaries
from audiotask.inference.postprocessing import rows_before
from audiotask.protocols.dcase import not_utf8_error, read_dcase_tsv, write_dcase_tsv
from audiotask.protocols.uris import uri_of

Event = tuple[float, float, str]


def write_events_tsv(path: Union[str, Path], events_by_file: Mapping[str, Sequence[Event]]) -> None:
    """Write ``{filename: [(onset, offset, label), ...]}`` as a DCASE TSV file.

    Rows are sorted by filename, then onset; a file without events writes no row (DCASE
    detection files list events only).
    """
    rows = [
        (filename, float(onset), float(offset), label)
        for filename in sorted(events_by_file)
        for onset, offset, label in sorted(events_by_file[filename], key=lambda event: (event[0], event[2]))
    ]
    write_dcase_tsv(path, rows)


def _filenames_by_uri(path: Path) -> dict[str, str]:
    """``{uri: filename}`` of the first column of a DCASE TSV file (header and comments skipped)."""
    filenames: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        try:
            rows = list(csv.reader(handle, delimiter="\t"))
        except UnicodeDecodeError as error:
            raise not_utf8_error(path, error) from None
    for row in rows:
        if not row or row[0].startswith("#") or row[0] == "filename":
            continue
        known = filenames.setdefault(uri_of(row[0]), row[0])
        if known != row[0]:
            raise ValueError(f"{path}: {known} and {row[0]} have the same uri {uri_of(row[0])!r}")
    return filenames


def read_events_tsv(path: Union[str, Path]) -> dict[str, list[Event]]:
    """``{filename: [(onset, offset, label), ...]}`` of a DCASE TSV file.

    A file listed with empty onset/offset (a clip without events) maps to ``[]``. Events are
    sorted by onset, then label. Rows are validated by
    :func:`audiotask.protocols.dcase.read_dcase_tsv`.
    """
    path = Path(path)
    annotations = read_dcase_tsv(path)
    return {
        filename: sorted(
            ((segment.start, segment.end, label) for segment, _, label in annotations[uri].itertracks(yield_label=True)),
            key=lambda event: (event[0], event[2]),
        )
        for uri, filename in _filenames_by_uri(path).items()
    }


def write_rttm(path: Union[str, Path], annotations: Union[Mapping[str, Annotation], Iterable[Annotation]]) -> None:
    """Write annotations to one RTTM file.

    ``annotations`` is ``{uri: Annotation}`` (the key names the file in the RTTM lines) or
    annotations whose ``uri`` is set.
    """
    if isinstance(annotations, Mapping):
        items = list(annotations.items())
    else:
        items = [(annotation.uri, annotation) for annotation in annotations]
    with open(path, "w", encoding="utf-8") as handle:
        for uri, annotation in items:
            if not uri:
                raise ValueError("an annotation without uri cannot be written to RTTM")
            if annotation.uri != uri:
                annotation = annotation.copy()
                annotation.uri = uri
            annotation.write_rttm(handle)


def frame_boundaries(scores: SlidingWindowFeature) -> np.ndarray:
    """Boundaries of the score cells, in seconds, shape (frames + 1,).

    Cell ``i`` is ``[centre(i) - step/2, centre(i) + step/2)``: the frame itself for
    non-overlapping frames, and the same cells as
    :func:`audiotask.inference.postprocessing.active_to_events` otherwise. Rows that score
    whole windows (CHUNK models) are no such cells: :func:`scores_to_dataframe` first
    spreads them onto a timeline (:func:`~audiotask.inference.aggregation.windows_to_timeline`).
    """
    return cell_boundaries(scores.sliding_window, len(scores.data))


def scores_to_dataframe(
    scores: SlidingWindowFeature, classes: Optional[Sequence[str]] = None, *, end: Optional[float] = None
) -> pd.DataFrame:
    """sed_scores_eval score DataFrame (``onset``, ``offset``, one column per class) of frame scores.

    Parameters
    ----------
    scores : pyannote.core.SlidingWindowFeature, data of shape (frames, classes)
        Frame scores, or per-window scores (``sliding_window.duration > step``, a CHUNK
        model's output), which are first spread onto step-wide cells by
        :func:`~audiotask.inference.aggregation.windows_to_timeline`.
    classes : sequence of str, optional
        Column names; default ``scores.labels``.
    end : float, optional
        End of the file, in seconds: cells starting at or after it are dropped and the last
        offset is cut to it, as :func:`~audiotask.inference.postprocessing.scores_to_events` does.
    """
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    data = np.asarray(scores.data)
    if data.ndim != 2:
        raise ValueError(f"scores.data must have shape (frames, classes), got shape {data.shape}")
    classes = list(classes if classes is not None else (scores.labels or []))
    if len(classes) != data.shape[1]:
        raise ValueError(f"{len(classes)} class names for scores of shape {data.shape}: give classes=")
    if is_per_window(scores.sliding_window):
        scores = windows_to_timeline(scores, end=end)
    data = rows_before(np.asarray(scores.data), frames=scores.sliding_window, end=end)
    boundaries = frame_boundaries(scores)[: len(data) + 1]
    if end is not None:
        boundaries[-1] = min(boundaries[-1], end)
    return create_score_dataframe(data, boundaries, classes)


def _as_dataframe(scores: Union[SlidingWindowFeature, pd.DataFrame]) -> pd.DataFrame:
    return scores if isinstance(scores, pd.DataFrame) else scores_to_dataframe(scores)


def write_scores(
    folder: Union[str, Path], scores_by_file: Mapping[str, Union[SlidingWindowFeature, pd.DataFrame]]
) -> None:
    """Write one sed_scores_eval TSV per file, ``folder/{uri}.tsv``.

    ``scores_by_file`` is keyed by filename or uri (``clip.wav`` and ``clip`` both write
    ``clip.tsv``); values are frame scores or sed_scores_eval DataFrames.
    """
    from sed_scores_eval.base_modules.io import write_sed_scores

    by_uri: dict[str, pd.DataFrame] = {}
    for name, scores in scores_by_file.items():
        uri = uri_of(name)
        if uri in by_uri:
            raise ValueError(f"two files would write {uri}.tsv: rename one ({name})")
        by_uri[uri] = _as_dataframe(scores)
    write_sed_scores(by_uri, folder)


def read_scores(folder: Union[str, Path]) -> dict[str, pd.DataFrame]:
    """``{uri: DataFrame}`` of the sed_scores_eval TSV files of ``folder``.

    ``ValueError`` naming the file when one cannot be read (see :func:`read_score_files`).
    """
    scores, failed = read_score_files(folder)
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise ValueError(next(iter(failed.values())) + more)
    return scores


def read_score_files(folder: Union[str, Path]) -> tuple[dict[str, pd.DataFrame], dict[Path, str]]:
    """The score files of ``folder``, file by file: ``({uri: DataFrame}, {path: problem})``.

    A file is read as sed_scores_eval reads it (``uri.tsv``, tab-separated, checked by
    ``validate_score_dataframe``); one that is no ``.tsv`` file, is not UTF-8, does not
    parse, is no valid score table or holds a NaN or infinite value is left out of the
    scores, and its problem (one line naming it) is returned instead, so that one bad file
    does not stop the others from being read.
    """
    from sed_scores_eval.base_modules.scores import validate_score_dataframe

    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"no such folder of scores: {folder}")
    scores: dict[str, pd.DataFrame] = {}
    failed: dict[Path, str] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not path.name.endswith(".tsv"):
            failed[path] = f"{path}: not a score file (uri.tsv)"
            continue
        try:
            frame = pd.read_csv(path, sep="\t")
            validate_score_dataframe(frame)
            bad = int(np.count_nonzero(~np.isfinite(frame.to_numpy(dtype=np.float64))))
            if bad:
                raise ValueError(f"{bad} NaN or infinite value(s)")
        except UnicodeDecodeError as error:
            failed[path] = str(not_utf8_error(path, error))
        except (ValueError, AssertionError) as error:  # pandas' parser errors are ValueErrors
            failed[path] = f"{path}: " + " ".join(str(error).split())
        else:
            scores[path.name[: -len(".tsv")]] = frame
    return scores, failed
