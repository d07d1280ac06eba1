"""Embeddings of whole files and of segments, from a speaker embedding model.

A model embeds chunks of its training duration. A longer stretch of audio is cut into
windows of that duration (the last one ending where the audio ends, so that no window is
padded with silence); its embedding is the mean of the windows' L2-normalised embeddings,
so that every window weighs alike whatever its norm. A stretch shorter than one chunk is
given to the model whole: zero-padding it to a chunk would add silence to the statistics the
model pools over frames, and the shorter the audio, the more it would pull the embedding
towards that of silence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from audiotask.core.audio import AudioFile, audio_name, check_samples
from audiotask.core.frames import seconds_to_samples
from audiotask.core.model import Model
from audiotask.core.specifications import Problem
from audiotask.inference.inference import Inference

#: hop between the windows of a file, as a share of the chunk, when given a model (an
#: Inference brings its own step): embeddings change slowly along a turn, half-overlapping
#: windows see every sample twice at a fifth of the cost of the default 10 % hop
EMBEDDING_STEP = 0.5


def embedding_inference(model: Union[Inference, Model, str, Path]) -> Inference:
    """An :class:`Inference` of a speaker embedding model (given, loaded, or wrapped with a
    hop of :data:`EMBEDDING_STEP` chunks); ValueError for a model of another problem."""
    if isinstance(model, (str, Path)):
        model = Model.from_pretrained(model)
    if isinstance(model, Model):
        model = Inference(model, step=EMBEDDING_STEP * model.specifications.duration)
    if model.specifications.problem is not Problem.REPRESENTATION:
        raise ValueError(f"embeddings need a speaker embedding model (a REPRESENTATION), got a model for "
                         f"{model.specifications.problem.value}.")
    return model


def window_starts(num_samples: int, chunk: int, step: int) -> np.ndarray:
    """Start samples of the windows over ``num_samples``: every ``step`` while a whole window
    fits, then one ending at the last sample. A single start 0 when the audio is no longer
    than ``chunk`` (that window is then the whole audio)."""
    if num_samples <= chunk:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, num_samples - chunk + 1, step, dtype=np.int64)
    return starts if starts[-1] == num_samples - chunk else np.append(starts, num_samples - chunk)


def waveform_embedding(inference: Inference, waveform: torch.Tensor) -> np.ndarray:
    """(dimension,) mean of the L2-normalised embeddings of the windows of a
    (channels, samples) waveform at the model's rate."""
    model, chunk = inference.model, inference.chunk_samples
    num_samples = waveform.shape[-1]
    if num_samples < chunk:
        # the model needs at least one output frame to pool over
        waveform = F.pad(waveform, (0, max(0, int(model.frame_hop or 0) - num_samples)))
        chunk = waveform.shape[-1]
    starts = window_starts(waveform.shape[-1], chunk, inference.step_samples).tolist()
    embeddings = []
    with torch.inference_mode():
        # batch by batch: the windows of a long file, stacked at once, would hold it many times over
        for begin in range(0, len(starts), inference.batch_size):
            batch = torch.stack([waveform[:, s : s + chunk] for s in starts[begin : begin + inference.batch_size]])
            embeddings.append(F.normalize(model(batch.to(inference.device)).float(), dim=1).cpu())
    return torch.cat(embeddings).mean(dim=0).numpy()


def file_embedding(inference_or_model: Union[Inference, Model, str, Path], file: AudioFile) -> np.ndarray:
    """(dimension,) embedding of a whole file.

    Parameters
    ----------
    inference_or_model : Inference, Model, or a saved model's path
        A speaker embedding model; an :class:`Inference` sets the hop between windows,
        batch size and device (a model gets a hop of :data:`EMBEDDING_STEP` chunks).
    file : path, protocol file with "audio", or {"waveform", "sample_rate"}
        Resampled to the model's rate and downmixed as the model expects.

    Returns the mean of the L2-normalised embeddings of the file's windows (not normalised
    itself: cosine scoring does not need it). ``AudioError`` naming an empty or non-finite file.
    """
    inference = embedding_inference(inference_or_model)
    waveform, _ = inference.model.audio(file)
    check_samples(waveform, audio_name(file))
    return waveform_embedding(inference, waveform)


def segment_embeddings(
    inference_or_model: Union[Inference, Model, str, Path], file: AudioFile, segments: Sequence[tuple[float, float]]
) -> np.ndarray:
    """(segments, dimension) embeddings of the ``(start, end)`` segments of a file (seconds,
    e.g. an RTTM's turns), each computed as :func:`file_embedding` computes a file's.

    The file is read once. ValueError naming the segment when it holds no sample of the file.
    """
    inference = embedding_inference(inference_or_model)
    waveform, sample_rate = inference.model.audio(file)
    name = audio_name(file)
    check_samples(waveform, name)
    rows = []
    for start, end in segments:
        first = max(0, seconds_to_samples(float(start), sample_rate))
        last = min(waveform.shape[-1], seconds_to_samples(float(end), sample_rate))
        if last <= first:
            raise ValueError(f"{name}: segment [{start}, {end}] holds no sample of the file "
                             f"({waveform.shape[-1] / sample_rate:.3f} s long).")
        rows.append(waveform_embedding(inference, waveform[:, first:last]))
    if not rows:
        return np.zeros((0, inference.specifications.num_outputs), dtype=np.float32)
    return np.stack(rows)
