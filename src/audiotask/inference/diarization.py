"""Speaker diarization of whole files: who speaks when, from a segmentation and an embedding model.

The pipeline of pyannote.audio's ``pyannote/audio/pipelines/speaker_diarization.py``
(``SpeakerDiarization``), its clustering ``pyannote/audio/pipelines/clustering.py``
(``AgglomerativeClustering``) and ``pyannote/audio/pipelines/utils/diarization.py``
(``SpeakerDiarizationMixin``: ``speaker_count``, ``to_diarization``), in four steps:

1. **Local segmentation.** The speaker diarization model (``tasks/speaker_diarization.py``)
   slides over the file in chunks of its duration (:class:`~audiotask.inference.inference.
   Inference`'s chunks, every 10 % of a chunk by default), each chunk kept on its own (no
   overlap-add): ``(chunks, frames, local speakers)`` activity, the speakers of the class
   of highest score for a powerset model (``core/powerset.py``), the scores above ``onset``
   for a multi-label one. A local speaker is who it is within its chunk only.
2. **One embedding per active (chunk, local speaker).** Our embedding models (any saved
   REPRESENTATION model: ``--task embedding``, or imported) read waveforms and have no
   pooling mask to give them, as pyannote.audio's have. So the model reads only the
   speaker's own frames: those where it speaks alone when they last at least
   ``min_embedding_duration`` (pyannote.audio's ``embedding_exclude_overlap``), else all its
   active frames, cut out of the chunk and joined end to end, repeated until they fill one
   chunk (as WeSpeaker repeats a short input): the statistics the model pools are then
   those of the speaker's speech alone, neither another speaker's nor silence's. Gathered
   by one indexing of a strided view of the waveform per batch.
3. **Clustering across the file.** Agglomerative clustering (scipy's ``linkage``, centroid
   linkage by default) of the L2-normalised embeddings of the local speakers heard alone
   for at least ``min_embedding_duration`` (at most ``max_clustered_embeddings`` of them, evenly
   spread over the file: the linkage's cost grows with their square), cut at ``threshold``
   (a Euclidean distance between unit vectors, in [0, 2]), or at ``num_speakers`` clusters,
   or at the count within ``[min_speakers, max_speakers]`` nearest the threshold's;
   clusters smaller than ``min_cluster_size`` join the nearest large one (pyannote.audio's
   rules, its dendrogram walk vectorised). Then every active local speaker, those too
   short to cluster included, goes to the cluster of most similar centroid; two speakers
   of one chunk never go to the same cluster (``constrained_assignment``: a Hungarian
   assignment in the chunks where the nearest centroids collide).
4. **Reconstruction.** Each chunk's local activity is moved onto its speakers' clusters and
   averaged over the overlapping chunks; the number of speakers of each frame is the
   rounded average of the chunks' local speaker counts (``speaker_count``); each frame keeps
   that many clusters, the most active first (``to_diarization``), frames become turns
   (``min_duration_on`` / ``min_duration_off``, ``inference.postprocessing``) and an
   ``Annotation`` labelled ``SPEAKER_00``, ``SPEAKER_01``... in order of first turn.

Where this differs from pyannote.audio: the embedding input (above, by necessity); a frame
keeps only clusters with some activity there, and never more than there are clusters (where
pyannote.audio would add a speaker no chunk heard); only the embeddings of
``min_embedding_duration`` or more of a speaker alone are clustered, the others (from
overlapping speech, or from little of it) only assigned; the subset of
clustered embeddings of a long file is evenly spread, not drawn at random; speaker labels are
numbered by first turn. A file where no local speaker is ever active gives an empty
``Annotation``.

The hyper-parameters that ``audiotask tune`` may set are a plain dict (:meth:`
DiarizationPipeline.parameters`, :meth:`~DiarizationPipeline.with_parameters`);
:func:`tune_threshold` picks the clustering threshold of least DER over development files
(pyannote.metrics' ``DiarizationErrorRate``), segmenting and embedding each file once;
:func:`save_tuned_parameters` / :func:`load_tuned_parameters` keep them in the model's
folder (``diarization.json``), where ``audiotask apply`` finds them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from pyannote.core import Annotation, SlidingWindowFeature

from audiotask.core.audio import AudioFile, audio_name, check_samples
from audiotask.core.frames import Frames, frame_offsets, whole_steps
from audiotask.core.powerset import of_specifications
from audiotask.core.specifications import Problem, Resolution
from audiotask.inference.aggregation import coverage, frame_weights, overlap_add
from audiotask.inference.inference import Inference, load_for_inference
from audiotask.inference.postprocessing import events_to_annotation, scores_to_events
from audiotask.protocols.uris import uri_of

__all__ = [
    "DiarizationPipeline", "ChunkSpeakers", "ThresholdTuning", "tune_threshold", "agglomerative_clusters",
    "assign_to_centroids", "speaker_bounds", "LINKAGE_METHODS", "TUNABLE", "TUNED_FILENAME",
    "save_tuned_parameters", "load_tuned_parameters",
]

#: linkage methods of scipy that take the Euclidean distances of unit vectors
LINKAGE_METHODS = ("centroid", "average", "complete", "median", "single", "ward", "weighted")
#: the hyper-parameters of :meth:`DiarizationPipeline.parameters`, those ``audiotask tune`` may set
TUNABLE = ("threshold", "method", "min_cluster_size", "min_duration_on", "min_duration_off", "onset",
           "min_embedding_duration")
#: label of the k-th speaker of a file (pyannote.audio's ``classes()``)
SPEAKER_LABEL = "SPEAKER_{:02d}"

ModelLike = Union["Inference", Any, str, Path]


# ---- the local speakers of a file ------------------------------------------------------------
@dataclass
class ChunkSpeakers:
    """What steps 1 and 2 make of a file: everything clustering and reconstruction need.

    Attributes
    ----------
    uri : str or None
        The file's uri (its base name less the audio extension, or a protocol file's "uri").
    duration : float
        Seconds of audio.
    starts : (chunks,) float64
        Chunk start times, in seconds, on the segmentation model's frame grid.
    activity : (chunks, frames, local speakers) bool
        Who speaks in each frame of each chunk.
    ranking : (chunks, frames, local speakers) float32
        What reconstruction ranks a frame's clusters by: ``activity`` for a powerset model,
        the speakers' probabilities for a multi-label one (as pyannote.audio).
    weights : (frames,) float64
        Weight of each chunk frame in the averages over chunks (warm-up frames nearly 0).
    frames : Frames
        The segmentation model's frame grid (chunk frame ``f`` of the chunk at ``start`` is
        file frame ``start / frames.step + f``).
    num_file_frames : int
        Frames of the segmentation model over the whole file.
    embeddings : (chunks, local speakers, dimension) float32 or None
        L2-normalised embedding of each active local speaker, NaN for inactive ones; None
        when not computed (a single speaker needs none).
    trusted : (chunks, local speakers) bool
        The local speakers heard alone for at least ``min_embedding_duration``, whose
        embeddings are clustered (the others, embedded from overlapping speech or from too
        little of it, are only assigned to the clusters).
    """

    uri: Optional[str]
    duration: float
    starts: np.ndarray
    activity: np.ndarray
    ranking: np.ndarray
    weights: np.ndarray
    frames: Frames
    num_file_frames: int
    embeddings: Optional[np.ndarray]
    trusted: np.ndarray

    @property
    def active(self) -> np.ndarray:
        """(chunks, local speakers) bool: the local speakers active in at least one frame."""
        return self.activity.any(axis=1)


def file_uri(file: AudioFile) -> Optional[str]:
    """The uri of ``file``: a protocol file's "uri", else the base name of its path (or of the
    "audio" an in-memory file carries) less its audio extension; None for an anonymous waveform."""
    if isinstance(file, Mapping):
        if file.get("uri"):
            return str(file["uri"])
        return uri_of(Path(file["audio"]).name) if file.get("audio") is not None else None
    return uri_of(Path(file).name)


def speaker_bounds(
    num_speakers: Optional[int] = None, min_speakers: Optional[int] = None, max_speakers: Optional[int] = None
) -> tuple[Optional[int], int, float]:
    """``(num_speakers, min_speakers, max_speakers)`` checked and completed, as pyannote.audio's
    ``set_num_speakers``: ``num_speakers`` overrides both bounds, the bounds default to 1 and
    infinity, and equal bounds fix the number. ValueError for a bound below 1 or min > max."""
    for name, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers), ("max_speakers", max_speakers)):
        if value is not None and (int(value) != value or value < 1):
            raise ValueError(f"{name} must be a whole number of speakers, at least 1, got {value}.")
    low = num_speakers or min_speakers or 1
    high = num_speakers or max_speakers or np.inf
    if low > high:
        raise ValueError(f"min_speakers ({low}) must not exceed max_speakers ({high}).")
    return (int(low) if low == high else None), int(low), high


# ---- step 1, local segmentation, is Inference.chunk_scores --------------------------------------
# ---- step 2: embeddings of local speakers -------------------------------------------------------
def embedding_frames(activity: np.ndarray, min_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frames used, counts, alone)`` for each (chunk, local speaker): ``(chunks, frames,
    speakers)`` bool frames where it speaks alone when there are at least ``min_frames`` of
    them (``alone``, (chunks, speakers) bool, says where), else all its active frames;
    ``counts`` (chunks, speakers) how many frames are used."""
    alone_frames = activity & (activity.sum(axis=2, keepdims=True) == 1)
    alone = alone_frames.sum(axis=1) >= max(1, min_frames)
    used = np.where(alone[:, None, :], alone_frames, activity)
    return used, used.sum(axis=1), alone


