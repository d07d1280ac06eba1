"""Speaker diarization metrics, computed by pyannote.metrics: DER with its parts, and JER.

The diarization error rate (``pyannote.metrics.diarization.DiarizationErrorRate``) maps the
hypothesis' speakers onto the reference's (the Hungarian mapping that maximises their
common time), then counts, in seconds of the evaluated extent: false alarm (speech that
the reference does not have), missed detection (reference speech without hypothesis), and
confusion (speech given to another speaker than the mapped one); DER is their sum over the
reference speech. Over several files, the seconds are summed before dividing: the TOTAL DER
is ``sum(false alarm + missed detection + confusion) / sum(total)``, as ``abs(metric)``
computes it.

The Jaccard error rate (``JaccardErrorRate``, DIHARD II's) is, for each reference speaker,
1 minus the Jaccard index of its speech and that of the hypothesis speaker it is mapped to
(1 for a speaker mapped to none), averaged over the reference speakers. Over several files,
pyannote.metrics accumulates the speakers' errors and counts: the TOTAL JER is the mean over
every reference speaker of every file, not the mean of the files' JER. A file without
reference speaker has JER 100 % in pyannote.metrics (and adds nothing to the TOTAL).

``collar`` is pyannote's: the full width of the region centred on each reference boundary
that is not scored (md-eval's ``-c 0.25`` is ``collar=0.5``).
"""

from __future__ import annotations

import warnings
from typing import Mapping, Optional

from pyannote.core import Annotation, Timeline

__all__ = ["DER_COMPONENTS", "JER_COMPONENTS", "diarization_error_rates", "format_table"]

#: DiarizationErrorRate's components (seconds)
DER_COMPONENTS = ("false alarm", "missed detection", "confusion", "correct", "total")
#: JaccardErrorRate's components (a count of reference speakers, the sum of their errors)
JER_COMPONENTS = ("speaker count", "speaker error")


def diarization_error_rates(
    references: Mapping[str, Annotation],
    hypotheses: Mapping[str, Annotation],
    uems: Optional[Mapping[str, Timeline]] = None,
    *,
    collar: float = 0.0,
    skip_overlap: bool = False,
) -> dict:
    """DER (with false alarm, missed detection, confusion) and JER, per file and over all files.

    Parameters
    ----------
    references, hypotheses : {uri: pyannote.core.Annotation}
        Speaker turns. A file without hypothesis is scored against an empty one (all its
        speech missed).
    uems : {uri: pyannote.core.Timeline}, optional
        Evaluated extent of each file; its files are the files evaluated (a file of the UEM
        without reference turns has no reference speech: its hypothesis is all false alarm),
        and reference or hypothesis files outside it are left out, with a warning naming
        them. Without UEM, the files of ``references`` are evaluated, each over the union of
        its reference and hypothesis extents (pyannote.metrics' fallback), and a hypothesis
        for a file without reference turns is an error naming it.
    collar : float
        Seconds (full width) around each reference boundary left out of the evaluation.
    skip_overlap : bool
        Leave the regions where reference speakers overlap out of the evaluation.

    Returns
    -------
    dict
        ``diarization_error_rate`` and ``jaccard_error_rate`` (TOTAL, fractions),
        ``components`` (:data:`DER_COMPONENTS` in seconds and :data:`JER_COMPONENTS`, summed
        over files), ``per_file`` ``{uri: {"diarization_error_rate", "jaccard_error_rate",
        *components}}``, and the ``collar`` and ``skip_overlap`` used.
    """
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    uris = evaluated_files(references, hypotheses, uems)
    der = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    jer = JaccardErrorRate(collar=collar, skip_overlap=skip_overlap)
    per_file = {}
    with warnings.catch_warnings():
        # the fallback extent is documented above: the warning would repeat it once per file
        warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")
        for uri in uris:
            reference = references.get(uri, Annotation(uri=uri))
            hypothesis = hypotheses.get(uri, Annotation(uri=uri))
            uem = None if uems is None else uems[uri]
            per_file[uri] = {
                **_rate_and_components(der(reference, hypothesis, uem=uem, detailed=True), DER_COMPONENTS),
                **_rate_and_components(jer(reference, hypothesis, uem=uem, detailed=True), JER_COMPONENTS),
            }
    components = {name: float(der[name]) for name in DER_COMPONENTS}
    components.update({name: float(jer[name]) for name in JER_COMPONENTS})
    return {
        "diarization_error_rate": float(abs(der)),
        "jaccard_error_rate": float(abs(jer)),
        "components": components,
        "per_file": per_file,
        "collar": float(collar),
        "skip_overlap": bool(skip_overlap),
    }


