"""RTTM files read strictly: speaker turns as ``{uri: pyannote.core.Annotation}``.

RTTM (NIST's Rich Transcription Time Marked format, as the RT-09 evaluation plan and
dscore's README describe it) is space-delimited, one object per line, ten fields::

    SPEAKER uri channel onset duration <NA> <NA> speaker <NA> <NA>

Diarization reads its ``SPEAKER`` lines. ``pyannote.database.util.load_rttm`` (which this
replaces where a user's file is scored) is lax: a negative duration drops the turn without
a word, and a speaker label with a space shifts the columns, so the turn lands in a file
named after the label's second word. Here each of those is a ``ValueError`` of one line,
``FILE, line N: problem``, as :mod:`audiotask.io` names lines.

Lenient only where the format (or the readers it replaces) is:

- blank lines are skipped, and comment lines: ``;;`` (RTTM's own comments, which NIST's
  md-eval skips) and ``#`` (not RTTM, but pyannote's and dscore's readers skip such lines,
  so files that loaded before still load);
- lines of RTTM's other types (``SPKR-INFO``, ``NOSCORE``, ``LEXEME``, ...) are skipped, as
  pyannote and dscore skip every type but ``SPEAKER``; an unknown type (``SPEAKR``) is an
  error, as it would otherwise drop speech silently;
- nine fields (RTTM before RT-09, without the signal look-ahead time; dscore takes them)
  are accepted as well as ten;
- a zero duration is accepted (it adds no speech: ``Annotation`` ignores empty segments).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Union

from pyannote.core import Annotation, Segment

from audiotask.io import read_text

__all__ = ["FIELDS", "OTHER_TYPES", "read_rttm"]

#: the fields of a SPEAKER line, as error messages show them
FIELDS = "SPEAKER uri channel onset duration <NA> <NA> speaker <NA> <NA>"
#: RTTM's object types other than SPEAKER (RT-09 evaluation plan), skipped
OTHER_TYPES = frozenset({"SEGMENT", "NOSCORE", "NO_RT_METADATA", "LEXEME", "NON-LEX", "NON-SPEECH", "FILLER",
                         "EDIT", "IP", "SU", "CB", "A/P", "SPKR-INFO"})
#: prefixes of the lines skipped as comments
COMMENTS = (";;", "#")
#: field counts accepted: ten (RT-09 on), nine (before, without the signal look-ahead time)
FIELD_COUNTS = (9, 10)
#: what a label containing spaces does to a line, said where it shows
SPACES = "speaker labels cannot contain spaces"


def read_rttm(path: Union[str, Path]) -> dict[str, Annotation]:
    """``{uri: Annotation}`` of the ``SPEAKER`` lines of the RTTM file ``path``.

    Files come in the order of their first line; each turn is its own track (two turns on
    one segment, two speakers talking at once, both stay). A file that the RTTM does not
    name has no entry (RTTM cannot list a file without speech: a UEM does).

    Raises
    ------
    ValueError
        One line, ``PATH, line N: problem``, for the first bad line: a wrong field count, an
        onset or duration that is not a number or is negative, an unknown type, a speaker
        label with spaces (which shows up as extra fields), or text that is not UTF-8.
    """
    annotations: dict[str, Annotation] = {}
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(COMMENTS) or fields[0] in OTHER_TYPES:
            continue
        try:
            uri, segment, speaker = _speaker_turn(fields)
        except ValueError as problem:
            raise ValueError(f"{path}, line {number}: {problem}") from None
        annotation = annotations.setdefault(uri, Annotation(uri=uri))
        annotation[segment, number] = speaker
    return annotations


def _speaker_turn(fields: list[str]) -> tuple[str, Segment, str]:
    """``(uri, segment, speaker)`` of the fields of one line; ``ValueError`` saying what is wrong."""
    if fields[0] != "SPEAKER":
        raise ValueError(f"unknown RTTM type {fields[0]!r}: diarization reads lines '{FIELDS}' "
                         "(';;' starts a comment)")
    if len(fields) > max(FIELD_COUNTS):
        raise ValueError(f"{len(fields)} fields where RTTM has {max(FIELD_COUNTS)} ({FIELDS}): {SPACES} "
                         f"(is the speaker {' '.join(fields[7:len(fields) - 2])!r}?)")
    if len(fields) not in FIELD_COUNTS:
        raise ValueError(f"{len(fields)} fields where RTTM has {max(FIELD_COUNTS)} ({FIELDS})")
    # the fields after the label are a confidence and a time: a word there is the rest of a label
    for number, (name, value) in enumerate(zip(("confidence", "signal look-ahead time"), fields[8:]), start=9):
        if value != "<NA>" and not _is_number(value):
            raise ValueError(f"field {number} ({name}) is {value!r}, neither <NA> nor a number: {SPACES} "
                             f"(is the speaker {' '.join(fields[7:number])!r}?)")
    onset, duration = _seconds("onset", fields[3]), _seconds("duration", fields[4])
    return fields[1], Segment(onset, onset + duration), fields[7]


def _seconds(name: str, text: str) -> float:
    """``text`` as seconds: a finite number, not negative."""
    if not _is_number(text):
        raise ValueError(f"the {name} is {text!r}, not a number of seconds")
    value = float(text)
    if value < 0:
        raise ValueError(f"negative {name} ({text} s)")
    return value


def _is_number(text: str) -> bool:
    """Whether ``text`` is a finite number (``nan`` and ``inf`` are not times)."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
