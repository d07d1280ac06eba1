"""Make sure every protocol file carries what tasks read: "audio", "duration", "annotated"."""

from __future__ import annotations

import functools
import warnings
from typing import Callable, Optional

from pyannote.core import Annotation, Segment, Timeline

from audiotask.core.audio import Audio, AudioError

SUBSETS = ("train", "development", "test")


def has_subset(protocol, subset: str) -> bool:
    """Whether ``protocol`` defines a non-empty ``subset``."""
    try:
        next(iter(getattr(protocol, subset)()))
    except (AttributeError, NotImplementedError, StopIteration):
        return False
    return True


def entry(file, key: str):
    """A protocol file's value for ``key``, None when it has none (inside a preprocessor:
    the value the protocol itself gives, without recursion)."""
    try:
        return file[key]
    except KeyError:
        return None


def file_attribute(file, name: str):
    """The protocol's ``name`` entry of ``file``, else the attribute of that name its
    annotation carries (a clip table's fold, see ``protocols.clip_tables``), else None."""
    value = entry(file, name)
    if value is None:
        value = getattr(entry(file, "annotation"), name, None)
    return value


def _wrapping(wrapper: Callable, *inside) -> Callable:
    """``wrapper``, marked with what it holds (``audiotask_wraps``): the fingerprint of the
    prepared-metadata cache trusts our wrappers only as far as what they wrap."""
    wrapper.audiotask_wraps = inside
    return wrapper


def duration_preprocessor(audio: Audio, existing: Optional[Callable] = None) -> Callable:
    """Preprocessor giving the file's duration: the protocol's own, else the audio header's."""

    def duration(file) -> float:
        value = existing(file) if existing is not None else entry(file, "duration")
        if value is not None:
            return float(value)
        return audio.get_duration(file)

    return _wrapping(duration, audio, existing)


def annotated_preprocessor(existing: Optional[Callable] = None) -> Callable:
    """Preprocessor giving the annotated regions: the protocol's UEM, else the whole file."""

    def annotated(file) -> Timeline:
        value = existing(file) if existing is not None else entry(file, "annotated")
        if value is None:
            return Timeline([Segment(0.0, file["duration"])], uri=file["uri"])
        return value

    return _wrapping(annotated, existing)


#: Annotations may overrun a file by float rounding; beyond this, the user hears about it.
OVERRUN_TOLERANCE = 0.01


def overrun(annotation, duration: float) -> Optional[str]:
    """``"2 annotation(s) end after the audio (4.000 s), e.g. [3.000, 5.500] 'Dog'"``, or
    None when every segment of ``annotation`` ends with the audio (within the tolerance)."""
    late = [(s, label) for s, _, label in annotation.itertracks(yield_label=True) if s.end > duration + OVERRUN_TOLERANCE]
    if not late:
        return None
    segment, label = late[0]
    return (f"{len(late)} annotation(s) end after the audio ({duration:.3f} s), e.g. "
            f"[{segment.start:.3f}, {segment.end:.3f}] {label!r}")


def warn_overrun(uri: str, annotation, duration: float) -> None:
    """Warn, naming the file, about annotated segments that end after the audio does."""
    late = overrun(annotation, duration)
    if late:
        warnings.warn(f"File {uri!r}: {late}; they are clipped to the end of the file.")


def _uncropped(existing: Optional[Callable]) -> Optional[Callable]:
    """The preprocessor that pyannote.database's ``crop_annotation`` wraps (None: the stored value)."""
    if isinstance(existing, functools.partial) and existing.func.__name__ == "crop_annotation":
        return existing.keywords.get("existing_preprocessor")
    return existing


def annotation_preprocessor(existing: Optional[Callable] = None) -> Callable:
    """Preprocessor that reports annotations running past the end of the audio, before
    pyannote.database silently crops them, then returns what the protocol would."""
    source = _uncropped(existing)

    def annotation(file):
        raw = source(file) if source is not None else entry(file, "annotation")
        if raw is not None and not isinstance(raw, Annotation):
            # weak labels (names without times, ``protocols.dcase.WeakLabels``): nothing
            # overruns, and pyannote.database's cropping would fail on them
            return raw
        if raw is not None:
            warn_overrun(file["uri"], raw, file["duration"])
        return existing(file) if existing is not None and existing is not source else raw

    return _wrapping(annotation, existing, source)


def check_audio(file) -> None:
    """Raise a clear error when a protocol file has no "audio" entry."""
    if "audio" not in file and "waveform" not in file:
        raise AudioError(
            f"Protocol file {file.get('uri', '?')!r} has no 'audio' key: pass "
            "preprocessors={'audio': FileFinder()} to get_protocol."
        )


def prepare_protocol(protocol, audio: Optional[Audio] = None):
    """Add "duration" and "annotated" preprocessors to ``protocol`` (in place) and return it."""
    audio = audio or Audio()
    preprocessors = protocol.preprocessors
    if not getattr(protocol, "_audiotask_prepared", False):
        preprocessors["duration"] = duration_preprocessor(audio, preprocessors.get("duration"))
        preprocessors["annotated"] = annotated_preprocessor(preprocessors.get("annotated"))
        preprocessors["annotation"] = annotation_preprocessor(preprocessors.get("annotation"))
        protocol._audiotask_prepared = True
    return protocol