def evaluated_files(
    references: Mapping[str, Annotation],
    hypotheses: Mapping[str, Annotation],
    uems: Optional[Mapping[str, Timeline]],
) -> list[str]:
    """The uris to evaluate, sorted (see :func:`diarization_error_rates`); ``ValueError`` for
    none, or for hypotheses of files without reference turns when there is no UEM."""
    if uems is None:
        extra = sorted(set(hypotheses) - set(references))
        if extra:
            raise ValueError(f"hypotheses for files without reference turns: {', '.join(extra)} (a file whose "
                             "reference has no speech is evaluated only where a UEM lists it)")
        uris = sorted(references)
    else:
        for kind, files in (("reference", references), ("hypothesis", hypotheses)):
            outside = sorted(set(files) - set(uems))
            if outside:
                warnings.warn(f"{kind} files outside the UEM, not evaluated: {', '.join(outside)}", stacklevel=3)
        uris = sorted(uems)
    if not uris:
        raise ValueError("no file to evaluate: the reference has no speaker turn"
                         + ("" if uems is None else " and the UEM no file"))
    return uris


def _rate_and_components(details: Mapping, names: tuple[str, ...]) -> dict:
    """A file's ``details`` (of ``metric(..., detailed=True)``) as plain floats under our names."""
    rate = "diarization_error_rate" if "total" in names else "jaccard_error_rate"
    metric_name = rate.replace("_", " ")  # pyannote's: "diarization error rate", "jaccard error rate"
    return {rate: float(details[metric_name]), **{name: float(details[name]) for name in names}}


def format_table(results: dict) -> str:
    """Text table of :func:`diarization_error_rates`' results: one row per file, then TOTAL.

    DER and JER in %, false alarm, missed detection and confusion in % of the reference
    speech and in seconds, then the reference speech in seconds (pyannote's ``total``: speaker
    time, where two speakers talk at once counts twice), then JER. A part's % of a file
    without reference speech is shown as ``-``; the last line names the collar and whether
    overlap was scored.
    """
    width = max([len("TOTAL")] + [len(uri) for uri in results["per_file"]])
    header = (f"{'file':<{width}}  {'DER %':>7}  {'FA %':>7}  {'FA s':>8}  {'miss %':>7}  {'miss s':>8}  "
              f"{'conf %':>7}  {'conf s':>8}  {'speech s':>9}  {'JER %':>7}")
    rule = "-" * len(header)
    lines = [header, rule]
    for uri, values in results["per_file"].items():
        lines.append(_row(uri, width, values, values["diarization_error_rate"], values["jaccard_error_rate"]))
    lines.append(rule)
    lines.append(_row("TOTAL", width, results["components"], results["diarization_error_rate"],
                      results["jaccard_error_rate"]))
    setting = f"collar {results['collar']:g} s, overlap {'not scored' if results['skip_overlap'] else 'scored'}"
    return "\n".join(lines + [setting])


def _row(name: str, width: int, components: Mapping, der: float, jer: float) -> str:
    total = components["total"]

    def part(key: str) -> str:
        share = f"{100 * components[key] / total:7.2f}" if total > 0 else f"{'-':>7}"
        return f"{share}  {components[key]:8.2f}"

    return (f"{name:<{width}}  {100 * der:7.2f}  {part('false alarm')}  {part('missed detection')}  "
            f"{part('confusion')}  {total:9.2f}  {100 * jer:7.2f}")
