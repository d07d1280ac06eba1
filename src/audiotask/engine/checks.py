"""What would fail or be dropped, file by file: one pass over a protocol before training.

``audiotask check`` and ``AnnotatedTask.check()`` report, per file: missing, undecodable or
empty audio, NaN or infinite samples, a file shorter than a training chunk, annotations or
annotated regions (UEM) past the end of the audio, labels outside the task's classes,
files a task leaves out (no annotated region, a label kind it does not learn from), with,
for a file that no annotation or UEM names, the uri they do name that differs only in
spelling (debug-speech lists ``trñ00`` where its RTTM and UEM say ``trn00``).
"""

from __future__ import annotations

import difflib
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from audiotask.core.protocol_files import OVERRUN_TOLERANCE, entry, overrun
from audiotask.engine.preparation import warn_unannotated

#: severities, worst first: an error stops training, "dropped" means never used
ERROR, DROPPED, WARNING = "error", "dropped", "warning"
#: samples read at once when scanning a file for NaN / infinite values
SCAN_BLOCK = 1 << 20


@dataclass(frozen=True)
class Finding:
    """One problem of one file: ``severity`` is ERROR, DROPPED or WARNING."""

    subset: str
    uri: str
    severity: str
    problem: str

    def __str__(self) -> str:
        return f"{self.severity:<7}  {self.subset}  {self.uri}: {self.problem}"


def audio_problems(path: Optional[str], *, scan: bool) -> tuple[list[str], float]:
    """``(problems, duration in seconds)`` of an audio file; with ``scan``, every sample is
    read to find NaN or infinite values."""
    import soundfile

    if path is None:
        return ["no 'audio' entry (pass preprocessors={'audio': FileFinder()})"], 0.0
    if not Path(path).is_file():
        return [f"audio file not found: {path}"], 0.0
    try:
        info = soundfile.info(path)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        return [f"cannot decode {path}: {error}"], 0.0
    if info.frames == 0:
        return [f"empty audio file (0 samples): {path}"], 0.0
    if scan:
        try:
            bad = sum(int(np.count_nonzero(~np.isfinite(block)))
                      for block in soundfile.blocks(path, blocksize=SCAN_BLOCK, dtype="float32"))
        except (soundfile.LibsndfileError, RuntimeError) as error:
            return [f"cannot decode {path} to its end: {error}"], info.duration
        if bad:
            return [f"{bad} NaN or infinite sample(s) in {path}"], info.duration
    return [], info.duration


def normalised(uri: str) -> str:
    """``uri`` without accents and case: ``trñ00`` and ``TRN00`` both give ``trn00``."""
    decomposed = unicodedata.normalize("NFKD", uri)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def closest_uri(uri: str, candidates: Iterable[str]) -> Optional[str]:
    """The candidate spelt like ``uri`` once normalised, else the closest by edit ratio (>= 0.8)."""
    candidates = sorted(set(candidates))
    same = [c for c in candidates if normalised(c) == normalised(uri)]
    if same:
        return same[0]
    close = difflib.get_close_matches(uri, candidates, n=1, cutoff=0.8)
    return close[0] if close else None


def loader_uris(raw_file) -> set[str]:
    """The uris that the annotation and UEM files behind a raw protocol file name.

    pyannote.database's RTTM / UEM loaders keep them in ``loaded_``, ours (DCASE TSV) in
    ``annotations``; other loaders tell nothing and are skipped.
    """
    uris: set[str] = set()
    for loader in getattr(raw_file, "lazy", {}).values():
        for attribute in ("loaded_", "annotations"):
            table = getattr(loader, attribute, None)
            if isinstance(table, dict):
                uris.update(str(key) for key in table)
    return uris


def raw_and_prepared(protocol, subset: str) -> Iterator[tuple[set, dict, object]]:
    """``(uris named by its loaders, values as stored, prepared file)`` per file of
    ``subset``, in one pass: the raw file holds the loaders (see :func:`loader_uris`) and
    the values before any preprocessor crops them."""
    try:
        raws = getattr(protocol, f"{subset}_iter")()
    except (AttributeError, NotImplementedError):
        return
    for raw in raws:
        # read first: preparing the file computes the raw values, and with them the
        # loaders leave the raw file
        uris = loader_uris(raw)
        prepared = protocol.preprocess(raw)
        yield uris, abs(prepared), prepared


