"""The speaker diarization pipeline (inference/diarization.py) on synthetic conversations.

The segmentation model is an oracle: it outputs, chunk by chunk, the reference's activity of
the chunk's speakers, put in local slots shuffled from chunk to chunk (so that only the
clustering can tell who is who across chunks). Each speaker speaks on a tone of its own, and
the oracle embedding model returns the energy of each speaker's band: a unit vector of the
speaker's band when it hears that speaker alone, a mixture when it hears more (the test that
the pipeline embeds each local speaker from its own frames). A last test uses the synthetic
voices of ``testing/speakers.py`` and a log-spectrum statistics embedding.
"""

import numpy as np
import pytest
import torch
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from audiotask.core.model import Model
from audiotask.core.powerset import MAX_SPEAKERS_PER_CHUNK, MAX_SPEAKERS_PER_FRAME, POWERSET, Powerset
from audiotask.core.specifications import TASK_NAME, Problem, Resolution, Specifications
from audiotask.inference.diarization import (
    DiarizationPipeline, agglomerative_clusters, assign_to_centroids, speaker_bounds, tune_threshold,
)
from audiotask.testing.speakers import make_voices, turn

SAMPLE_RATE = 16000
HOP = 320  # 0.02-s frames
FRAME = HOP / SAMPLE_RATE
TONES = (300.0, 700.0, 1100.0, 1500.0)
DURATION = 12.0
#: three speakers, two overlaps (2.5-3.0 s, 8.4-8.6 s), every time on the 0.02-s frame grid
TURNS = [(0.5, 3.0, "A"), (2.5, 5.0, "B"), (5.4, 7.0, "C"), (7.2, 8.6, "A"), (8.4, 10.0, "B"), (10.2, 11.5, "C")]


# ---- the oracle models ---------------------------------------------------------------------------
def diarization_specifications(duration: float, powerset: bool, local: int = 3, per_frame: int = 2):
    classes = Powerset(local, per_frame).class_names if powerset else [str(k + 1) for k in range(local)]
    problem = Problem.MONO_LABEL_CLASSIFICATION if powerset else Problem.MULTI_LABEL_CLASSIFICATION
    return Specifications(problem, Resolution.FRAME, duration, classes=classes, permutation_invariant=True,
                          extra={TASK_NAME: "speaker-diarization", MAX_SPEAKERS_PER_CHUNK: local,
                                 MAX_SPEAKERS_PER_FRAME: per_frame, POWERSET: powerset})


class OracleSegmentation(Model):
    """A diarization model that knows the reference: :meth:`listen` gives it a file and its
    (file frames, speakers) activity; each chunk it is given is found in the file by its
    first samples, and its speakers go to local slots shuffled chunk by chunk."""

    FINGERPRINT = 32

    def __init__(self, duration: float = 3.0, powerset: bool = True):
        super().__init__(sample_rate=SAMPLE_RATE)
        self.frame_hop = HOP
        self.local = 3
        self.powerset = Powerset(self.local, 2) if powerset else None
        self.attach_specifications(diarization_specifications(duration, powerset))
        self.slots = {}  # chunk's first frame -> local slot of each speaker (for the tests to look at)

    def build(self) -> None:
        pass

    def listen(self, file: dict, activity: np.ndarray) -> None:
        samples = self.audio(file)[0][0].numpy()
        self.activity = activity
        self.starts = {samples[p:p + self.FINGERPRINT].tobytes(): p // HOP
                       for p in range(0, len(samples) - self.FINGERPRINT, HOP)}

    def local_activity(self, first: int, num_frames: int) -> np.ndarray:
        speakers = self.activity[first:first + num_frames]
        speakers = np.pad(speakers, ((0, num_frames - len(speakers)), (0, 0)))
        talking = np.flatnonzero(speakers.any(axis=0))
        talking = talking[np.argsort(-speakers[:, talking].sum(axis=0), kind="stable")][:self.local]
        slots = np.random.default_rng(first).permutation(self.local)[:len(talking)]
        self.slots[first] = dict(zip(talking.tolist(), slots.tolist()))
        local = np.zeros((num_frames, self.local), dtype=np.float32)
        local[:, slots] = speakers[:, talking]
        return local

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        num_frames = waveforms.shape[-1] // HOP
        local = torch.from_numpy(np.stack([
            self.local_activity(self.starts[chunk[0, :self.FINGERPRINT].numpy().tobytes()], num_frames)
            for chunk in waveforms]))
        if self.powerset is None:
            return 20.0 * local - 10.0
        return 20.0 * self.powerset.to_powerset(local).float()


