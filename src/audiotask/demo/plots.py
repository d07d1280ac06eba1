"""Pictures of a sound event detector's output: per-class scores over reference events.

Matplotlib runs with its non-interactive Agg backend (no display is needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from audiotask.protocols.uris import uri_of

Event = tuple[float, float, str]  # (onset, offset, label), in seconds


def _pyplot():
    import matplotlib

    # before pyplot is imported anywhere: no display on servers and CI
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_events(axis, events: Sequence[Event], classes: Sequence[str], *, low: float, height: float, color: str, label: str) -> None:
    """One horizontal bar per event, in its class's row (row ``i`` spans ``[i - 0.5, i + 0.5]``)."""
    row = {name: index for index, name in enumerate(classes)}
    for onset, offset, name in events:
        if name in row:
            axis.broken_barh([(onset, offset - onset)], (row[name] + low, height), color=color)
    axis.plot([], [], color=color, linewidth=6, label=label)  # legend entry even without events


def plot_scores(
    path: str | Path,
    scores,
    reference: Sequence[Event],
    *,
    detections: Optional[Sequence[Event]] = None,
    title: str = "",
) -> Path:
    """Save one PNG: class scores over time (top), reference (and detected) events (bottom).

    Parameters
    ----------
    path : str or Path
        PNG file to write.
    scores : pyannote.core.SlidingWindowFeature
        ``(frames, classes)`` scores in [0, 1]; ``scores.labels`` name the classes.
    reference : list of (onset, offset, label)
        Reference events, in seconds.
    detections : list of (onset, offset, label), optional
        Detected events, drawn below the reference ones.
    title : str
    """
    plt = _pyplot()
    classes = list(scores.labels)
    data = np.asarray(scores.data, dtype=np.float32)
    window = scores.sliding_window
    start = window.start + (window.duration - window.step) / 2  # left edge of frame 0's share
    end = start + len(data) * window.step
    # a narrow right column holds the colour bar, so that both panels keep the same time axis
    figure, ((top, bar), (bottom, blank)) = plt.subplots(
        2, 2, figsize=(10, 6.5), sharex="col", width_ratios=(60, 1), constrained_layout=True
    )
    blank.axis("off")
    image = top.imshow(
        data.T, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis",
        vmin=0.0, vmax=1.0, extent=(start, end, -0.5, len(classes) - 0.5),
    )
    figure.colorbar(image, cax=bar, label="score")
    top.set_title(title or "scores")
    for axis in (top, bottom):
        axis.set_yticks(range(len(classes)), classes, fontsize=8)
        axis.set_ylim(-0.5, len(classes) - 0.5)
    if detections is None:
        _draw_events(bottom, reference, classes, low=-0.4, height=0.8, color="tab:blue", label="reference")
    else:  # reference in the upper half of each row, detections in the lower half
        _draw_events(bottom, reference, classes, low=-0.05, height=0.45, color="tab:blue", label="reference")
        _draw_events(bottom, detections, classes, low=-0.4, height=0.3, color="tab:orange", label="detected")
    bottom.grid(axis="y", linewidth=0.3)
    bottom.set_xlim(start, end)
    bottom.set_xlabel("time (s)")
    bottom.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncol=2, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def plot_files(
    folder: str | Path,
    scores_by_file: Mapping[str, object],
    reference_by_file: Mapping[str, Sequence[Event]],
    *,
    detections_by_file: Optional[Mapping[str, Sequence[Event]]] = None,
    limit: Optional[int] = None,
) -> list[Path]:
    """One :func:`plot_scores` PNG per file (the first ``limit`` in name order), named after it."""
    paths = []
    for name in sorted(scores_by_file)[:limit]:
        detections = None if detections_by_file is None else detections_by_file.get(name, [])
        paths.append(plot_scores(
            Path(folder) / f"{uri_of(name)}.png", scores_by_file[name], reference_by_file.get(name, []),
            detections=detections, title=name,
        ))
    return paths
