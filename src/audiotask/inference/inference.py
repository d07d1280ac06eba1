"""Sliding-window inference: a trained model applied to a whole file.

The file is read once, cut into overlapping chunks of the model's duration, scored in
batches, and (FRAME models) overlap-added back onto the file's frame grid with
:mod:`audiotask.inference.aggregation`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch
from pyannote.core import SlidingWindow, SlidingWindowFeature

from audiotask.core.audio import AudioFile, audio_path, check_samples
from audiotask.core.frames import seconds_to_samples
from audiotask.core.model import Model
from audiotask.core.specifications import Resolution
from audiotask.inference.aggregation import chunk_starts, frame_weights, overlap_add


def default_step(duration: float, warm_up: Tuple[float, float] = (0.0, 0.0)) -> float:
    """Default hop between chunks, in seconds: 10 % of the chunk duration.

    With warm-up, the hop is also at most the chunk's warm-up-free centre
    (``duration - left - right``), so that every frame away from the file's edges is
    covered by at least one chunk centre and never depends on warm-up frames alone.
    """
    return min(0.1 * duration, duration - sum(warm_up))


def step_in_samples(step: float, *, sample_rate: int, hop_samples: Optional[int] = None, floor: bool = False) -> int:
    """``step`` seconds as a whole number of samples, and of frames when ``hop_samples`` is given.

    A FRAME model's chunks must start on its frame grid for their frames to line up, so the
    step becomes a multiple of ``hop_samples`` (nearest, or at most ``step`` with ``floor``),
    never less than one frame (or one sample).
    """
    unit = hop_samples or 1
    units = step * sample_rate / unit
    units = math.floor(units + 1e-9) if floor else round(units)
    return max(1, int(units)) * unit


def load_for_inference(path: Union[str, Path]):
    """The model saved at ``path``: an :class:`~audiotask.inference.onnx.OnnxModel` for an ONNX
    export, else :meth:`Model.from_pretrained`'s."""
    from audiotask.inference.onnx import OnnxModel, is_onnx_export

    return OnnxModel(path) if is_onnx_export(path) else Model.from_pretrained(path)


