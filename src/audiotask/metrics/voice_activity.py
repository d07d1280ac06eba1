"""Voice activity detection metrics, computed by pyannote.metrics.

The detection error rate is ``(miss + false alarm) / total``, in seconds of speech, over the
evaluated extent of each file (its UEM). Labels are ignored: any reference or hypothesis
segment is speech.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Optional

from pyannote.core import Annotation, Timeline


def detection_error_rate(
    references: Mapping[str, Annotation],
    hypotheses: Mapping[str, Annotation],
    uems: Optional[Mapping[str, Timeline]] = None,
    *,
    collar: float = 0.0,
) -> dict:
    """Detection error rate over all files, and per file, with its components.

    Parameters
    ----------
    references, hypotheses : {uri: pyannote.core.Annotation}
        A reference file without hypothesis is evaluated against an empty one (all missed);
        a hypothesis for a file without reference is an error naming it.
    uems : {uri: pyannote.core.Timeline}, optional
        Evaluated extent of each file. Without one, pyannote.metrics evaluates the union of
        the reference and hypothesis extents.
    collar : float
        Seconds around reference boundaries left out of the evaluation (0: none, the
        usual value for voice activity detection).

    Returns
    -------
    dict
        ``detection_error_rate`` (total, a fraction), ``components`` (``miss``, ``false
        alarm`` and ``total`` reference speech, in seconds, summed over files) and
        ``per_file`` ``{uri: {"detection_error_rate", "miss", "false alarm", "total"}}``.
    """
    from pyannote.metrics.detection import DetectionErrorRate

    extra = sorted(set(hypotheses) - set(references))
    if extra:
        raise ValueError(f"hypotheses for files without reference: {', '.join(extra)}")
    uems = uems or {}
    metric = DetectionErrorRate(collar=collar)
    per_file = {}
    with warnings.catch_warnings():
        # the fallback extent is documented above: the warning would repeat it once per file
        warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")
        for uri in sorted(references):
            hypothesis = hypotheses.get(uri, Annotation(uri=uri))
            details = metric(references[uri], hypothesis, uem=uems.get(uri), detailed=True)
            per_file[uri] = _as_floats(details)
    components = {name: float(metric.accumulated_[name]) for name in ("miss", "false alarm", "total")}
    return {
        "detection_error_rate": float(abs(metric)),
        "components": components,
        "per_file": per_file,
    }


def _as_floats(details: Mapping) -> dict:
    return {
        "detection_error_rate": float(details["detection error rate"]),
        "miss": float(details["miss"]),
        "false alarm": float(details["false alarm"]),
        "total": float(details["total"]),
    }


def format_table(results: dict) -> str:
    """Text table of :func:`detection_error_rate`'s results: one row per file, then the total (in %).

    The last column is the reference's duration, named by ``results["reference_label"]``
    ("speech" by default; "overlap" for overlapped speech detection).
    """
    width = max([len("TOTAL")] + [len(uri) for uri in results["per_file"]])
    reference_column = f"{results.get('reference_label', 'speech')} s"
    header = f"{'file':<{width}}  {'DER %':>7}  {'miss s':>8}  {'FA s':>8}  {reference_column:>9}"
    lines = [header, "-" * len(header)]

    def row(name: str, der: float, miss: float, false_alarm: float, total: float) -> str:
        return f"{name:<{width}}  {100 * der:7.2f}  {miss:8.2f}  {false_alarm:8.2f}  {total:9.2f}"

    for uri, values in results["per_file"].items():
        lines.append(row(uri, values["detection_error_rate"], values["miss"], values["false alarm"], values["total"]))
    components = results["components"]
    lines.append("-" * len(header))
    lines.append(row("TOTAL", results["detection_error_rate"], components["miss"], components["false alarm"],
                     components["total"]))
    return "\n".join(lines)
