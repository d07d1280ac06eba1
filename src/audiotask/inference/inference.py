"""Sliding-window inference: a trained model applied to a whole file.

The file is read once, cut into overlapping chunks of the model's duration, scored in
batches, and (FRAME models) overlap-added back onto the file's frame grid with
:mod:`audiotask.inference.aggregation`.

Overlapping chunks share most of their samples. A model that splits into an encoder that
is the same at every time shift and a decoder (``Model.encode`` / ``Model.decode``, e.g.
the CRNN's log-mel and convolutions, then its GRU) has its encoder run once over the file,
in blocks, and only its decoder run on each window of encoded frames: with the default
10x overlap that is most of the work done once instead of ten times. A window's encoded
frames then equal those of the chunk alone except ``model.encoder_context`` frames at each
edge, where the file's real neighbouring samples replace the chunk's zero padding.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple, Union

import numpy as np
import torch
from pyannote.core import SlidingWindow, SlidingWindowFeature

from audiotask.core.audio import AudioFile, audio_path, check_samples
from audiotask.core.frames import seconds_to_samples, whole_steps
from audiotask.core.specifications import Resolution
from audiotask.inference.aggregation import chunk_starts, frame_weights, overlap_add

if TYPE_CHECKING:
    from audiotask.core.model import Model
    from audiotask.inference.onnx import OnnxModel


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
    units = whole_steps(step * sample_rate, unit) if floor else round(step * sample_rate / unit)
    return max(1, int(units)) * unit


#: seconds of audio encoded at once when a file is encoded whole (see ``Model.encode``):
#: bounds the memory of long files, at no cost in speed (encoder frames are exact across blocks)
ENCODER_BLOCK_SECONDS = 10.0


def shares_encoder(model) -> bool:
    """Whether ``model`` splits into ``encode`` / ``decode`` (``Model.encoder_context`` set)."""
    return getattr(model, "encoder_context", None) is not None and getattr(model, "frame_hop", None) is not None


def load_for_inference(path: Union[str, Path]):
    """The model saved at ``path``: an :class:`~audiotask.inference.onnx.OnnxModel` for an ONNX
    export, else :meth:`Model.from_pretrained`'s."""
    from audiotask.inference.onnx import OnnxModel, is_onnx_export

    if is_onnx_export(path):
        return OnnxModel(path)
    # imported here: an export's inference does without the model classes and Lightning
    from audiotask.core.model import Model

    return Model.from_pretrained(path)


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
    shared_encoder : bool, optional
        Encode each file once and decode windows of its encoded frames (see the module's
        docstring); by default whenever the model splits into ``encode`` / ``decode`` and
        the step is a whole number of its frames (always for FRAME models; a CHUNK model's
        step is not rounded). False: every chunk goes through the whole model, as in training.
    """

    def __init__(
        self,
        model: Union["Model", "OnnxModel", str, Path],
        *,
        step: Optional[float] = None,
        window: str = "hamming",
        batch_size: int = 32,
        device: Union[str, torch.device, None] = None,
        progress: bool = False,
        shared_encoder: Optional[bool] = None,
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
        if shared_encoder and not shares_encoder(model):
            raise ValueError(f"Inference: {type(model).__name__} does not split into encode / decode (shared_encoder).")
        self.chunk_samples = seconds_to_samples(self.duration, self.sample_rate)
        self.step_samples = self._resolve_step(step)
        # windows of encoded frames start on the frame grid: a CHUNK model's step may not
        on_grid = shares_encoder(model) and self.step_samples % model.frame_hop == 0
        if shared_encoder and not on_grid:
            raise ValueError(f"Inference: shared_encoder needs a step of whole {model.frame_hop}-sample frames, "
                             f"got {self.step_samples} samples.")
        self.shared_encoder = on_grid if shared_encoder is None else bool(shared_encoder)
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
        starts = self.chunk_starts(waveform)
        chunks = self.pad(waveform, len(starts)).unfold(-1, self.chunk_samples, self.step_samples)
        return chunks.transpose(0, 1), starts

    def chunk_starts(self, waveform: torch.Tensor) -> np.ndarray:
        """Start times (seconds) of the chunks of a ``(channels, samples)`` waveform, the last
        one ending at or after its end."""
        if waveform.ndim != 2:
            raise ValueError(f"Inference: waveform must be (channels, samples), got {tuple(waveform.shape)}.")
        return chunk_starts(waveform.shape[-1] / self.sample_rate, duration=self.duration, step=self.step)

    def span(self, num_chunks: int) -> int:
        """Samples from the first chunk's start to the last one's end: whole samples from the
        chunk index, so that no float rounding can shift a chunk."""
        return (num_chunks - 1) * self.step_samples + self.chunk_samples

    def pad(self, waveform: torch.Tensor, num_chunks: int) -> torch.Tensor:
        """``waveform`` zero-padded (or cut) to the :meth:`span` of ``num_chunks`` chunks."""
        padded_length = self.span(num_chunks)
        padded = torch.nn.functional.pad(waveform, (0, max(0, padded_length - waveform.shape[-1])))
        return padded[:, :padded_length]

    def score_chunks(self, chunks: torch.Tensor) -> np.ndarray:
        """Activated model outputs of ``(chunks, channels, samples)``, in batches.

        Returns ``(chunks, frames, classes)`` (FRAME) or ``(chunks, classes)`` (CHUNK) float32.
        """
        return self._score(chunks, self.model)

    def _score(self, inputs: torch.Tensor, forward) -> np.ndarray:
        """``model.default_activation(forward(batch))`` over ``inputs`` in batches, as numpy."""
        batches = range(0, len(inputs), self.batch_size)
        if self.progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="Inference", unit="batch")
        outputs = []
        with torch.inference_mode():
            for begin in batches:
                batch = inputs[begin : begin + self.batch_size].to(self.device).contiguous()
                scores = self.model.default_activation(forward(batch))
                outputs.append(scores.float().cpu().numpy())
        return np.concatenate(outputs, axis=0)

    def encode(self, waveform: torch.Tensor, num_samples: Optional[int] = None) -> torch.Tensor:
        """Encoded frames ``(model.num_frames(num_samples), features)`` of a ``(channels, samples)``
        waveform zero-padded to ``num_samples`` (default: its length).

        Computed in blocks of :data:`ENCODER_BLOCK_SECONDS`, each read with
        ``model.encoder_context`` frames of its neighbours on both sides: the same frames as
        one ``model.encode`` of the whole padded waveform, in memory bounded by the block,
        and the padding is never materialised.
        """
        hop, context = self.model.frame_hop, self.model.encoder_context
        num_samples = waveform.shape[-1] if num_samples is None else max(num_samples, waveform.shape[-1])
        num_frames = num_samples // hop
        block = max(1, seconds_to_samples(ENCODER_BLOCK_SECONDS, self.sample_rate) // hop)
        encoded = []
        with torch.inference_mode():
            for first in range(0, max(num_frames, 1), block):
                last = min(first + block, num_frames)
                begin, end = max(0, first - context), min(num_frames, last + context)
                # the last block keeps the samples after the last whole frame, as the whole waveform would
                begin_sample, end_sample = begin * hop, num_samples if end == num_frames else end * hop
                samples = waveform[:, begin_sample:end_sample]
                samples = torch.nn.functional.pad(samples, (0, end_sample - begin_sample - samples.shape[-1]))
                features = self.model.encode(samples.unsqueeze(0).to(self.device))[0]
                encoded.append(features[first - begin : last - begin])
        return torch.cat(encoded)

    def score_windows(self, features: torch.Tensor, num_chunks: int) -> np.ndarray:
        """Activated decoder outputs of the ``num_chunks`` windows of encoded ``features``
        (``(frames, features)``, window ``c`` starting at frame ``c * step``), in batches;
        as :meth:`score_chunks`."""
        window_frames = self.model.num_frames(self.chunk_samples)
        step_frames = self.step_samples // self.model.frame_hop
        windows = features.unfold(0, window_frames, step_frames).transpose(1, 2)[:num_chunks]
        return self._score(windows, self.model.decode)

    def chunk_scores(self, waveform: torch.Tensor) -> Tuple[np.ndarray, np.ndarray]:
        """``(scores of each chunk on its own, (chunks,) start times in seconds)`` of a
        ``(channels, samples)`` waveform: what :meth:`slide` overlap-adds (the diarization
        pipeline reads them as they are). With a shared encoder, the file is encoded once."""
        if self.shared_encoder:
            starts = self.chunk_starts(waveform)
            return self.score_windows(self.encode(waveform, self.span(len(starts))), len(starts)), starts
        chunks, starts = self.chunks(waveform)
        return self.score_chunks(chunks), starts

    def slide(self, waveform: torch.Tensor) -> SlidingWindowFeature:
        """Scores of a ``(channels, samples)`` waveform at the model's sample rate.

        FRAME models: ``(frames, classes)`` on the file's frame grid (``model.num_frames``
        of the waveform, at least 1). CHUNK models: ``(chunks, classes)``, row ``c`` for the
        window ``[c * step, c * step + duration)``.
        """
        scores, starts = self.chunk_scores(waveform)
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

    def stream(self, sample_rate: Optional[int] = None):
        """A :class:`~audiotask.inference.streaming.Stream` that scores audio pushed in blocks
        (at ``sample_rate``, default the model's) as this object scores whole files."""
        from audiotask.inference.streaming import Stream

        return Stream(self, sample_rate)

    def __call__(self, file: AudioFile) -> SlidingWindowFeature:
        """Scores of a whole file: a path, a protocol file with "audio", or an in-memory
        ``{"waveform": (channels, samples), "sample_rate": int}`` (resampled to the model's rate).

        ``AudioError`` naming the file when it has no sample, or a NaN or infinite one.
        """
        waveform, _ = self.model.audio(file)
        path = audio_path(file)
        check_samples(waveform, "in-memory waveform" if path is None else str(path))
        return self.slide(waveform)