class BandEmbedding(Model):
    """The energy of each speaker's tone band: a unit vector per speaker heard alone."""

    def __init__(self, duration: float = 1.0):
        super().__init__(sample_rate=SAMPLE_RATE)
        self.attach_specifications(Specifications(Problem.REPRESENTATION, Resolution.CHUNK, duration,
                                                  extra={"dimension": len(TONES)}))
        self.calls = 0

    def build(self) -> None:
        pass

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        spectrum = torch.fft.rfft(waveforms[:, 0]).abs() ** 2
        frequencies = torch.fft.rfftfreq(waveforms.shape[-1], 1 / SAMPLE_RATE)
        bands = [(frequencies - tone).abs() < 60 for tone in TONES]
        return torch.stack([spectrum[:, band].sum(dim=1) for band in bands], dim=1).sqrt()


class SpectrumStatistics(Model):
    """Mean log energy of 48 bands over 32-ms frames, less its mean: a crude voice print."""

    def __init__(self, duration: float = 1.0):
        super().__init__(sample_rate=SAMPLE_RATE)
        self.attach_specifications(Specifications(Problem.REPRESENTATION, Resolution.CHUNK, duration,
                                                  extra={"dimension": 48}))

    def build(self) -> None:
        pass

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(waveforms[:, 0], 512, hop_length=256, window=torch.hann_window(512),
                              return_complex=True).abs() ** 2  # (batch, 257, frames)
        bands = spectrum[:, 1:241].reshape(len(waveforms), 48, 5, -1).sum(dim=2)
        statistics = torch.log(bands + 1e-6).mean(dim=2)
        return statistics - statistics.mean(dim=1, keepdim=True)


# ---- conversations ---------------------------------------------------------------------------------
def reference_of(turns, uri: str = "talk") -> Annotation:
    reference = Annotation(uri=uri)
    for index, (start, end, speaker) in enumerate(turns):
        reference[Segment(start, end), index] = speaker
    return reference


def frame_activity(turns, speakers, duration: float = DURATION) -> np.ndarray:
    """(file frames, speakers) 0/1: frames whose centre lies in the speaker's turns."""
    centres = FRAME * np.arange(int(round(duration / FRAME))) + FRAME / 2
    activity = np.zeros((len(centres), len(speakers)), dtype=np.float32)
    for start, end, speaker in turns:
        activity[(centres >= start) & (centres < end), speakers.index(speaker)] = 1.0
    return activity


def tone_conversation(turns=TURNS, duration: float = DURATION, seed: int = 0):
    rng = np.random.default_rng(seed)
    speakers = sorted({speaker for _, _, speaker in turns})
    time = np.arange(int(round(duration * SAMPLE_RATE))) / SAMPLE_RATE
    samples = 0.001 * rng.standard_normal(len(time))  # a quiet room: no two chunks start alike
    for start, end, speaker in turns:
        inside = (time >= start) & (time < end)
        samples[inside] += 0.1 * np.sin(2 * np.pi * TONES[speakers.index(speaker)] * time[inside])
    file = {"waveform": torch.from_numpy(samples.astype(np.float32))[None], "sample_rate": SAMPLE_RATE,
            "uri": "talk"}
    return file, reference_of(turns), frame_activity(turns, speakers, duration)


def der(reference: Annotation, hypothesis: Annotation, duration: float = DURATION) -> float:
    return DiarizationErrorRate(collar=0.0, skip_overlap=False)(reference, hypothesis,
                                                                uem=Timeline([Segment(0, duration)]))


def oracle_pipeline(activity, file, powerset: bool = True, **parameters):
    segmentation = OracleSegmentation(powerset=powerset)
    segmentation.listen(file, activity)
    return DiarizationPipeline(segmentation, BandEmbedding(), **parameters)


@pytest.fixture(scope="module")
def conversation():
    return tone_conversation()


# ---- the pipeline recovers the reference ---------------------------------------------------------
@pytest.mark.parametrize("bounds", [dict(num_speakers=3), dict(), dict(min_speakers=2, max_speakers=4)],
                         ids=["num_speakers", "threshold", "bounds"])
