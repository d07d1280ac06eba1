"""Pictures of a sound event detector's output: log-mel spectrogram, per-class scores, events.

One figure per file, on one shared time axis, top to bottom: the log-mel spectrogram of the
audio (when given), one thin row of scores per class (with its decision threshold and the
detected events), then reference and detected events as bars.

Matplotlib runs with its non-interactive Agg backend (no display is needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from audiotask.core.frames import first_cell_start
from audiotask.protocols.uris import uri_of

Event = tuple[float, float, str]  # (onset, offset, label), in seconds
#: one threshold for every class, one per class (in ``scores.labels`` order) or per class name
Thresholds = Union[float, Sequence[float], Mapping[str, float]]

#: front end of the spectrogram panel: the models' own defaults (``models.features.LogMel``)
N_FFT, HOP_LENGTH, N_MELS = 1024, 256, 64
#: dynamic range of the spectrogram panel: quieter bins are drawn as silence
DYNAMIC_RANGE_DB = 80.0

SCORE_COLOR, REFERENCE_COLOR, DETECTED_COLOR, THRESHOLD_COLOR = "tab:green", "tab:blue", "tab:orange", "tab:red"


def _pyplot():
    import matplotlib

    # before pyplot is imported anywhere: no display on servers and CI
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_mel_of_file(audio: str | Path, *, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH, n_mels: int = N_MELS):
    """``(frames, n_mels)`` log-mel energies (natural log) of ``audio``, mono, at its own rate; and that rate.

    Frame ``i`` stands for ``[i, i + 1) * hop_length / sample_rate`` seconds, as the models'
    feature frames do (``models.features.log_mel_spectrogram`` keeps ``samples // hop_length``).
    """
    import soundfile
    import torch

    from audiotask.models.features import log_mel_spectrogram, mel_filterbank

    samples, sample_rate = soundfile.read(str(audio), dtype="float32", always_2d=True)
    waveform = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))[None]  # (1, samples)
    filterbank = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels))
    with torch.no_grad():
        energies = log_mel_spectrogram(waveform, filterbank, torch.hann_window(n_fft), n_fft=n_fft, hop_length=hop_length)
    return energies[0].numpy(), sample_rate


def class_thresholds(thresholds: Optional[Thresholds], classes: Sequence[str]) -> list[Optional[float]]:
    """One threshold (or None: no line) per class of ``classes``, from any form :data:`Thresholds` takes."""
    if thresholds is None:
        return [None] * len(classes)
    if isinstance(thresholds, Mapping):
        return [None if thresholds.get(name) is None else float(thresholds[name]) for name in classes]
    if np.ndim(thresholds) == 0:
        return [float(thresholds)] * len(classes)
    values = [float(value) for value in thresholds]
    if len(values) != len(classes):
        raise ValueError(f"{len(values)} thresholds for {len(classes)} classes ({', '.join(classes)})")
    return values


def _draw_spectrogram(axis, colorbar_axis, audio: str | Path) -> None:
    """Log-mel spectrogram of ``audio`` in dB, its y axis labelled in Hz at a few mel bands."""
    from audiotask.models.features import hz_to_mel

    energies, sample_rate = log_mel_of_file(audio)
    decibels = energies.T * (10.0 / np.log(10.0))  # natural log of power -> dB
    top = float(decibels.max()) if decibels.size else 0.0
    end = energies.shape[0] * HOP_LENGTH / sample_rate
    image = axis.imshow(
        decibels, aspect="auto", origin="lower", interpolation="nearest", cmap="magma",
        vmin=top - DYNAMIC_RANGE_DB, vmax=top, extent=(0.0, end, -0.5, N_MELS - 0.5),
    )
    axis.figure.colorbar(image, cax=colorbar_axis, label="dB")
    # band k is centred on the (k + 1)-th of n_mels + 2 points evenly spaced in mel from 0 Hz
    mel_step = hz_to_mel(sample_rate / 2) / (N_MELS + 1)
    ticks = [hz for hz in (500, 1000, 2000, 4000, 8000, 16000) if hz < sample_rate / 2]
    names = [f"{hz / 1000:g}k" if hz >= 1000 else str(hz) for hz in ticks]
    axis.set_yticks([hz_to_mel(hz) / mel_step - 1 for hz in ticks], names, fontsize=7)
    axis.set_ylim(-0.5, N_MELS - 0.5)
    axis.set_ylabel("Hz", fontsize=8)


def _draw_score_rows(axes, scores, thresholds: Sequence[Optional[float]], detections: Optional[Sequence[Event]]) -> None:
    """One row per class: its scores (0..1), its threshold as a dashed line, its detected events shaded."""
    window = scores.sliding_window
    data = np.asarray(scores.data, dtype=np.float32)
    times = first_cell_start(window) + (np.arange(len(data)) + 0.5) * window.step  # frame centres
    for index, (axis, name, threshold) in enumerate(zip(axes, scores.labels, thresholds)):
        axis.fill_between(times, data[:, index], color=SCORE_COLOR, alpha=0.2, linewidth=0)
        axis.plot(times, data[:, index], color=SCORE_COLOR, linewidth=1.0)
        for onset, offset, label in detections or ():
            if label == name:
                axis.axvspan(onset, offset, color=DETECTED_COLOR, alpha=0.25, linewidth=0)
        if threshold is not None:
            axis.axhline(threshold, color=THRESHOLD_COLOR, linestyle="--", linewidth=0.9)
        axis.set_ylim(0.0, 1.05)
        axis.set_yticks([])
        axis.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        axis.yaxis.set_label_coords(-0.005, 0.5)  # a horizontal label is otherwise set at the row's top
        # the threshold's value, read on the right where it meets the dashed line
        if threshold is not None:
            axis.yaxis.tick_right()
            axis.set_yticks([threshold], [f"{threshold:.2f}"], fontsize=6, color=THRESHOLD_COLOR)
            axis.tick_params(axis="y", length=2, pad=1)


def _draw_events(axis, events: Sequence[Event], classes: Sequence[str], *, low: float, height: float, color: str, label: str) -> None:
    """One horizontal bar per event, in its class's row (row ``i`` spans ``[i - 0.5, i + 0.5]``)."""
    row = {name: index for index, name in enumerate(classes)}
    for onset, offset, name in events:
        if name in row:
            axis.broken_barh([(onset, offset - onset)], (row[name] + low, height), color=color)
    axis.plot([], [], color=color, linewidth=6, label=label)  # legend entry even without events


def _draw_event_bars(axis, reference, detections, classes: Sequence[str], *, thresholds: bool) -> None:
    """Reference (and detected) events, one row per class, with the legend of the whole figure."""
    if detections is None:
        _draw_events(axis, reference, classes, low=-0.4, height=0.8, color=REFERENCE_COLOR, label="reference")
    else:  # reference in the upper half of each row, detections in the lower half
        _draw_events(axis, reference, classes, low=-0.05, height=0.45, color=REFERENCE_COLOR, label="reference")
        _draw_events(axis, detections, classes, low=-0.4, height=0.3, color=DETECTED_COLOR, label="detected")
    axis.plot([], [], color=SCORE_COLOR, linewidth=1.0, label="score")
    if thresholds:
        axis.plot([], [], color=THRESHOLD_COLOR, linestyle="--", linewidth=0.9, label="threshold")
    axis.set_yticks(range(len(classes)), classes, fontsize=7)
    axis.set_ylim(len(classes) - 0.5, -0.5)  # first class on top, as in the score rows
    axis.grid(axis="y", linewidth=0.3)
    axis.set_xlabel("time (s)")
    # outside every panel, where it hides neither the time axis nor an event
    axis.figure.legend(loc="outside upper right", fontsize=8, ncol=4, frameon=False)


def scores_figure(
    scores,
    reference: Sequence[Event],
    *,
    detections: Optional[Sequence[Event]] = None,
    title: str = "",
    audio: str | Path | None = None,
    thresholds: Optional[Thresholds] = None,
):
    """The matplotlib figure :func:`plot_scores` saves (parameters as there); close it when done.

    Its axes, in ``figure.axes`` order: the spectrogram (only with ``audio``), one score row
    per class, the event bars, the spectrogram's colour bar (only with ``audio``):
    ``num_classes + 3`` axes with audio, ``num_classes + 1`` without.
    """
    plt = _pyplot()
    classes = list(scores.labels)
    values = class_thresholds(thresholds, classes)
    window = scores.sliding_window
    start = first_cell_start(window)
    end = start + len(scores.data) * window.step
    # inches of each band: a spectrogram, thin score rows, event rows; the figure is about 11 x 8 in
    spectrogram_height = 2.0 if audio is not None else 0.0
    row_height = min(0.6, 3.4 / max(1, len(classes)))
    bars_height = max(0.9, 0.2 * len(classes))
    heights = ([spectrogram_height] if audio is not None else []) + [row_height] * len(classes) + [bars_height]
    figure = plt.figure(figsize=(11, sum(heights) + 1.3), constrained_layout=True)
    figure.get_layout_engine().set(h_pad=0.01, hspace=0.0)
    # a narrow right column holds the colour bar, so that every panel keeps the same time axis
    grid = figure.add_gridspec(len(heights), 2, height_ratios=heights, width_ratios=(80, 1))
    first = figure.add_subplot(grid[0, 0])
    panels = [first] + [figure.add_subplot(grid[row, 0], sharex=first) for row in range(1, len(heights))]
    if audio is not None:
        _draw_spectrogram(panels[0], figure.add_subplot(grid[0, 1]), audio)
    _draw_score_rows(panels[len(heights) - len(classes) - 1 : -1], scores, values, detections)
    _draw_event_bars(panels[-1], reference, detections, classes, thresholds=any(v is not None for v in values))
    for panel in panels[:-1]:
        panel.tick_params(axis="x", labelbottom=False)
    panels[-1].set_xlim(start, end)
    panels[0].set_title(title or "scores")
    return figure


def plot_scores(path: str | Path, scores, reference: Sequence[Event], **options) -> Path:
    """Save one PNG: log-mel spectrogram (with ``audio``), class scores, reference (and detected) events.

    Parameters
    ----------
    path : str or Path
        PNG file to write.
    scores : pyannote.core.SlidingWindowFeature
        ``(frames, classes)`` scores in [0, 1]; ``scores.labels`` name the classes.
    reference : list of (onset, offset, label)
        Reference events, in seconds.
    **options
        Keywords of :func:`scores_figure`:
    detections : list of (onset, offset, label), optional
        Detected events: shaded in their class's score row and drawn below the reference ones.
    title : str
    audio : str or Path, optional
        Audio file the scores are of: its log-mel spectrogram (mono, at its own rate, FFT of
        1024 samples, hop of 256, 64 mel bands) is drawn on top. Left out when not given.
    thresholds : float, sequence of floats or mapping of class name to float, optional
        Decision threshold of every class, of each class (in ``scores.labels`` order) or of
        the named classes (e.g. those tuned per class), drawn as a dashed line in its row.
    """
    figure = scores_figure(scores, reference, **options)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, dpi=80)
    finally:
        _pyplot().close(figure)
    return path


def plot_files(
    folder: str | Path,
    scores_by_file: Mapping[str, object],
    reference_by_file: Mapping[str, Sequence[Event]],
    *,
    detections_by_file: Optional[Mapping[str, Sequence[Event]]] = None,
    limit: Optional[int] = None,
    audio_by_file: Optional[Mapping[str, str | Path]] = None,
    thresholds: Optional[Thresholds] = None,
) -> list[Path]:
    """One :func:`plot_scores` PNG per file (the first ``limit`` in name order), named after it.

    ``audio_by_file`` maps a file name (a key of ``scores_by_file``) to its audio: files
    without one get no spectrogram. ``thresholds`` are the same for every file.
    """
    paths = []
    for name in sorted(scores_by_file)[:limit]:
        detections = None if detections_by_file is None else detections_by_file.get(name, [])
        audio = None if audio_by_file is None else audio_by_file.get(name)
        paths.append(plot_scores(
            Path(folder) / f"{uri_of(name)}.png", scores_by_file[name], reference_by_file.get(name, []),
            detections=detections, title=name, audio=audio, thresholds=thresholds,
        ))
    return paths
