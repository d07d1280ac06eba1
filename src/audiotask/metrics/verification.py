"""Speaker verification: trials, equal error rate and minimum detection cost.

A trial asks whether two recordings (enrolment, test) hold the same speaker; a system
answers with a score, higher meaning "more likely the same". Its errors are misses (a target
trial scored below the threshold) and false alarms (a non-target trial scored at or above
it). The ROC comes from ``pyannote.metrics.binary_classification.det_curve``; the equal
error rate is read from it here because ``det_curve``'s own estimate averages the two
operating points around the crossing (it gives 0.25 for a perfect scorer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np

from audiotask.protocols.uris import strip_audio_extension

#: what a trial list line may start with, and whether it means a target trial
TRIAL_KEYS = {"1": True, "0": False, "target": True, "nontarget": False}

def _operating_points(scores, is_target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(false alarm rates, miss rates, thresholds)``, from the strictest threshold (+inf:
    nothing accepted) to the loosest (every trial accepted)."""
    from pyannote.metrics.binary_classification import det_curve

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_target = np.asarray(is_target, dtype=bool).reshape(-1)
    if len(scores) != len(is_target):
        raise ValueError(f"{len(scores)} scores for {len(is_target)} trials.")
    if not np.isfinite(scores).all():
        raise ValueError("verification scores must be finite.")
    if is_target.all() or not is_target.any():
        raise ValueError(
            f"verification needs target and non-target trials, got {int(is_target.sum())} target(s) "
            f"among {len(is_target)} trials."
        )
    false_alarms, misses, thresholds, _ = det_curve(is_target, scores)
    return false_alarms, misses, thresholds


def equal_error_rate(scores: Sequence[float], is_target: Sequence[bool]) -> tuple[float, float]:
    """Equal error rate and its threshold.

    The miss rate falls and the false alarm rate rises as the threshold goes down; the EER
    is where they cross, interpolated linearly between the two operating points around the
    crossing. A perfect scorer gives 0, a random one about 0.5, a reversed one 1.

    Parameters
    ----------
    scores : (trials,) float
        Higher means "same speaker" (e.g. a cosine similarity).
    is_target : (trials,) bool
        Whether each trial is a target (same speaker) trial.

    Returns
    -------
    eer : float
        In [0, 1].
    threshold : float
        Accept a trial when its score is at or above it, at the EER operating point.
    """
    false_alarms, misses, thresholds = _operating_points(scores, is_target)
    gap = misses - false_alarms  # +1 at the strictest threshold, -1 at the loosest: it crosses 0
    after = int(np.argmax(gap <= 0))
    if gap[after] == 0:
        return float(false_alarms[after]), float(thresholds[after])
    before = after - 1
    weight = gap[before] / (gap[before] - gap[after])
    eer = false_alarms[before] + weight * (false_alarms[after] - false_alarms[before])
    # the strictest point has an infinite threshold: the crossing then lies at the next one
    low, high = thresholds[after], thresholds[before]
    threshold = low if not np.isfinite(high) else high + weight * (low - high)
    return float(eer), float(threshold)