def test_recovers_the_reference(conversation, bounds):
    file, reference, activity = conversation
    hypothesis = oracle_pipeline(activity, file)(file, **bounds)
    assert der(reference, hypothesis) < 1e-6
    assert hypothesis.uri == "talk"
    # labelled in order of first turn
    assert hypothesis.labels() == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]
    assert hypothesis.argmax(Segment(0.5, 2.5)) == "SPEAKER_00"


def test_a_multi_label_segmentation_model(conversation):
    file, reference, activity = conversation
    assert der(reference, oracle_pipeline(activity, file, powerset=False)(file)) < 1e-6


def test_overlapping_speech_is_two_speakers_at_once(conversation):
    file, reference, activity = conversation
    hypothesis = oracle_pipeline(activity, file)(file)
    overlap = hypothesis.get_overlap()
    assert overlap == Timeline([Segment(2.5, 3.0), Segment(8.4, 8.6)])
    assert set(hypothesis.crop(Segment(2.6, 2.9)).labels()) == {"SPEAKER_00", "SPEAKER_01"}


def test_local_permutations_are_resolved_by_clustering(conversation):
    file, reference, activity = conversation
    pipeline = oracle_pipeline(activity, file, threshold=0.5)
    speakers = pipeline.prepare(file)
    slots = pipeline.segmentation.model.slots
    # speaker A sits in more than one local slot across its chunks: the model's order is no identity
    assert len({chunk_slots[0] for chunk_slots in slots.values() if 0 in chunk_slots}) > 1
    clusters = pipeline.cluster(speakers, None, 1, np.inf)
    first_frames = np.rint(speakers.starts / FRAME).astype(int)
    clusters_of = {}  # true speaker -> the clusters of its (chunk, slot)s
    for chunk, first in enumerate(first_frames):
        for speaker, slot in slots[first].items():
            clusters_of.setdefault(speaker, set()).add(int(clusters[chunk, slot]))
    assert all(len(found) == 1 for found in clusters_of.values())
    assert len(set.union(*clusters_of.values())) == 3


def test_each_local_speaker_is_embedded_from_its_own_speech(conversation):
    file, reference, activity = conversation
    speakers = oracle_pipeline(activity, file).prepare(file)
    active, trusted = speakers.active, speakers.trusted
    overlapped = (speakers.activity.sum(axis=2) > 1).any(axis=1)  # chunks with overlapping speech
    # a local speaker heard alone long enough is embedded from those frames only: one tone's
    # band, even in the chunks where it also speaks over another speaker
    assert (trusted & overlapped[:, None]).sum() >= 4
    assert np.all(speakers.embeddings[trusted].max(axis=1) > 0.99)
    assert np.all(np.isnan(speakers.embeddings[~active]))
    # the others (heard at a chunk's edge, or only over another speaker) are embedded from
    # all their frames, and only assigned to a cluster: a mixture of bands is one of them
    assert (active & ~trusted).any()
    assert speakers.embeddings[active & ~trusted].max(axis=1).min() < 0.8


def test_bounds_on_the_number_of_speakers(conversation):
    file, reference, activity = conversation
    pipeline = oracle_pipeline(activity, file)
    assert len(pipeline(file, max_speakers=2).labels()) == 2
    assert len(pipeline(file, num_speakers=2).labels()) == 2
    # a threshold that merges everything, overruled by the lower bound
    merged = pipeline.with_parameters(threshold=1.9)
    assert len(merged(file).labels()) == 1
    assert der(reference, merged(file, min_speakers=3)) < 1e-6


def test_one_speaker_needs_no_embedding(conversation):
    file, reference, activity = conversation
    pipeline = oracle_pipeline(activity, file)
    hypothesis = pipeline(file, num_speakers=1)
    assert pipeline.embedding.model.calls == 0
    assert hypothesis.labels() == ["SPEAKER_00"]
    assert hypothesis.get_timeline().support() == reference.get_timeline().support()


def test_a_file_without_speech_gives_an_empty_annotation():
    file, reference, activity = tone_conversation(turns=[], duration=4.0)
    pipeline = oracle_pipeline(np.zeros((200, 1), dtype=np.float32), file)
    hypothesis = pipeline(file)
    assert isinstance(hypothesis, Annotation) and len(hypothesis) == 0 and hypothesis.uri == "talk"
    assert pipeline.embedding.model.calls == 0