def annotation_problems(raw: dict, duration: float) -> list[str]:
    """Annotations and annotated regions (UEM) that end after the audio, as stored."""
    from pyannote.core import Annotation, Timeline

    problems = []
    annotation, annotated = raw.get("annotation"), raw.get("annotated")
    late = overrun(annotation, duration) if isinstance(annotation, Annotation) else None
    if late:
        problems.append(f"{late}: clipped")
    if isinstance(annotated, Timeline):
        late = [s for s in annotated if s.end > duration + OVERRUN_TOLERANCE]
        if late:
            problems.append(f"{len(late)} annotated region(s) (UEM) end after the audio ({duration:.3f} s), "
                            f"e.g. [{late[0].start:.3f}, {late[0].end:.3f}]: clipped")
    return problems


def _labels(annotation) -> Counter:
    from pyannote.core import Annotation

    if isinstance(annotation, Annotation):
        return Counter(str(label) for _, _, label in annotation.itertracks(yield_label=True))
    if isinstance(annotation, (tuple, list, set, frozenset)):
        return Counter(str(label) for label in annotation)
    return Counter()


@dataclass
class CheckReport:
    """What :func:`check_protocol` found, and over how many files."""

    findings: list
    files: int

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == ERROR]

    def summary(self) -> str:
        """``"12 file(s) checked: 1 error(s), 2 dropped, 3 warning(s)"``."""
        counts = Counter(finding.severity for finding in self.findings)
        return (f"{self.files} file(s) checked: {counts[ERROR]} error(s), {counts[DROPPED]} dropped, "
                f"{counts[WARNING]} warning(s)")


def check_protocol(
    protocol,
    subsets: Sequence[str],
    *,
    chunk_duration: float,
    unknown_label: Optional[Callable[[str], bool]] = None,
    label_kinds: Sequence[str] = ("strong",),
    scan: bool = True,
) -> CheckReport:
    """Every problem of every file of ``subsets``, in one pass over the protocol.

    Parameters
    ----------
    protocol : a pyannote.database protocol (prepared by ``core.protocol_files.prepare_protocol``)
    subsets : e.g. ("train", "development")
    chunk_duration : training chunk duration in seconds (shorter files are zero-padded)
    unknown_label : whether a label is outside the task's classes (None: not checked)
    label_kinds : the label kinds the task learns from (others are reported as dropped)
    scan : read every sample to find NaN / infinite values (slower)
    """
    findings: list[Finding] = []
    unannotated: list[tuple[str, str]] = []
    files = 0
    listed: set[str] = set()
    named: set[str] = set()
    with warnings.catch_warnings():
        # what the protocol's own preprocessors warn about is reported below, per file
        warnings.simplefilter("ignore")
        for subset in subsets:
            for uris, raw, file in raw_and_prepared(protocol, subset):
                uri = str(file["uri"])
                listed.add(uri)
                files += 1
                named |= uris
                for severity, problem in file_problems(file, raw, chunk_duration=chunk_duration,
                                                       unknown_label=unknown_label, label_kinds=label_kinds, scan=scan):
                    if problem == NO_REGION:
                        unannotated.append((subset, uri))
                        continue
                    findings.append(Finding(subset, uri, severity, problem))
    for subset, uri in unannotated:
        findings.append(Finding(subset, uri, DROPPED, _no_region(uri, named - listed)))
    return CheckReport(findings, files)


NO_REGION = "no annotated region"


def _no_region(uri: str, unmatched: set[str]) -> str:
    suggestion = closest_uri(uri, unmatched)
    hint = f"; the annotation or UEM files name {suggestion!r}, which no listed file has: a different spelling?" if suggestion else ""
    return f"no annotated region (UEM): never used{hint}"


