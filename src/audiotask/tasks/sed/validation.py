"""Validation by the score that counts for sound event detection: PSDS on the development set.

Validation loss says little about detection: the checkpoint a sound event detector keeps is
chosen, as in DCASE's baseline, by a detection score over the development set. Each
validation chunk is scored as its own clip (a DCASE development file is one ten-second
chunk); its reference events are the annotation segments inside it, exactly, from the
prepared metadata.
"""

from __future__ import annotations

from typing import Optional

import warnings

import numpy as np

from audiotask.metrics.events import merge_connected

#: what validation can select checkpoints by: DCASE's two PSDS scenarios
SELECTION_SCORES = ("psds1", "psds2")


class DetectionScores:
    """Frame scores of the validation chunks of one epoch, by network ("student", "teacher").

    Parameters
    ----------
    chunks : (chunks, 2) float array
        ``[file, start]`` of every validation chunk, in validation order. Under DDP a rank
        scores its share of them; :meth:`gather` then gives every rank every share, so that
        PSDS is that of the whole development set, as one process computes it.
    duration : float
        Chunk duration, in seconds.
    """

    def __init__(self, chunks: np.ndarray, duration: float):
        self.all_chunks, self.duration = np.asarray(chunks).reshape(-1, 2), float(duration)
        self._reference: Optional[tuple[bytes, tuple]] = None  # (chunks' bytes, reference): the same every epoch
        self.reset()

    def reset(self) -> None:
        self.scores: dict[str, dict[int, np.ndarray]] = {}

    def add(self, network: str, scores: np.ndarray, indices: np.ndarray) -> None:
        """Scores (batch, frames, classes) in [0, 1] of the validation chunks ``indices`` (batch,)."""
        table = self.scores.setdefault(network, {})
        for index, clip in zip(np.asarray(indices).tolist(), np.asarray(scores, dtype=np.float32)):
            table[int(index)] = clip  # a chunk seen twice (a padded distributed share) counts once

    def gather(self, reduce, device=None) -> None:
        """Every process's scores in every process (``reduce``: the strategy's sum over them;
        every process holds at least one chunk, a distributed split padding the shares)."""
        from audiotask.engine.validation_chunks import summed_over_ranks

        for network in sorted(self.scores):
            rows = self.scores[network]
            shape = next(iter(rows.values())).shape
            table, seen = summed_over_ranks(rows, len(self.all_chunks), shape, reduce=reduce, device=device)
            table, seen = table.cpu().numpy(), seen.cpu().numpy()
            self.scores[network] = {int(index): table[index] / seen[index] for index in np.flatnonzero(seen > 0)}

    @property
    def chunks(self) -> np.ndarray:
        """``[file, start]`` of the chunks scored so far, in validation order (under DDP, this
        rank's share)."""
        seen = sorted(next(iter(self.scores.values()), {}))
        return self.all_chunks[seen]

    def reference(self, task) -> tuple[dict[str, list], dict[str, float]]:
        """``({chunk name: [(onset, offset, class)]}, {chunk name: duration})`` of the chunks
        (built once: every validation scores the same chunks)."""
        key = self.chunks.tobytes()
        if self._reference is None or self._reference[0] != key:
            self._reference = (key, self._build_reference(task))
        return self._reference[1]

    def _build_reference(self, task) -> tuple[dict[str, list], dict[str, float]]:
        segments = task.chunk_segments("development", self.chunks[:, 0].astype(np.int64), self.chunks[:, 1],
                                       self.duration)
        chunk, starts, ends, classes = segments.class_segments()
        names = self.names()
        reference: dict[str, list] = {name: [] for name in names}
        labels = segments.classes
        for row, start, end, k in zip(chunk.tolist(), starts.tolist(), ends.tolist(), classes.tolist()):
            reference[names[row]].append((max(0.0, start), end, labels[k]))
        # overlapping events of one class are one stretch of activity (as frame targets have it)
        reference = {name: merge_connected(events) for name, events in reference.items()}
        # the annotated part of each chunk (a chunk past its region's end is zero-padded)
        seconds = dict(zip(names, np.minimum(np.asarray(segments.annotated, dtype=np.float64), self.duration).tolist()))
        return reference, seconds

    def names(self) -> list[str]:
        return [f"{int(file)}@{start:.3f}" for file, start in self.chunks]

    def psds(self, task, network: str, *, scenario: int = 1) -> Optional[float]:
        """PSDS of ``network``'s scores on the chunks (None without scores, or without a
        reference event to detect)."""
        import pandas as pd

        from audiotask.metrics.psds import psds_of_frames

        table = self.scores.get(network)
        if not table:
            return None
        scores = np.stack([table[index] for index in sorted(table)])
        reference, seconds = self.reference(task)
        if not any(reference.values()):
            return None
        frames = task.model.frames
        num_frames = scores.shape[1]
        edges = frames.start + frames.step * np.arange(num_frames + 1)
        onsets, offsets = np.maximum(edges[:-1], 0.0), edges[1:]
        classes = list(task.specifications.classes)
        tables = {}
        for name, clip in zip(self.names(), scores):
            keep = onsets < seconds[name]  # frames past the annotated part are no one's
            table = pd.DataFrame(clip[keep], columns=classes)
            table.insert(0, "offset", np.minimum(offsets[keep], seconds[name]))
            table.insert(0, "onset", onsets[keep])
            tables[name] = table
        with warnings.catch_warnings():
            # classes without development events are the data's business, said once by the task's report
            warnings.filterwarnings("ignore", message="classes without ground truth events")
            return psds_of_frames(tables, reference, seconds, scenario)["psds"]