def test_min_durations_shape_the_turns():
    turns = [(0.5, 2.0, "A"), (2.1, 4.0, "A"), (4.5, 4.56, "B"), (5.0, 7.0, "B")]
    file, reference, activity = tone_conversation(turns=turns, duration=8.0)
    pipeline = oracle_pipeline(activity, file)
    plain = pipeline(file, num_speakers=2)
    assert len(plain) == 4
    shaped = pipeline.with_parameters(min_duration_off=0.2, min_duration_on=0.1)(file, num_speakers=2)
    assert [(round(s.start, 3), round(s.end, 3)) for s, _ in shaped.itertracks()] == [(0.5, 4.0), (5.0, 7.0)]


# ---- hyper-parameters and tuning ------------------------------------------------------------------
def test_parameters_are_a_plain_dict(conversation):
    file, reference, activity = conversation
    pipeline = oracle_pipeline(activity, file, threshold=0.4)
    parameters = pipeline.parameters()
    assert parameters["threshold"] == 0.4 and parameters["method"] == "centroid"
    changed = pipeline.with_parameters(threshold=1.0, min_duration_off=0.1)
    assert changed.parameters() == {**parameters, "threshold": 1.0, "min_duration_off": 0.1}
    assert pipeline.threshold == 0.4 and changed.segmentation is pipeline.segmentation
    with pytest.raises(ValueError, match="unknown parameter.*thresold"):
        pipeline.with_parameters(thresold=0.5)
    with pytest.raises(ValueError, match="method must be one of"):
        pipeline.with_parameters(method="nearest")
    with pytest.raises(ValueError, match="min_speakers .3. must not exceed max_speakers .2."):
        pipeline(file, min_speakers=3, max_speakers=2)


def test_tune_threshold_picks_the_least_der(conversation):
    file, reference, activity = conversation
    pipeline = oracle_pipeline(activity, file)
    uem = Timeline([Segment(0, DURATION)])
    tuned = tune_threshold(pipeline, [(file, reference, uem), {**file, "annotation": reference, "annotated": uem}],
                           [0.3, 0.7, 1.9])
    assert tuned.der < 1e-6 and tuned.threshold == 0.3  # the lower of the tied two
    assert tuned.ders[1.9] > 0.3  # one speaker for three


def test_models_of_other_tasks_are_refused(conversation):
    file, reference, activity = conversation
    with pytest.raises(ValueError, match="REPRESENTATION"):
        DiarizationPipeline(OracleSegmentation(), OracleSegmentation())
    with pytest.raises(ValueError, match="must be a FRAME model"):
        DiarizationPipeline(BandEmbedding(), BandEmbedding())