def min_dcf(
    scores: Sequence[float], is_target: Sequence[bool], *, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> float:
    """Normalised minimum detection cost, as NIST's speaker recognition evaluations define it.

    ``DCF(t) = c_miss * p_target * P_miss(t) + c_fa * (1 - p_target) * P_fa(t)``, divided by
    the cost of the best system that looks at no trial, ``min(c_miss * p_target, c_fa * (1 -
    p_target))``; the minimum over all thresholds (accepting nothing and everything included).
    0 for a perfect scorer; 1 for one no better than always deciding alike. VoxCeleb's
    challenge reports it with ``p_target=0.01`` (0.05 in its 2020 edition), unit costs.

    Parameters
    ----------
    scores : (trials,) float
        Higher means "same speaker".
    is_target : (trials,) bool
    p_target : float
        Prior probability of a target trial, in (0, 1).
    c_miss, c_fa : float
        Costs of a miss and of a false alarm (positive).
    """
    if not 0 < p_target < 1 or c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"min_dcf: p_target must be in (0, 1) and the costs positive, got p_target={p_target}, "
                         f"c_miss={c_miss}, c_fa={c_fa}.")
    false_alarms, misses, _ = _operating_points(scores, is_target)
    costs = c_miss * p_target * misses + c_fa * (1.0 - p_target) * false_alarms
    return float(costs.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


# ---- trial lists ---------------------------------------------------------------------------
class Trials(list):
    """``[(is_target, enrolment, test)]`` read from a trial list, with the line each came from
    (``lines``) and the list's ``path``, so that errors can point at them."""

    def __init__(self, trials=(), *, lines: Sequence[int] = (), path: str = "trials"):
        super().__init__(trials)
        self.lines = list(lines) or list(range(1, len(self) + 1))
        self.path = str(path)


def read_trials(path: Union[str, Path]) -> Trials:
    """Read a trial list: one trial per line, ``KEY enrolment test``.

    ``KEY`` is ``1`` / ``0`` (VoxCeleb's ``veri_test.txt``) or ``target`` / ``nontarget``
    (NIST's keys); names are kept as written (e.g. ``id10270/5r0dWxy17C8/00001.wav``).
    Blank lines and lines starting with ``#`` are skipped. ValueError naming the file and
    line for any other line.
    """
    path = Path(path)
    trials, lines = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 3 or fields[0].lower() not in TRIAL_KEYS:
                raise ValueError(
                    f"{path}, line {number}: expected 'KEY enrolment test' with KEY 1, 0, target or nontarget, "
                    f"got {line.strip()!r}."
                )
            trials.append((TRIAL_KEYS[fields[0].lower()], fields[1], fields[2]))
            lines.append(number)
    if not trials:
        raise ValueError(f"{path}: no trial in the file.")
    return Trials(trials, lines=lines, path=str(path))


def _name_lookup(embeddings: Mapping[str, np.ndarray]):
    """A function from a trial's name to the key of its embedding (None when absent),
    matching names with or without audio extension."""
    stripped = {strip_audio_extension(key): key for key in embeddings}

    def lookup(name: str):
        if name in embeddings:
            return name
        return stripped.get(strip_audio_extension(name))

    return lookup


def cosine_scores(enrolment: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(trials,) cosine similarity of matching rows of two (trials, dimension) arrays."""
    enrolment = np.asarray(enrolment, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    norms = np.linalg.norm(enrolment, axis=1) * np.linalg.norm(test, axis=1)
    return np.einsum("td,td->t", enrolment, test) / np.maximum(norms, 1e-12)


def verification_report(
    embeddings: Mapping[str, np.ndarray], trials: Sequence[tuple[bool, str, str]], *, source: str = "trials",
    p_target: float = 0.01,
) -> dict:
    """Score ``trials`` by the cosine similarity of their embeddings; EER and minDCF.

    Parameters
    ----------
    embeddings : {name: (dimension,) array}
        One embedding per recording; a trial's names match with or without audio extension.
    trials : [(is_target, enrolment, test)]
        E.g. from :func:`read_trials` (whose line numbers then appear in errors).
    source : str
        What the trials were read from, named in errors (a :class:`Trials`' own path wins
        when ``source`` is left as is).
    p_target : float
        Target prior of the minimum detection cost (see :func:`min_dcf`).

    Returns
    -------
    dict
        ``eer``, ``eer_threshold``, ``min_dcf``, ``p_target``, ``trials``, ``targets``.

    ValueError naming the trial list, the line and the name when a trial names a recording
    without embedding.
    """
    if source == "trials" and isinstance(trials, Trials):
        source = trials.path
    lines = trials.lines if isinstance(trials, Trials) else range(1, len(trials) + 1)
    lookup = _name_lookup(embeddings)
    targets, enrolment, test = [], [], []
    for line, (is_target, first, second) in zip(lines, trials):
        keys = [lookup(name) for name in (first, second)]
        for name, key in zip((first, second), keys):
            if key is None:
                raise ValueError(f"{source}, line {line}: no embedding for {name!r} (trial {first} {second}).")
        targets.append(bool(is_target))
        enrolment.append(embeddings[keys[0]])
        test.append(embeddings[keys[1]])
    if not targets:
        raise ValueError(f"{source}: no trial to score.")
    scores = cosine_scores(np.stack(enrolment), np.stack(test))
    eer, threshold = equal_error_rate(scores, targets)
    return {
        "eer": eer, "eer_threshold": threshold, "min_dcf": min_dcf(scores, targets, p_target=p_target),
        "p_target": p_target, "trials": len(targets), "targets": int(np.sum(targets)),
    }


def format_verification(report: Mapping) -> str:
    """One line: ``EER 3.20 % (threshold 0.412), minDCF 0.341 (p_target 0.01); 37720 trials, 18860 target``."""
    return (
        f"EER {100 * report['eer']:.2f} % (threshold {report['eer_threshold']:.3f}), "
        f"minDCF {report['min_dcf']:.3f} (p_target {report['p_target']:g}); "
        f"{report['trials']} trials, {report['targets']} target"
    )
