"""Results on disk: detected events (DCASE TSV, RTTM), frame scores (sed_scores_eval TSV),
clip scores and tags (CSV, DCASE weak TSV) and embeddings (safetensors, or NumPy plus keys).

Events, clip scores and tags are keyed by *filename* (``clip.wav``), as DCASE files name
them; RTTM files and score files are keyed by *uri* (``clip``), as pyannote and
sed_scores_eval name them; embeddings by whatever key their writer chose.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import pandas as pd
from pyannote.core import Annotation, SlidingWindowFeature

from audiotask.inference.aggregation import is_per_window, windows_to_timeline
from audiotask.core.frames import cell_boundaries
from audiotask.inference.postprocessing import rows_before
from audiotask.io import not_utf8_error, replaced_atomically, table_rows, write_text_atomically
from audiotask.protocols.dcase import WEAK_HEADER, read_dcase_tsv, write_dcase_tsv
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
    for _, row in table_rows(path, comment="#"):
        if row[0] == "filename":
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
    with replaced_atomically(path) as partial, open(partial, "w", encoding="utf-8") as handle:
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


# ---- one row per file: clip scores and tags (clip-level models) ----------------------------
#: the column of ``predictions.csv`` that names each file's predicted class
LABEL_COLUMN = "label"


class ClipScores(NamedTuple):
    """A clip score table as :func:`read_clip_scores` reads it.

    ``classes``: the score columns, in order; ``scores``: ``{filename: (classes,) float64}``;
    ``labels``: ``{filename: predicted class}``, empty when the table has no label column.
    """

    classes: list[str]
    scores: dict[str, np.ndarray]
    labels: dict[str, str]


def write_clip_scores(
    path: Union[str, Path],
    scores: Mapping[str, np.ndarray],
    classes: Sequence[str],
    *,
    labels: Optional[Mapping[str, str]] = None,
    decimals: int = 6,
) -> None:
    """Write one CSV row per file: ``filename[,label],class_1,...`` (rows sorted by filename).

    Parameters
    ----------
    scores : {filename: array of shape (classes,)}
    classes : names of the score columns, in the order of the arrays
    labels : {filename: class}, optional
        Written as a ``label`` column after the filename (a classifier's decision).
    decimals : digits after the decimal point of each score
    """
    classes = [str(name) for name in classes]
    taken = {"filename", LABEL_COLUMN} & set(classes)
    if taken:
        raise ValueError(f"a class cannot be named {sorted(taken)[0]!r}: that column names the file or its label")
    with replaced_atomically(path) as partial, open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["filename", *([LABEL_COLUMN] if labels is not None else []), *classes])
        for filename in sorted(scores):
            values = np.asarray(scores[filename], dtype=np.float64)
            if values.shape != (len(classes),):
                raise ValueError(f"{filename}: {len(classes)} classes but scores of shape {values.shape}")
            label = [labels[filename]] if labels is not None else []
            writer.writerow([filename, *label, *(f"{value:.{decimals}f}" for value in values)])


def read_clip_scores(path: Union[str, Path]) -> ClipScores:
    """The clip score table written by :func:`write_clip_scores` (``apply``'s predictions.csv, scores.csv).

    ``ValueError`` naming the file and line of a malformed row: a wrong number of columns, a
    score that is no finite number, a file listed twice, a label that is not a class.
    """
    path = Path(path)
    rows = table_rows(path, delimiter=",")
    if not rows or rows[0][1][0] != "filename":
        raise ValueError(f"{path}, line 1: expected a header filename[,label],CLASS,... (a clip score table)")
    header = rows[0][1]
    first = 2 if len(header) > 1 and header[1] == LABEL_COLUMN else 1
    classes = header[first:]
    if not classes:
        raise ValueError(f"{path}, line 1: no score column in the header {header}")
    scores: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    for number, row in rows[1:]:
        where = f"{path}, line {number}"
        if len(row) != len(header):
            raise ValueError(f"{where}: expected {len(header)} comma-separated columns {header}, got {row!r}")
        filename = row[0]
        if not filename or filename in scores:
            raise ValueError(f"{where}: " + (f"{filename} is listed twice" if filename else "empty filename"))
        try:
            values = np.array([float(value) for value in row[first:]])
        except ValueError:
            raise ValueError(f"{where}: scores are not numbers: {row!r}") from None
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{where}: NaN or infinite score: {row!r}")
        if first == 2:
            if row[1] not in classes:
                raise ValueError(f"{where}: label {row[1]!r} is none of the classes {classes}")
            labels[filename] = row[1]
        scores[filename] = values
    return ClipScores(classes, scores, labels)


def write_tags_tsv(path: Union[str, Path], tags: Mapping[str, Sequence[str]]) -> None:
    """Write ``{filename: [class, ...]}`` as DCASE weak labels: ``filename<TAB>event_labels``.

    Labels are comma-separated (sorted); a file without tags is listed with an empty field,
    so that it reads back as a file without any class, not as a missing file.
    """
    with replaced_atomically(path) as partial, open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(WEAK_HEADER)
        for filename in sorted(tags):
            names = sorted(tags[filename])
            if any("," in name for name in names):
                raise ValueError(f"{filename}: a class with a comma cannot be written as a weak label: {names}")
            writer.writerow([filename, ",".join(names)])


# ---- embeddings -------------------------------------------------------------------------------
#: the formats of :func:`write_embeddings`: one tensor per key, or one matrix plus a file of keys
EMBEDDING_SUFFIXES = (".safetensors", ".npy")


def embedding_keys_path(path: Union[str, Path]) -> Path:
    """The keys file (one key per line, in the matrix's row order) of an ``.npy`` embedding matrix."""
    return Path(path).with_suffix(".txt")


def write_embeddings(path: Union[str, Path], embeddings: Mapping[str, np.ndarray]) -> list[Path]:
    """Write ``{key: (dimension,)}`` embeddings; return the files written.

    ``.safetensors``: one float32 tensor per key (safetensors reads them without unpickling
    anything); ``.npy``: a ``(keys, dimension)`` float32 matrix, its keys one per line in
    :func:`embedding_keys_path` (NumPy-only consumers need no other library).
    """
    path = Path(path)
    if path.suffix not in EMBEDDING_SUFFIXES:
        raise ValueError(f"{path}: embeddings are written to {' or '.join(EMBEDDING_SUFFIXES)} files")
    if not embeddings:
        raise ValueError(f"{path}: no embedding to write")
    arrays = {str(key): np.ascontiguousarray(value, dtype=np.float32) for key, value in embeddings.items()}
    dimensions = {array.shape for array in arrays.values()}
    if len(dimensions) != 1 or len(next(iter(dimensions))) != 1:
        raise ValueError(f"{path}: embeddings must be vectors of one size, got shapes {sorted(dimensions)}")
    bad = [key for key in arrays if not key or any(character in key for character in "\r\n")]
    if bad:
        raise ValueError(f"{path}: an embedding key must be one non-empty line, got {bad[0]!r}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        with replaced_atomically(path) as partial:
            save_file(arrays, str(partial))
        return [path]
    keys = sorted(arrays)
    with replaced_atomically(path) as partial, open(partial, "wb") as handle:
        np.save(handle, np.stack([arrays[key] for key in keys]))
    write_text_atomically(embedding_keys_path(path), "".join(f"{key}\n" for key in keys))
    return [path, embedding_keys_path(path)]


def read_embeddings(path: Union[str, Path]) -> dict[str, np.ndarray]:
    """``{key: (dimension,) float32}`` from a file of :func:`write_embeddings` (either format).

    ``ValueError`` naming the file when it is not such a file (a keys file of another
    length than the matrix, a key listed twice, no vectors).
    """
    path = Path(path)
    if path.suffix not in EMBEDDING_SUFFIXES:
        raise ValueError(f"{path}: expected embeddings in a {' or '.join(EMBEDDING_SUFFIXES)} file")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            arrays = load_file(str(path))
        except Exception as error:  # safetensors' own error type, whatever its version
            raise ValueError(f"{path}: not a safetensors file ({_one_line(error)})") from None
        embeddings = {key: np.asarray(value, dtype=np.float32) for key, value in sorted(arrays.items())}
    else:
        try:
            matrix = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"{path}: not a .npy matrix of embeddings ({_one_line(error)})") from None
        keys_path = embedding_keys_path(path)
        if not keys_path.is_file():
            raise FileNotFoundError(f"{path}: its keys file {keys_path} (one key per row) is missing")
        keys = keys_path.read_text(encoding="utf-8").splitlines()
        if matrix.ndim != 2 or len(keys) != len(matrix):
            raise ValueError(f"{path}: a matrix of shape {matrix.shape} for the {len(keys)} keys of {keys_path}")
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"{keys_path}, line {keys.index(repeated[0]) + 1}: key {repeated[0]!r} is listed twice")
        embeddings = {key: row.astype(np.float32) for key, row in zip(keys, matrix)}
    shapes = {value.shape for value in embeddings.values()}
    if len(shapes) > 1 or any(len(shape) != 1 for shape in shapes):
        raise ValueError(f"{path}: embeddings must be vectors of one size, got shapes {sorted(shapes)}")
    return embeddings


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
