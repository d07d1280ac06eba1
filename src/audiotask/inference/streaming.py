"""Streaming inference: scores of audio that arrives in blocks (a microphone, a network).

A :class:`Stream` (from :meth:`Inference.stream <audiotask.inference.inference.Inference.stream>`)
takes blocks of any size with :meth:`Stream.push` and returns the scores that became final;
:meth:`Stream.close` ends the stream and returns the rest. It runs the windows offline
inference runs, at the same places, on the same samples: a window is scored as soon as its
audio (and, for a model that encodes frames once, the encoder's right context) has arrived,
and a frame's score is final once the last window covering it is scored. Concatenated,
the pieces equal :class:`~audiotask.inference.inference.Inference`'s scores of the whole
recording (within float rounding: the encoder runs on other block boundaries), edges included.

That equality has a price, the latency: a frame's score comes out when the last window
covering it has been scored, at most :attr:`Stream.latency` seconds of audio after the frame
ends (about one window: 5 s for a 5-s model), plus the wait for the block that completes it.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
from pyannote.core import SlidingWindow, SlidingWindowFeature

from audiotask.core.audio import AudioError, refuse_nonfinite
from audiotask.core.frames import seconds_to_samples
from audiotask.inference.aggregation import chunk_starts, frame_weights

ArrayLike = Union[np.ndarray, torch.Tensor]


class Stream:
    """Incremental sliding-window inference over one recording.

    Parameters
    ----------
    inference : Inference
        Model, step, window and batch size to use (its settings, unchanged).
    sample_rate : int, optional
        Rate of the pushed samples; resampled (soxr, streaming) to the model's when it
        differs. Default: the model's.

    Pushed blocks are ``(channels, samples)`` or ``(samples,)`` float arrays; channels are
    averaged, as files are. Each call returns a ``SlidingWindowFeature`` (possibly of 0
    rows) on the offline frame grid: FRAME models, the frames that became final; CHUNK
    models, the windows scored (row ``c``: window ``[c * step, c * step + duration)``).
    """

    def __init__(self, inference, sample_rate: Optional[int] = None):
        self.inference = inference
        self.model = inference.model
        self.sample_rate = inference.sample_rate
        self.input_rate = self.sample_rate if sample_rate is None else int(sample_rate)
        self._resampler = None
        if self.input_rate != self.sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(self.input_rate, self.sample_rate, 1, dtype="float32")
        self.shared = inference.shared_encoder
        self.hop = self.model.frame_hop if (inference.is_frame or self.shared) else None
        self.window_frames = self.model.num_frames(inference.chunk_samples) if self.hop else None
        self.step_frames = inference.step_samples // self.hop if self.hop else None
        self.context = self.model.encoder_context if self.shared else 0
        self.labels = inference.specifications.classes
        self.closed = False
        # audio received so far (model rate); the buffer holds samples [buffer_start, received)
        self.received = 0
        self.buffer = torch.zeros((1, 0))
        self.buffer_start = 0
        # encoded frames [features_start, features_end) (shared encoder only)
        self.features: Optional[torch.Tensor] = None
        self.features_start = self.features_end = 0
        self.next_window = 0
        # overlap-add sums of the frames not yet final: [emitted, emitted + len)
        self.emitted = 0
        self.numerator = np.zeros((0, len(self.labels)))
        self.denominator = np.zeros(0)
        if inference.is_frame:
            self.weights = frame_weights(self.window_frames, frames=self.model.frames, duration=inference.duration,
                                         warm_up=inference.specifications.warm_up, window=inference.window)

    @property
    def latency(self) -> float:
        """Seconds of audio that arrive after the end of a frame (FRAME models) or of a window
        (CHUNK models) before its scores come out, at most, not counting the block size."""
        context_seconds = self.context * (self.hop or 0) / self.sample_rate
        if not self.inference.is_frame:
            return context_seconds
        return (self.window_frames - 1) * self.hop / self.sample_rate + context_seconds

    # ---- input --------------------------------------------------------------------------
    def push(self, samples: ArrayLike) -> SlidingWindowFeature:
        """Add a block of samples; the scores that became final."""
        if self.closed:
            raise RuntimeError("Stream: push after close; start a new stream with Inference.stream().")
        block = self._mono(samples)
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
        self._append(block)
        return self._advance(end=None)

    def close(self) -> SlidingWindowFeature:
        """End the stream: the last windows are zero-padded, as offline; the remaining scores."""
        if self.closed:
            raise RuntimeError("Stream: already closed.")
        if self._resampler is not None:
            self._append(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        self.closed = True
        if self.received == 0:
            raise AudioError("empty stream: no sample was pushed")
        return self._advance(end=self.received)

    def _mono(self, samples: ArrayLike) -> np.ndarray:
        array = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
        if array.ndim not in (1, 2):
            raise ValueError(f"Stream: a block must be (channels, samples) or (samples,), got {array.shape}.")
        array = array.astype(np.float32, copy=False)
        if array.ndim == 2:
            array = array.mean(axis=0)
        # the stream's name for the block: the samples it holds, counted from the stream's start
        refuse_nonfinite(array, f"samples {self.received}-{self.received + len(array)} of the stream")
        return array

    def _append(self, block: np.ndarray) -> None:
        if len(block):
            self.buffer = torch.cat([self.buffer, torch.from_numpy(np.ascontiguousarray(block))[None]], dim=1)
            self.received += len(block)

    # ---- windows ------------------------------------------------------------------------
    def _advance(self, end: Optional[int]) -> SlidingWindowFeature:
        """Score every window whose input is complete; ``end``: the stream's length (close)."""
        inference = self.inference
        if end is None:
            num_windows = None  # unknown until the stream ends
        else:
            num_windows = len(chunk_starts(end / self.sample_rate, duration=inference.duration, step=inference.step))
            # offline pads the last windows with zeros: so does the stream's end
            span = inference.span(num_windows)
            self._append(np.zeros(max(0, span - self.received), dtype=np.float32))
        ready = self._ready_windows(num_windows, end)
        scores = self._score(ready)
        return self._emit(ready, scores, end)

    def _ready_windows(self, num_windows: Optional[int], end: Optional[int]) -> range:
        """The windows, from the next one, whose input is complete."""
        inference = self.inference
        if self.shared:
            self._encode(final=end is not None)
            available = (self.features_end - self.window_frames) // self.step_frames + 1
        else:
            available = (self.received - inference.chunk_samples) // inference.step_samples + 1
        if num_windows is not None:
            available = num_windows
        return range(self.next_window, max(self.next_window, available))

    def _encode(self, final: bool) -> None:
        """Encode the frames whose right context has arrived (all of them when ``final``)."""
        inference = self.inference
        total_frames = self.received // self.hop
        last = total_frames if final else total_frames - self.context
        if last <= self.features_end:
            return
        begin = max(0, self.features_end - self.context)
        end_sample = self.received if final else (last + self.context) * self.hop
        samples = self.buffer[:, begin * self.hop - self.buffer_start : end_sample - self.buffer_start]
        encoded = inference.encode(samples)[self.features_end - begin : last - begin]
        kept = self.features if self.features is not None else encoded[:0]
        self.features = torch.cat([kept, encoded])
        self.features_end = last
        # the next encoding reads from context frames before features_end on
        self._drop_audio_before((self.features_end - self.context) * self.hop)

    def _score(self, windows: range) -> Optional[np.ndarray]:
        """Scores of ``windows`` (None when there is none); what they no longer need is dropped."""
        inference = self.inference
        if len(windows) == 0:
            return None
        if self.shared:
            first = windows.start * self.step_frames - self.features_start
            last = (windows.stop - 1) * self.step_frames + self.window_frames - self.features_start
            scores = inference.score_windows(self.features[first:last], len(windows))
            keep = windows.stop * self.step_frames
            self.features = self.features[keep - self.features_start :]
            self.features_start = keep
        else:
            first = windows.start * inference.step_samples - self.buffer_start
            last = (windows.stop - 1) * inference.step_samples + inference.chunk_samples - self.buffer_start
            chunks = self.buffer[:, first:last].unfold(-1, inference.chunk_samples, inference.step_samples)
            scores = inference.score_chunks(chunks.transpose(0, 1))
            self._drop_audio_before(windows.stop * inference.step_samples)
        self.next_window = windows.stop
        return scores

    def _drop_audio_before(self, sample: int) -> None:
        if sample > self.buffer_start:
            self.buffer = self.buffer[:, sample - self.buffer_start :]
            self.buffer_start = sample

    # ---- output -------------------------------------------------------------------------
    def _emit(self, windows: range, scores: Optional[np.ndarray], end: Optional[int]) -> SlidingWindowFeature:
        inference = self.inference
        if not inference.is_frame:
            data = np.zeros((0, len(self.labels))) if scores is None else scores
            data = data.astype(np.float32)
            window = SlidingWindow(start=windows.start * inference.step, duration=inference.duration,
                                   step=inference.step)
            return SlidingWindowFeature(data, window, labels=self.labels)
        if scores is not None:
            self._overlap_add(windows, scores)
        final = self.next_window * self.step_frames
        if end is not None:
            final = max(1, self.model.num_frames(end))  # offline's frames; padding frames dropped
        count = max(0, final - self.emitted)
        self._grow(count)
        covered = self.denominator[:count] > 0
        data = np.zeros((count, len(self.labels)))
        data[covered] = self.numerator[:count][covered] / self.denominator[:count][covered, None]
        frames = self.model.frames
        window = SlidingWindow(start=frames.start + self.emitted * frames.step, duration=frames.duration,
                               step=frames.step)
        self.numerator, self.denominator = self.numerator[count:], self.denominator[count:]
        self.emitted += count
        return SlidingWindowFeature(data.astype(np.float32), window, labels=self.labels)

    def _overlap_add(self, windows: range, scores: np.ndarray) -> None:
        for offset, window_scores in zip(range(windows.start, windows.stop), scores):
            first = offset * self.step_frames - self.emitted
            self._grow(first + self.window_frames)
            self.numerator[first : first + self.window_frames] += self.weights[:, None] * window_scores
            self.denominator[first : first + self.window_frames] += self.weights

    def _grow(self, length: int) -> None:
        missing = length - len(self.denominator)
        if missing > 0:
            self.numerator = np.concatenate([self.numerator, np.zeros((missing, len(self.labels)))])
            self.denominator = np.concatenate([self.denominator, np.zeros(missing)])