def file_problems(file, raw: dict, *, chunk_duration: float, unknown_label, label_kinds, scan: bool) -> list[tuple[str, str]]:
    """``[(severity, problem)]`` of one protocol file (``raw``: its values as stored)."""
    from audiotask.engine.preparation import label_kind_and_tags

    try:
        audio = entry(file, "audio")
    except FileNotFoundError as error:  # pyannote.database's FileFinder found no file
        return [(ERROR, f"audio file not found ({' '.join(str(error).split())})")]
    problems, duration = audio_problems(None if audio is None else str(audio), scan=scan)
    if problems:
        return [(ERROR, problem) for problem in problems]
    found: list[tuple[str, str]] = [(WARNING, p) for p in annotation_problems(raw, duration)]
    if duration < chunk_duration:
        found.append((WARNING, f"shorter than a training chunk ({duration:.3f} s < {chunk_duration:g} s): zero-padded"))
    annotation = entry(file, "annotation")
    kind, _, _ = label_kind_and_tags(annotation)
    if kind not in label_kinds:
        found.append((DROPPED, f"labelled '{kind}', and the task learns from {'/'.join(label_kinds)} labels only"))
    if unknown_label is not None:
        outside = {label: n for label, n in _labels(annotation).items() if unknown_label(label)}
        if outside:
            listed = ", ".join(f"{label!r} ({n})" for label, n in sorted(outside.items()))
            found.append((WARNING, f"labels outside the classes, ignored: {listed}"))
    annotated = entry(file, "annotated")
    if annotated is not None and not any(s.start < duration for s in annotated.support()):
        found.append((DROPPED, NO_REGION))
    return found


# ---- the prepared metadata, before training ---------------------------------------------
def check_prepared(task, metadata) -> None:
    """Refuse what cannot train (no train file, empty audio) and warn about what ``task``
    (an ``AnnotatedTask``) will leave out of ``metadata``: unknown labels, files without
    annotated region, files of label kinds it does not train on."""
    name_of_task = type(task).__name__
    if len(metadata.subsets["train"]) == 0:
        raise ValueError(f"{name_of_task}: the protocol's train subset has no file.")
    classes = task.classes_of(metadata)
    unknown = [label for label, k in zip(metadata.labels, task.label_classes(metadata.labels, classes)) if k < 0]
    counted = [label for label in unknown if metadata.segments_per_label.get(label, 0)]
    if task.labels_are_classes and counted:
        warnings.warn(
            f"{name_of_task}: labels outside the task's classes {classes} are ignored: "
            + ", ".join(f"{label!r} ({metadata.segments_per_label[label]} segments)" for label in counted)
        )
    for name, subset in metadata.subsets.items():
        refuse_empty_audio(name_of_task, name, subset)
        warn_unannotated(name_of_task, name, subset)
        kinds = subset.attribute("label_kind")
        accepted = task.accepted_kinds(name)
        left_out = ~np.isin(kinds, accepted)
        if left_out.any():
            warnings.warn(
                f"{name_of_task} {'validates' if accepted is not task.label_kinds else 'trains'} on "
                f"{'/'.join(accepted)} labels: {int(left_out.sum())} {name} "
                f"file(s) labelled otherwise are left out ({', '.join(sorted(set(kinds[left_out].tolist())))}), "
                f"e.g. {str(subset.uri[left_out][0])!r}."
            )


def refuse_empty_audio(task_name: str, name: str, subset) -> None:
    """Stop before training on audio files of subset ``name`` without a sample, naming them
    (they would otherwise pass for files without annotated region)."""
    empty = subset.uri[np.asarray(subset.duration) <= 0]
    if len(empty):
        paths = subset.audio[np.asarray(subset.duration) <= 0]
        raise ValueError(
            f"{task_name}: {len(empty)} {name} audio file(s) are empty (0 samples): "
            + ", ".join(f"{uri!r} ({path})" for uri, path in zip(empty[:5].tolist(), paths[:5].tolist()))
            + (", ..." if len(empty) > 5 else "") + "; remove them from the protocol (`audiotask check` lists every problem)."
        )