def block_windows(waveform: torch.Tensor, block: int, last_start: int) -> torch.Tensor:
    """(starts, block) view of every ``block`` samples of a (1, samples) waveform, one per
    start sample up to ``last_start`` at least (zero-padded past its end, once per file)."""
    padded = F.pad(waveform[0], (0, max(0, last_start + block - waveform.shape[-1])))
    return padded.unfold(0, block, 1)


def tiled_inputs(
    windows: torch.Tensor,
    frame_starts: np.ndarray,
    counts: np.ndarray,
    *,
    num_samples: int,
) -> torch.Tensor:
    """(pairs, 1, num_samples) inputs: for each pair, its frames' samples joined end to end
    and repeated until ``num_samples``.

    ``windows`` is :func:`block_windows`' view of the waveform; ``frame_starts`` (pairs,
    frames) the first sample of each pair's frames, its used frames first; ``counts``
    (pairs,) how many are used (>= 1). One advanced indexing of the view gathers them.
    """
    block = windows.shape[1]
    num_blocks = -(-num_samples // block)
    position = np.arange(num_blocks)[None, :] % counts[:, None]  # cycles over the used frames
    first_samples = np.take_along_axis(frame_starts, position, axis=1)
    gathered = windows[torch.from_numpy(first_samples)]  # (pairs, blocks, block)
    return gathered.reshape(len(counts), 1, num_blocks * block)[..., :num_samples]


# ---- step 3: clustering ----------------------------------------------------------------------------
def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def cluster_bounds(
    num_embeddings: int, num_clusters: Optional[int], min_clusters: Optional[int], max_clusters: Optional[float]
) -> tuple[Optional[int], int, int]:
    """pyannote.audio's ``set_num_clusters``: the bounds clipped to ``[1, num_embeddings]``,
    equal bounds fixing the number."""
    low = num_clusters or min_clusters or 1
    low = max(1, min(num_embeddings, low))
    high = num_clusters or max_clusters or num_embeddings
    high = int(max(1, min(num_embeddings, high)))
    if low > high:
        raise ValueError(f"min_clusters ({low}) must not exceed max_clusters ({high}).")
    return (low if low == high else None), int(low), high


def _merge_sizes(dendrogram: np.ndarray, num_embeddings: int) -> tuple[np.ndarray, np.ndarray]:
    """Sizes of the two clusters that each merge of a scipy ``linkage`` joins, (merges,) each."""
    sizes = np.concatenate([np.ones(num_embeddings), dendrogram[:, 3]])
    return sizes[dendrogram[:, 0].astype(np.int64)], sizes[dendrogram[:, 1].astype(np.int64)]


def _large_clusters_after(dendrogram: np.ndarray, num_embeddings: int, min_size: int) -> np.ndarray:
    """(merges,) number of clusters of at least ``min_size`` members once merges ``0 .. i``
    are made: each merge adds the large cluster it makes and removes the large ones it joins."""
    left, right = _merge_sizes(dendrogram, num_embeddings)
    change = (dendrogram[:, 3] >= min_size).astype(np.int64) - (left >= min_size) - (right >= min_size)
    return (num_embeddings if min_size <= 1 else 0) + np.cumsum(change)


def _flat_clusters_after(dendrogram: np.ndarray, merges: int) -> np.ndarray:
    """0-based flat clusters once the first ``merges`` merges are made (pyannote.audio's
    dendrogram whose heights are the merge indices)."""
    from scipy.cluster.hierarchy import fcluster

    indexed = dendrogram.copy()
    indexed[:, 2] = np.arange(len(dendrogram))
    return fcluster(indexed, merges - 1, criterion="distance") - 1


def _cut_nearest_count(dendrogram: np.ndarray, threshold: float, min_size: int, target: int) -> np.ndarray:
    """The flat clusters with ``target`` large clusters (or the nearest count) at the merge
    nearest ``threshold``: pyannote.audio's walk through the dendrogram, away from the
    threshold, over the merges that make a large cluster, vectorised."""
    num_embeddings = len(dendrogram) + 1
    large = _large_clusters_after(dendrogram, num_embeddings, min_size)
    order = np.argsort(np.abs(dendrogram[:, 2] - threshold), kind="stable")
    order = order[dendrogram[order, 3] >= min_size]
    # pyannote.audio starts from everything in one cluster and moves only when strictly nearer
    candidates = np.concatenate([[num_embeddings - 2], order])
    miss = np.abs(np.concatenate([[1], large[order]]) - target)
    best = candidates[int(np.argmin(miss))]
    return _flat_clusters_after(dendrogram, int(best) + 1)


def agglomerative_clusters(
    embeddings: np.ndarray,
    *,
    threshold: float,
    method: str = "centroid",
    min_cluster_size: int = 12,
    num_clusters: Optional[int] = None,
    min_clusters: Optional[int] = None,
    max_clusters: Optional[float] = None,
) -> np.ndarray:
    """(embeddings,) 0-based clusters of (embeddings, dimension) embeddings.

    pyannote.audio's ``AgglomerativeClustering.cluster``: scipy's ``linkage`` of the
    L2-normalised embeddings (Euclidean), cut at ``threshold``; when that makes fewer large
    clusters (at least ``min(min_cluster_size, max(1, round(0.1 * embeddings)))`` members)
    than ``min_clusters`` or more than ``max_clusters``, or other than ``num_clusters``, the
    cut with that count nearest the threshold; then each small cluster joins the large one
    of nearest centroid (cosine), and clusters are renumbered from 0.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import cdist

    num_embeddings = len(embeddings)
    if num_embeddings < 2:
        return np.zeros(num_embeddings, dtype=np.int64)
    num_clusters, min_clusters, max_clusters = cluster_bounds(num_embeddings, num_clusters, min_clusters, max_clusters)
    if max_clusters < 2:
        return np.zeros(num_embeddings, dtype=np.int64)
    min_size = min(int(min_cluster_size), max(1, round(0.1 * num_embeddings)))
    embeddings = _normalised(np.asarray(embeddings, dtype=np.float64))
    dendrogram = linkage(embeddings, method=method, metric="euclidean")
    clusters = fcluster(dendrogram, threshold, criterion="distance") - 1
    counts = np.bincount(clusters)
    num_large = int(np.sum(counts >= min_size))
    target = num_clusters
    if num_large < min_clusters:
        target = min_clusters
    elif num_large > max_clusters:
        target = max_clusters
    if target is not None and num_large != target:
        clusters = _cut_nearest_count(dendrogram, threshold, min_size, target)
        counts = np.bincount(clusters)
    large = np.flatnonzero(counts >= min_size)
    small = np.flatnonzero((counts > 0) & (counts < min_size))
    if len(large) == 0:
        return np.zeros(num_embeddings, dtype=np.int64)
    if len(small):
        centroids = _centroids(embeddings, clusters, len(counts))
        nearest = large[np.argmin(cdist(centroids[small], centroids[large], metric="cosine"), axis=1)]
        relabel = np.arange(len(counts))
        relabel[small] = nearest
        clusters = relabel[clusters]
    return np.unique(clusters, return_inverse=True)[1].astype(np.int64)


def _centroids(embeddings: np.ndarray, clusters: np.ndarray, num_clusters: int) -> np.ndarray:
    """(clusters, dimension) mean of each cluster's embeddings (zeros for an empty one)."""
    totals = np.zeros((num_clusters, embeddings.shape[1]))
    np.add.at(totals, clusters, embeddings)
    return totals / np.maximum(np.bincount(clusters, minlength=num_clusters), 1)[:, None]


def assign_to_centroids(
    embeddings: np.ndarray, active: np.ndarray, centroids: np.ndarray, *, constrained: bool = True
) -> np.ndarray:
    """(chunks, local speakers) cluster of each active local speaker, -1 for inactive ones.

    Each goes to the centroid of highest cosine similarity (pyannote.audio's
    ``assign_embeddings``). ``constrained``: in the chunks where two active speakers would go
    to one cluster, a Hungarian assignment (pyannote.audio's ``constrained_argmax``) gives
    them distinct clusters, as many as there are clusters (the others keep their nearest).
    """
    from scipy.optimize import linear_sum_assignment

    similarity = np.nan_to_num(np.einsum("csd,kd->csk", embeddings, _normalised(centroids)), nan=-2.0)
    clusters = np.where(active, similarity.argmax(axis=2), -1)
    if not constrained or centroids.shape[0] < 2:
        return clusters
    same = (clusters[:, :, None] == clusters[:, None, :]) & active[:, :, None] & active[:, None, :]
    colliding = np.flatnonzero(np.triu(same, k=1).any(axis=(1, 2)))
    for chunk in colliding:  # few chunks: most local speakers have distinct nearest centroids
        speakers = np.flatnonzero(active[chunk])
        rows, columns = linear_sum_assignment(similarity[chunk, speakers], maximize=True)
        clusters[chunk, speakers[rows]] = columns
    return clusters


# ---- step 4: reconstruction ----------------------------------------------------------------------
def cluster_activations(speakers: ChunkSpeakers, clusters: np.ndarray, num_clusters: int) -> np.ndarray:
    """(file frames, clusters) average over chunks of each cluster's local activity
    (``ChunkSpeakers.ranking`` of the local speakers assigned to it; the largest when two of
    one chunk are), weighted by ``speakers.weights``; 0 where no chunk covers a frame."""
    num_frames = speakers.ranking.shape[1]
    chunk, local = np.nonzero(clusters >= 0)
    cluster = clusters[chunk, local]
    # one row per (chunk, cluster): two local speakers of one chunk in one cluster merge by max
    key = chunk * num_clusters + cluster
    order = np.argsort(key, kind="stable")
    key, chunk, local = key[order], chunk[order], local[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    rows = np.maximum.reduceat(speakers.ranking[chunk, :, local], first, axis=0) if len(first) else \
        np.zeros((0, num_frames), dtype=np.float32)
    chunk, cluster = key[first] // num_clusters, key[first] % num_clusters
    offsets = frame_offsets(speakers.starts[chunk], frames=speakers.frames)
    index = offsets[:, None] + np.arange(num_frames)[None, :]
    keep = index < speakers.num_file_frames
    flat = (index * num_clusters + cluster[:, None])[keep]
    values = (rows * speakers.weights[None, :])[keep]
    total = np.bincount(flat, weights=values, minlength=speakers.num_file_frames * num_clusters)
    weight = coverage(speakers.starts, num_frames=num_frames, frames=speakers.frames, weights=speakers.weights,
                      num_output_frames=speakers.num_file_frames)
    return total.reshape(speakers.num_file_frames, num_clusters) / np.where(weight > 0, weight, 1.0)[:, None]


def speaker_count(speakers: ChunkSpeakers) -> np.ndarray:
    """(file frames,) int: speakers active at once in each frame, the rounded average over
    the chunks covering it of their local speaker counts (pyannote.audio's ``speaker_count``)."""
    counts = speakers.activity.sum(axis=2, keepdims=True).astype(np.float64)
    average = overlap_add(counts, speakers.starts, frames=speakers.frames, weights=speakers.weights,
                          num_output_frames=speakers.num_file_frames)[:, 0]
    return np.rint(average).astype(np.int64)


def top_clusters(activations: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(frames, clusters) bool: in each frame, the ``count`` clusters of highest activation
    among those with some (pyannote.audio's ``to_diarization``)."""
    order = np.argsort(-activations, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(activations.shape[1])[None, :], axis=1)
    return (rank < count[:, None]) & (activations > 0)


# ---- the pipeline ------------------------------------------------------------------------------------
def _as_inference(model: ModelLike, **options) -> Inference:
    if isinstance(model, Inference):
        return model
    if isinstance(model, (str, Path)):
        model = load_for_inference(model)
    return Inference(model, **options)


class DiarizationPipeline:
    """Speaker diarization of whole files (see the module's docstring for its steps).

    Parameters
    ----------
    segmentation_model : Model, Inference, or a saved model's path
        A speaker diarization model (``--task diarization``; powerset or multi-label): its
        specifications' extra names ``max_speakers_per_chunk``. An ``Inference`` brings its
        own step, batch size and device.
    embedding_model : Model, Inference, or a saved model's path
        A speaker embedding model (REPRESENTATION): ``--task embedding``, or imported.
    threshold : float
        Clustering threshold: the Euclidean distance between unit embeddings (in [0, 2]) at
        which the dendrogram is cut, when the number of speakers is not given.
    method : str
        Linkage method, one of :data:`LINKAGE_METHODS`.
    min_cluster_size : int
        Clusters of fewer embeddings join the nearest larger one (at most 10 % of the
        embeddings, rounded, for short files).
    min_duration_on, min_duration_off : float
        Seconds: speaker turns shorter than ``min_duration_on`` are dropped, gaps in one
        speaker's speech shorter than ``min_duration_off`` filled.
    onset : float
        Multi-label segmentation models only: the probability above which a local speaker
        is active.
    min_embedding_duration : float
        Seconds: the speech alone a local speaker needs to be embedded from those frames
        only (else from all its frames) and to be clustered (else only assigned to a cluster).
    step : float, optional
        Hop between segmentation chunks, in seconds (default: ``Inference``'s, 10 % of a chunk).
    batch_size, embedding_batch_size : int
        Chunks per forward pass of the segmentation model, local speakers per forward pass of
        the embedding model.
    device : str or torch.device, optional
        Where both models run (default: where their weights are).
    max_clustered_embeddings : int
        At most this many embeddings are clustered (evenly spread over the file), the others
        assigned to the clusters' centroids: the linkage's time grows as their square
        (2000: about 0.3 s).
    constrained_assignment : bool
        Two local speakers of one chunk never go to the same cluster.

    Calling the pipeline on a file gives its ``pyannote.core.Annotation``; :meth:`prepare`
    and :meth:`diarize` split the call where tuning reuses the first half.
    """

    def __init__(
        self,
        segmentation_model: ModelLike,
        embedding_model: ModelLike,
        *,
        threshold: float = 0.7,
        method: str = "centroid",
        min_cluster_size: int = 12,
        min_duration_on: float = 0.0,
        min_duration_off: float = 0.0,
        onset: float = 0.5,
        min_embedding_duration: float = 0.5,
        step: Optional[float] = None,
        batch_size: int = 32,
        embedding_batch_size: int = 32,
        device: Union[str, torch.device, None] = None,
        max_clustered_embeddings: int = 2000,
        constrained_assignment: bool = True,
    ):
        self.segmentation = _as_inference(segmentation_model, step=step, batch_size=batch_size, device=device)
        specifications = self.segmentation.specifications
        if specifications.resolution is not Resolution.FRAME:
            raise ValueError("DiarizationPipeline: the segmentation model must be a FRAME model (a speaker "
                             "diarization model), got a CHUNK one.")
        self.powerset = of_specifications(specifications)  # ValueError for a model of another task
        self.embedding = _as_inference(embedding_model, batch_size=embedding_batch_size, device=device)
        if self.embedding.specifications.problem is not Problem.REPRESENTATION:
            raise ValueError(f"DiarizationPipeline: the embedding model must be a speaker embedding model (a "
                             f"REPRESENTATION), got a model for {self.embedding.specifications.problem.value}.")
        if embedding_batch_size < 1 or max_clustered_embeddings < 2:
            raise ValueError("DiarizationPipeline: embedding_batch_size must be at least 1 and "
                             "max_clustered_embeddings at least 2.")
        self.embedding_batch_size = int(embedding_batch_size)
        self.max_clustered_embeddings = int(max_clustered_embeddings)
        self.constrained_assignment = bool(constrained_assignment)
        self._parameters = self._checked(dict(
            threshold=threshold, method=method, min_cluster_size=min_cluster_size, min_duration_on=min_duration_on,
            min_duration_off=min_duration_off, onset=onset, min_embedding_duration=min_embedding_duration,
        ))

    # ---- hyper-parameters -----------------------------------------------------------------
    @staticmethod
    def _checked(parameters: dict) -> dict:
        unknown = sorted(set(parameters) - set(TUNABLE))
        if unknown:
            raise ValueError(f"DiarizationPipeline: unknown parameter(s) {', '.join(unknown)}; "
                             f"the parameters are {', '.join(TUNABLE)}.")
        checked = dict(parameters)
        if checked["method"] not in LINKAGE_METHODS:
            raise ValueError(f"DiarizationPipeline: method must be one of {', '.join(LINKAGE_METHODS)}, "
                             f"got {checked['method']!r}.")
        for name in ("threshold", "min_duration_on", "min_duration_off", "min_embedding_duration"):
            checked[name] = float(checked[name])
            if not checked[name] >= 0:  # NaN too
                raise ValueError(f"DiarizationPipeline: {name} must be a non-negative number, got {checked[name]}.")
        if not 0.0 <= float(checked["onset"]) <= 1.0:
            raise ValueError(f"DiarizationPipeline: onset must be a probability in [0, 1], got {checked['onset']}.")
        checked["onset"] = float(checked["onset"])
        if int(checked["min_cluster_size"]) != checked["min_cluster_size"] or checked["min_cluster_size"] < 1:
            raise ValueError(f"DiarizationPipeline: min_cluster_size must be a whole number, at least 1, "
                             f"got {checked['min_cluster_size']}.")
        checked["min_cluster_size"] = int(checked["min_cluster_size"])
        return checked

    def parameters(self) -> dict[str, Any]:
        """The tunable hyper-parameters (:data:`TUNABLE`), a plain JSON-friendly dict."""
        return dict(self._parameters)

    def with_parameters(self, **changes: Any) -> "DiarizationPipeline":
        """A pipeline sharing this one's models, with ``changes`` to its :meth:`parameters`;
        ValueError naming an unknown or invalid one."""
        pipeline = copy.copy(self)
        pipeline._parameters = self._checked({**self._parameters, **changes})
        return pipeline

    def __getattr__(self, name: str) -> Any:
        # the parameters read as attributes: pipeline.threshold
        parameters = self.__dict__.get("_parameters", {})
        if name in parameters:
            return parameters[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ---- steps 1 and 2 ----------------------------------------------------------------------
    @property
    def frame_step(self) -> float:
        """Seconds between the segmentation model's frames."""
        return self.segmentation.model.frames.step

    def prepare(self, file: AudioFile, *, embed: bool = True) -> ChunkSpeakers:
        """Steps 1 and 2 of ``file`` (a path, a protocol file, or an in-memory waveform):
        the local speakers of every chunk and, with ``embed``, their embeddings.

        ``AudioError`` naming the file when it has no sample, or a NaN or infinite one.
        """
        waveform, sample_rate = self.segmentation.model.audio(file)
        check_samples(waveform, audio_name(file))
        speakers = self.segment(waveform, uri=file_uri(file), duration=waveform.shape[-1] / sample_rate)
        if embed and speakers.active.any():
            embedding_waveform = waveform if self.embedding.sample_rate == sample_rate else \
                self.embedding.model.audio(file)[0]
            speakers.embeddings = self.embed(speakers, embedding_waveform)
        return speakers

    def segment(self, waveform: torch.Tensor, *, uri: Optional[str], duration: float) -> ChunkSpeakers:
        """Step 1 on a ``(channels, samples)`` waveform at the segmentation model's rate."""
        inference, model = self.segmentation, self.segmentation.model
        scores, starts = inference.chunk_scores(waveform)
        if self.powerset is not None:
            activity = self.powerset.to_multilabel(torch.from_numpy(scores)).numpy() > 0
            ranking = activity.astype(np.float32)
        else:
            activity, ranking = scores > self.onset, scores.astype(np.float32)
        weights = frame_weights(scores.shape[1], frames=model.frames, duration=inference.duration,
                                warm_up=inference.specifications.warm_up, window="uniform")
        min_frames = int(whole_steps(self.min_embedding_duration, self.frame_step, up=True))
        alone = embedding_frames(activity, min_frames)[2]
        speakers = ChunkSpeakers(
            uri=uri, duration=float(duration), starts=starts, activity=activity, ranking=ranking, weights=weights,
            frames=model.frames, num_file_frames=max(1, model.num_frames(waveform.shape[-1])), embeddings=None,
            trusted=alone,
        )
        return speakers

    def embed(self, speakers: ChunkSpeakers, waveform: torch.Tensor) -> np.ndarray:
        """Step 2: (chunks, local speakers, dimension) L2-normalised embeddings of the active
        local speakers (NaN for the others), from a (1, samples) waveform at the embedding
        model's rate."""
        model, rate = self.embedding.model, self.embedding.sample_rate
        min_frames = int(whole_steps(self.min_embedding_duration, self.frame_step, up=True))
        used, counts, _ = embedding_frames(speakers.activity, min_frames)
        chunk, local = np.nonzero(counts > 0)
        num_chunks, num_frames, num_locals = speakers.activity.shape
        # the frames each pair uses first, in time order, then the others (never read)
        order = np.argsort(~used[chunk, :, local], axis=1, kind="stable")
        frame_times = speakers.starts[chunk][:, None] + self.segmentation.model.frames.start + order * self.frame_step
        frame_starts = np.rint(frame_times * rate).astype(np.int64)
        block = max(1, int(round(self.frame_step * rate)))
        num_samples = max(block, int(round(self.segmentation.duration * rate)))
        windows = block_windows(waveform, block, int(frame_starts.max()))
        vectors = []
        with torch.inference_mode():
            for begin in range(0, len(chunk), self.embedding_batch_size):
                batch = slice(begin, begin + self.embedding_batch_size)
                inputs = tiled_inputs(windows, frame_starts[batch], counts[chunk[batch], local[batch]],
                                      num_samples=num_samples)
                output = model(inputs.to(self.embedding.device)).float()
                vectors.append(F.normalize(output, dim=1).cpu().numpy())
        embeddings = np.full((num_chunks, num_locals, vectors[0].shape[1]), np.nan, dtype=np.float32)
        embeddings[chunk, local] = np.concatenate(vectors)
        return embeddings

    # ---- steps 3 and 4 ----------------------------------------------------------------------
    def cluster(
        self, speakers: ChunkSpeakers, num_speakers: Optional[int], min_speakers: int, max_speakers: float
    ) -> np.ndarray:
        """Step 3: (chunks, local speakers) 0-based cluster of each active local speaker, -1 elsewhere."""
        active = speakers.active
        if max_speakers < 2 or speakers.embeddings is None:
            return np.where(active, 0, -1)
        finite = np.isfinite(speakers.embeddings).all(axis=2)
        chunk, local = np.nonzero(active & finite & speakers.trusted)
        if len(chunk) == 0:  # nobody heard long enough: cluster what there is
            chunk, local = np.nonzero(active & finite)
        if len(chunk) == 0:
            return np.where(active, 0, -1)
        if len(chunk) > self.max_clustered_embeddings:
            kept = np.unique(np.linspace(0, len(chunk) - 1, self.max_clustered_embeddings).round().astype(np.int64))
            chunk, local = chunk[kept], local[kept]
        clustered = speakers.embeddings[chunk, local].astype(np.float64)
        clusters = agglomerative_clusters(
            clustered, threshold=self.threshold, method=self.method, min_cluster_size=self.min_cluster_size,
            num_clusters=num_speakers, min_clusters=min_speakers, max_clusters=max_speakers,
        )
        centroids = _centroids(clustered, clusters, int(clusters.max()) + 1)
        embeddings = np.where(finite[:, :, None], speakers.embeddings, 0.0)
        return assign_to_centroids(embeddings, active & finite, centroids, constrained=self.constrained_assignment)

    def reconstruct(self, speakers: ChunkSpeakers, clusters: np.ndarray, max_speakers: float) -> Annotation:
        """Step 4: the file's speaker turns from its local speakers' clusters."""
        num_clusters = int(clusters.max()) + 1
        activations = cluster_activations(speakers, clusters, num_clusters)
        # never more speakers at once than there are clusters, nor than the file may have
        count = np.minimum(speaker_count(speakers), int(min(num_clusters, max_speakers)))
        active = top_clusters(activations, count)
        heard = np.flatnonzero(active.any(axis=0))
        first = active[:, heard].argmax(axis=0)
        heard = heard[np.argsort(first, kind="stable")]  # SPEAKER_00 speaks first
        labels = [SPEAKER_LABEL.format(index) for index in range(len(heard))]
        frames = self.segmentation.model.frames.sliding_window()
        scores = SlidingWindowFeature(active[:, heard].astype(np.float32), frames, labels=labels)
        events = scores_to_events(scores, onset=0.5, min_duration_on=self.min_duration_on,
                                  min_duration_off=self.min_duration_off, end=speakers.duration)
        return events_to_annotation(events, speakers.uri)

    def diarize(
        self,
        speakers: ChunkSpeakers,
        num_speakers: Optional[int] = None,
        min_speakers: Optional[int] = None,
        max_speakers: Optional[int] = None,
    ) -> Annotation:
        """Steps 3 and 4 of a file that :meth:`prepare` segmented (and embedded, unless the
        file has a single speaker)."""
        num_speakers, min_speakers, max_speakers = speaker_bounds(num_speakers, min_speakers, max_speakers)
        if not speakers.active.any():
            return Annotation(uri=speakers.uri)
        if max_speakers >= 2 and speakers.embeddings is None:
            raise ValueError("DiarizationPipeline.diarize: the local speakers have no embeddings: "
                             "prepare(file, embed=True) first.")
        clusters = self.cluster(speakers, num_speakers, min_speakers, max_speakers)
        return self.reconstruct(speakers, clusters, max_speakers)

    def __call__(
        self,
        file: AudioFile,
        num_speakers: Optional[int] = None,
        min_speakers: Optional[int] = None,
        max_speakers: Optional[int] = None,
    ) -> Annotation:
        """Speaker turns of ``file``, labelled ``SPEAKER_00``, ``SPEAKER_01``... by first turn.

        Parameters
        ----------
        file : path, protocol file with "audio", or {"waveform", "sample_rate"}
        num_speakers : int, optional
            The number of speakers, when known (overrides the bounds).
        min_speakers, max_speakers : int, optional
            Bounds on the number of speakers, when known.

        An empty ``Annotation`` when nobody speaks; ``AudioError`` naming an empty or
        non-finite file; ValueError for bounds below 1 or crossed.
        """
        num_speakers, min_speakers, max_speakers = speaker_bounds(num_speakers, min_speakers, max_speakers)
        speakers = self.prepare(file, embed=max_speakers >= 2)
        return self.diarize(speakers, num_speakers, min_speakers, None if max_speakers == np.inf else max_speakers)


# ---- tuning the clustering threshold ----------------------------------------------------------------
@dataclass(frozen=True)
class ThresholdTuning:
    """What :func:`tune_threshold` found: the ``threshold`` of least ``der`` (a fraction),
    and the DER of every threshold tried (``ders``, in the order given)."""

    threshold: float
    der: float
    ders: dict[float, float]


def _file_and_reference(item) -> tuple[AudioFile, Annotation, Any]:
    """``(file, reference, uem)`` of a protocol file (its "annotation" and "annotated") or of a
    ``(file, reference)`` / ``(file, reference, uem)`` tuple."""
    if isinstance(item, Mapping):
        if "annotation" not in item:
            raise ValueError(f"tune_threshold: {audio_name(item)} has no reference 'annotation'.")
        return item, item["annotation"], item.get("annotated")
    file, reference, *uem = item
    return file, reference, (uem[0] if uem else None)


def tune_threshold(
    pipeline: DiarizationPipeline,
    files_with_reference: Iterable,
    thresholds: Sequence[float],
    *,
    collar: float = 0.0,
    skip_overlap: bool = False,
) -> ThresholdTuning:
    """The clustering threshold of least diarization error rate over development files.

    Parameters
    ----------
    pipeline : DiarizationPipeline
        Its other parameters are kept.
    files_with_reference : iterable
        Protocol files (with "annotation", and "annotated" as UEM when present), or
        ``(file, reference Annotation)`` / ``(file, reference, uem Timeline)`` tuples.
    thresholds : sequence of float
        The thresholds to try.
    collar, skip_overlap
        pyannote.metrics' ``DiarizationErrorRate`` options (defaults: every frame scored).

    Each file is segmented and embedded once; each threshold then clusters and reconstructs
    every file, and its DER is that of all files together (pyannote.metrics' total). Of
    thresholds tied at the least DER, the median one (a plateau's middle) is kept. What
    ``prepare`` uses (``onset``, ``min_embedding_duration``) stays the pipeline's.
    """
    from pyannote.metrics.diarization import DiarizationErrorRate

    thresholds = [float(value) for value in thresholds]
    if not thresholds:
        raise ValueError("tune_threshold: give at least one threshold.")
    prepared = [(pipeline.prepare(file), reference, uem)
                for file, reference, uem in map(_file_and_reference, files_with_reference)]
    if not prepared:
        raise ValueError("tune_threshold: give at least one development file.")
    ders = {}
    for threshold in thresholds:
        candidate = pipeline.with_parameters(threshold=threshold)
        metric = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
        for speakers, reference, uem in prepared:
            metric(reference, candidate.diarize(speakers), uem=uem)
        ders[threshold] = float(abs(metric))
    least = min(ders.values())
    tied = sorted(threshold for threshold, der in ders.items() if der <= least + 1e-12)
    best = tied[(len(tied) - 1) // 2]
    return ThresholdTuning(threshold=best, der=ders[best], ders=ders)


# ---- tuned hyper-parameters stored beside the model ------------------------------------------------
#: the file of ``audiotask tune``'s hyper-parameters in the diarization model's folder (as
#: ``tuned_postprocessing.FILENAME`` is the detection models')
TUNED_FILENAME = "diarization.json"
TUNED_FORMAT_VERSION = 1


def save_tuned_parameters(model_dir: Union[str, Path], parameters: Mapping[str, Any], **details: Any) -> Path:
    """Write ``model_dir/diarization.json`` (atomically) and return its path.

    ``parameters`` are :meth:`DiarizationPipeline.parameters`; ``details`` what else is worth
    keeping (the embedding model, the DER reached, the thresholds tried), JSON-friendly.
    """
    import json

    from audiotask.io import write_text_atomically

    unknown = sorted(set(parameters) - set(TUNABLE))
    if unknown:
        raise ValueError(f"save_tuned_parameters: unknown parameter(s) {', '.join(unknown)}.")
    data = {"format": TUNED_FORMAT_VERSION, "parameters": dict(parameters), **details}
    # a reader never sees a half-written file, even if this process dies mid-write
    return write_text_atomically(Path(model_dir) / TUNED_FILENAME, json.dumps(data, indent=2) + "\n")


def load_tuned_parameters(model_dir: Union[str, Path]) -> Optional[dict[str, Any]]:
    """What :func:`save_tuned_parameters` wrote in ``model_dir``; None when it has no such file.

    ValueError naming the file when it is not JSON, of another format, or its "parameters"
    are not a dict of :data:`TUNABLE` names (their values are checked by
    :meth:`DiarizationPipeline.with_parameters`).
    """
    from audiotask.io import read_json_object

    path = Path(model_dir) / TUNED_FILENAME
    if not path.is_file():
        return None
    data = read_json_object(path)
    if not isinstance(data.get("parameters"), dict):
        raise ValueError(f"{path}: expected a JSON object with a \"parameters\" object")
    if data.get("format") != TUNED_FORMAT_VERSION:
        raise ValueError(f"{path}: unknown format {data.get('format')!r} (expected {TUNED_FORMAT_VERSION})")
    unknown = sorted(set(data["parameters"]) - set(TUNABLE))
    if unknown:
        raise ValueError(f"{path}: unknown parameter(s) {', '.join(unknown)}; the parameters are {', '.join(TUNABLE)}")
    return data