def stream_file(inference, path, block: float) -> SlidingWindowFeature:
    """Scores of the audio file ``path`` read in blocks of ``block`` seconds, each pushed into a
    new stream as it is read (as audio arriving live would be): offline's scores of the file,
    in memory bounded by the blocks and the window.

    ``AudioError`` naming the file when it cannot be decoded or holds no sample.
    """
    import soundfile

    if not block > 0:
        raise ValueError(f"stream_file: block must be a positive number of seconds, got {block}.")
    try:
        with soundfile.SoundFile(str(path)) as handle:
            stream = inference.stream(handle.samplerate)
            size = max(1, seconds_to_samples(block, handle.samplerate))
            pieces = [stream.push(samples.T) for samples in handle.blocks(blocksize=size, dtype="float32", always_2d=True)]
            empty = handle.frames == 0
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"Cannot decode audio file {path}: {error}") from None
    except AudioError as error:  # a NaN block, named by its samples
        raise AudioError(f"{path}: {error}") from None
    if empty:
        raise AudioError(f"empty audio file: {path}")  # check_samples's words, as offline
    pieces.append(stream.close())
    return concatenate(pieces)


def concatenate(pieces: list[SlidingWindowFeature]) -> SlidingWindowFeature:
    """The pieces a :class:`Stream` returned, as one ``SlidingWindowFeature`` (offline's shape)."""
    pieces = [piece for piece in pieces if len(piece.data)] or pieces[-1:]
    first = pieces[0]
    data = np.concatenate([piece.data for piece in pieces])
    return SlidingWindowFeature(data, first.sliding_window, labels=first.labels)