class Inference:
    """Apply a model to whole files with a sliding window.

    Parameters
    ----------
    model : Model, OnnxModel, or str / Path
        A model with specifications, or a folder / ``.ckpt`` for :meth:`Model.from_pretrained`,
        or a folder written by ``audiotask export`` (run by onnxruntime, see
        :class:`~audiotask.inference.onnx.OnnxModel`). The model is put in eval mode.
    step : float, optional
        Hop between chunks, in seconds (``0 < step <= duration``). Defaults to
        :func:`default_step`. For FRAME models it is rounded to a whole number of frames
        (a warning says so when a given step moves), because chunks must start on the frame grid.
    window : "hamming" or "uniform"
        Weighting of chunk frames in the overlap-add (FRAME models); warm-up frames are
        always down-weighted to nearly 0 (see :func:`~audiotask.inference.aggregation.frame_weights`).
    batch_size : int
        Chunks per forward pass.
    device : str or torch.device, optional
        Where to run the model; by default where its parameters already are.
    progress : bool
        Show a tqdm progress bar over batches.
    """

    def __init__(
        self,
        model: Union[Model, str, Path],
        *,
        step: Optional[float] = None,
        window: str = "hamming",
        batch_size: int = 32,
        device: Union[str, torch.device, None] = None,
        progress: bool = False,
    ):
        if isinstance(model, (str, Path)):
            model = load_for_inference(model)
        if batch_size < 1:
            raise ValueError(f"Inference: batch_size must be at least 1, got {batch_size}.")
        self.model = model.eval()
        if device is not None:
            self.model.to(torch.device(device))
        self.specifications = model.specifications
        self.duration = float(self.specifications.duration)
        self.sample_rate = model.sample_rate
        self.is_frame = self.specifications.resolution is Resolution.FRAME
        self.window = window
        self.batch_size = int(batch_size)
        self.progress = progress
        self.chunk_samples = seconds_to_samples(self.duration, self.sample_rate)
        self.step_samples = self._resolve_step(step)
        self.step = self.step_samples / self.sample_rate
        if self.is_frame:
            # fail now, not after the first file, on a bad window name
            frame_weights(1, frames=model.frames, duration=self.duration, window=window)

    def _resolve_step(self, step: Optional[float]) -> int:
        hop = self.model.frames.hop_samples if self.is_frame else None
        if step is None:
            return step_in_samples(
                default_step(self.duration, self.specifications.warm_up),
                sample_rate=self.sample_rate, hop_samples=hop, floor=True,
            )
        if not 0 < step <= self.duration:
            raise ValueError(f"Inference: step must be in (0, {self.duration}] seconds, got {step}.")
        samples = min(step_in_samples(step, sample_rate=self.sample_rate, hop_samples=hop), self.chunk_samples)
        if hop is not None and abs(samples - step * self.sample_rate) >= 1:
            warnings.warn(
                f"Inference: step {step} s is not a whole number of {hop / self.sample_rate} s frames; "
                f"using {samples / self.sample_rate} s so that chunks align with the frame grid."
            )
        return samples

    @property
    def device(self) -> torch.device:
        parameter = next(self.model.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    # ---- the three steps: cut, score, aggregate ------------------------------------
    def chunks(self, waveform: torch.Tensor) -> Tuple[torch.Tensor, np.ndarray]:
        """Cut a ``(channels, samples)`` waveform into ``(chunks, channels, chunk_samples)``.

        Returns the chunks (a strided view of the zero-padded waveform) and their start
        times in seconds, ``(chunks,)``; the last chunk ends at or after the waveform's end.
        """
        if waveform.ndim != 2:
            raise ValueError(f"Inference: waveform must be (channels, samples), got {tuple(waveform.shape)}.")
        num_samples = waveform.shape[-1]
        starts = chunk_starts(num_samples / self.sample_rate, duration=self.duration, step=self.step)
        # whole samples from the chunk index, so no float rounding can shift a chunk
        padded_length = (len(starts) - 1) * self.step_samples + self.chunk_samples
        padded = torch.nn.functional.pad(waveform, (0, max(0, padded_length - num_samples)))
        chunks = padded[:, :padded_length].unfold(-1, self.chunk_samples, self.step_samples)
        return chunks.transpose(0, 1), starts

    def score_chunks(self, chunks: torch.Tensor) -> np.ndarray:
        """Activated model outputs of ``(chunks, channels, samples)``, in batches.

        Returns ``(chunks, frames, classes)`` (FRAME) or ``(chunks, classes)`` (CHUNK) float32.
        """
        batches = range(0, len(chunks), self.batch_size)
        if self.progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="Inference", unit="batch")
        outputs = []
        with torch.inference_mode():
            for begin in batches:
                batch = chunks[begin : begin + self.batch_size].to(self.device).contiguous()
                scores = self.model.default_activation(self.model(batch))
                outputs.append(scores.float().cpu().numpy())
        return np.concatenate(outputs, axis=0)

    def slide(self, waveform: torch.Tensor) -> SlidingWindowFeature:
        """Scores of a ``(channels, samples)`` waveform at the model's sample rate.

        FRAME models: ``(frames, classes)`` on the file's frame grid (``model.num_frames``
        of the waveform, at least 1). CHUNK models: ``(chunks, classes)``, row ``c`` for the
        window ``[c * step, c * step + duration)``.
        """
        chunks, starts = self.chunks(waveform)
        scores = self.score_chunks(chunks)
        labels = self.specifications.classes
        if not self.is_frame:
            window = SlidingWindow(start=0.0, duration=self.duration, step=self.step)
            return SlidingWindowFeature(scores, window, labels=labels)
        frames = self.model.frames
        weights = frame_weights(
            scores.shape[1], frames=frames, duration=self.duration,
            warm_up=self.specifications.warm_up, window=self.window,
        )
        num_output_frames = max(1, self.model.num_frames(waveform.shape[-1]))
        data = overlap_add(scores, starts, frames=frames, weights=weights, num_output_frames=num_output_frames)
        return SlidingWindowFeature(data.astype(np.float32), frames.sliding_window(), labels=labels)

    def __call__(self, file: AudioFile) -> SlidingWindowFeature:
        """Scores of a whole file: a path, a protocol file with "audio", or an in-memory
        ``{"waveform": (channels, samples), "sample_rate": int}`` (resampled to the model's rate).

        ``AudioError`` naming the file when it has no sample, or a NaN or infinite one.
        """
        waveform, _ = self.model.audio(file)
        path = audio_path(file)
        check_samples(waveform, "in-memory waveform" if path is None else str(path))
        return self.slide(waveform)