# ---- clustering, against pyannote.audio's -----------------------------------------------------------
def pyannote_cluster(embeddings, min_clusters, max_clusters, num_clusters, threshold, min_cluster_size,
                     method="centroid"):
    """pyannote.audio's ``AgglomerativeClustering.cluster`` (pyannote/audio/pipelines/clustering.py),
    transcribed (its print left out)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import cdist

    num_embeddings, _ = embeddings.shape
    min_cluster_size = min(min_cluster_size, max(1, round(0.1 * num_embeddings)))
    if num_embeddings == 1:
        return np.zeros((1,), dtype=np.uint8)
    embeddings = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True)
    dendrogram = linkage(embeddings, method=method, metric="euclidean")
    clusters = fcluster(dendrogram, threshold, criterion="distance") - 1
    cluster_unique, cluster_counts = np.unique(clusters, return_counts=True)
    large_clusters = cluster_unique[cluster_counts >= min_cluster_size]
    num_large_clusters = len(large_clusters)
    if num_large_clusters < min_clusters:
        num_clusters = min_clusters
    elif num_large_clusters > max_clusters:
        num_clusters = max_clusters
    if num_clusters is not None and num_large_clusters != num_clusters:
        _dendrogram = np.copy(dendrogram)
        _dendrogram[:, 2] = np.arange(num_embeddings - 1)
        best_iteration = num_embeddings - 1
        best_num_large_clusters = 1
        for iteration in np.argsort(np.abs(dendrogram[:, 2] - threshold)):
            new_cluster_size = _dendrogram[iteration, 3]
            if new_cluster_size < min_cluster_size:
                continue
            clusters = fcluster(_dendrogram, iteration, criterion="distance") - 1
            cluster_unique, cluster_counts = np.unique(clusters, return_counts=True)
            large_clusters = cluster_unique[cluster_counts >= min_cluster_size]
            num_large_clusters = len(large_clusters)
            if abs(num_large_clusters - num_clusters) < abs(best_num_large_clusters - num_clusters):
                best_iteration = iteration
                best_num_large_clusters = num_large_clusters
            if num_large_clusters == num_clusters:
                break
        if best_num_large_clusters != num_clusters:
            clusters = fcluster(_dendrogram, best_iteration, criterion="distance") - 1
            cluster_unique, cluster_counts = np.unique(clusters, return_counts=True)
            large_clusters = cluster_unique[cluster_counts >= min_cluster_size]
            num_large_clusters = len(large_clusters)
    if num_large_clusters == 0:
        clusters[:] = 0
        return clusters
    small_clusters = cluster_unique[cluster_counts < min_cluster_size]
    if len(small_clusters) == 0:
        return clusters
    large_centroids = np.vstack([np.mean(embeddings[clusters == k], axis=0) for k in large_clusters])
    small_centroids = np.vstack([np.mean(embeddings[clusters == k], axis=0) for k in small_clusters])
    centroids_cdist = cdist(large_centroids, small_centroids, metric="cosine")
    for small_k, large_k in enumerate(np.argmin(centroids_cdist, axis=0)):
        clusters[clusters == small_clusters[small_k]] = large_clusters[large_k]
    _, clusters = np.unique(clusters, return_inverse=True)
    return clusters


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [dict(num_clusters=4), dict(min_clusters=6, max_clusters=8),
                                    dict(max_clusters=2), dict()])
def test_clustering_is_pyannotes(seed, target):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, 16))
    embeddings = centres[rng.integers(0, 5, 120)] + rng.uniform(0.3, 1.2) * rng.standard_normal((120, 16))
    threshold, min_size = rng.uniform(0.3, 1.2), int(rng.integers(1, 15))
    num, low, high = target.get("num_clusters"), target.get("min_clusters", 1), target.get("max_clusters", 120)
    if num is not None:
        low = high = num
    ours = agglomerative_clusters(embeddings, threshold=threshold, min_cluster_size=min_size, **target)
    theirs = pyannote_cluster(embeddings.copy(), low, high, num, threshold, min_size)
    assert same_partition(ours, np.asarray(theirs))


def test_constrained_assignment_keeps_two_local_speakers_apart():
    centroids = np.array([[1.0, 0.0], [0.0, 1.0]])
    # both local speakers of chunk 0 are nearest cluster 0; the second is less so
    embeddings = np.array([[[1.0, 0.0], [0.8, 0.6], [np.nan, np.nan]]])
    active = np.array([[True, True, False]])
    assert assign_to_centroids(embeddings, active, centroids, constrained=False).tolist() == [[0, 0, -1]]
    assert assign_to_centroids(embeddings, active, centroids).tolist() == [[0, 1, -1]]


def test_speaker_bounds():
    assert speaker_bounds() == (None, 1, np.inf)
    assert speaker_bounds(num_speakers=3) == (3, 3, 3)
    assert speaker_bounds(min_speakers=2, max_speakers=2) == (2, 2, 2)
    with pytest.raises(ValueError, match="at least 1"):
        speaker_bounds(max_speakers=0)


# ---- synthetic voices --------------------------------------------------------------------------------
def test_synthetic_voices_with_spectrum_statistics():
    rng = np.random.default_rng(1)
    voices = dict(zip("ABC", make_voices(3, seed=3)))
    samples = 0.003 * rng.standard_normal(int(DURATION * SAMPLE_RATE))
    for start, end, speaker in TURNS:
        begin = int(round(start * SAMPLE_RATE))
        speech = 0.1 * turn(voices[speaker], end - start, SAMPLE_RATE, rng)
        samples[begin:begin + len(speech)] += speech
    file = {"waveform": torch.from_numpy(samples.astype(np.float32))[None], "sample_rate": SAMPLE_RATE, "uri": "talk"}
    segmentation = OracleSegmentation()
    segmentation.listen(file, frame_activity(TURNS, ["A", "B", "C"]))
    pipeline = DiarizationPipeline(segmentation, SpectrumStatistics())
    reference = reference_of(TURNS)
    assert der(reference, pipeline(file, num_speakers=3)) < 0.02
    # these crude voice prints lie close together: the threshold is the tuned one
    uem = Timeline([Segment(0, DURATION)])
    tuned = tune_threshold(pipeline, [(file, reference, uem)], np.linspace(0.05, 0.5, 10))
    assert tuned.der < 0.02
    estimated = pipeline.with_parameters(threshold=tuned.threshold)(file, min_speakers=2, max_speakers=5)
    assert der(reference, estimated) < 0.02 and len(estimated.labels()) == 3
