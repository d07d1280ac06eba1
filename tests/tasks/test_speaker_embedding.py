"""Speaker embeddings: single-speaker chunks, balanced batches, AAM-softmax, verification
metrics, the embedding head kept apart from the loss's class centres, file and segment
embeddings."""

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from pyannote.core import Segment

from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.inference.embeddings import file_embedding, segment_embeddings, window_starts
from audiotask.inference.inference import Inference
from audiotask.metrics.verification import (
    equal_error_rate, format_verification, min_dcf, read_trials, verification_report,
)
from audiotask.models import CRNN, Debug
from audiotask.models.crnn import statistics_pooling
from audiotask.models.margin import AdditiveAngularMargin, additive_angular_margin_logits
from audiotask.tasks.speaker_embedding import (
    SpeakerEmbedding, intersect_regions, single_speaker_regions, trial_pairs,
)
from audiotask.testing.dummies import load_protocol
from audiotask.testing.speakers import make_speaker_protocol
from helpers import quiet_trainer

PROTOCOL = "Speakers.SpeakerDiarization.Speakers"
SMALL_CRNN = dict(channels=(8, 16), time_pooling=(2, 2), n_mels=32, hidden_size=16)


@pytest.fixture(scope="module")
def speakers_yml(tmp_path_factory):
    return make_speaker_protocol(tmp_path_factory.mktemp("speakers"))


@pytest.fixture
def protocol(speakers_yml):
    return load_protocol(speakers_yml, PROTOCOL)


def make_task(protocol, tmp_path, **options):
    options = {"speakers_per_batch": 4, "batch_size": 8, "duration": 1.0, "dimension": 16, "num_workers": 0,
               "cache": tmp_path / "cache", **options}
    return SpeakerEmbedding(protocol, **options)


def set_up(task, model=None):
    model = model or CRNN(**SMALL_CRNN)
    model.task = task
    model.setup("fit")
    return model


# ---- single-speaker stretches ------------------------------------------------------------
def test_single_speaker_regions_leave_out_overlap_and_unite_a_speakers_touching_turns():
    turns = [  # (start, end, speaker)
        (0.0, 3.0, 0), (2.0, 5.0, 1),  # overlap [2, 3]
        (5.0, 6.0, 0), (6.0, 8.0, 0),  # touching turns of one speaker: one stretch...
        (7.5, 7.8, 2),  # ...cut by another's short turn
        (9.0, 10.0, 1),  # after a silence
        (9.5, 9.5, 2),  # an empty turn changes nothing
    ]
    starts, ends, labels = single_speaker_regions(*zip(*turns))
    assert np.c_[starts, ends].tolist() == [[0.0, 2.0], [3.0, 5.0], [5.0, 7.5], [7.8, 8.0], [9.0, 10.0]]
    assert labels.tolist() == [0, 1, 0, 0, 1]


def test_single_speaker_regions_of_two_simultaneous_turns_are_empty():
    starts, ends, labels = single_speaker_regions([1.0, 1.0], [2.0, 2.0], [3, 4])
    assert len(starts) == len(ends) == len(labels) == 0
    starts, ends, labels = single_speaker_regions([], [], [])
    assert len(starts) == 0


def test_single_speaker_regions_are_cut_to_the_annotated_regions():
    pieces, index = intersect_regions(np.array([[0.0, 4.0], [5.0, 6.0], [7.0, 9.0]]), np.array([[1.0, 2.0], [3.0, 8.0]]))
    assert pieces.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    assert index.tolist() == [0, 0, 1, 2]


# ---- batches -----------------------------------------------------------------------------
def spoken_alone(annotation, speaker, start, end) -> bool:
    """Whether ``speaker``, and nobody else, talks all through ``[start, end]`` (from the RTTM)."""
    window = Segment(start, end)
    cropped = annotation.crop(window)
    if set(cropped.labels()) != {speaker}:
        return False
    return abs(cropped.label_timeline(speaker).support().duration() - window.duration) < 1e-6


def test_training_batches_hold_n_speakers_times_m_chunks_each_spoken_by_its_speaker_alone(protocol, tmp_path):
    task = make_task(protocol, tmp_path, speakers_per_batch=2, batch_size=6)
    set_up(task)
    annotations = {file["uri"]: file["annotation"] for file in protocol.train()}
    uris = task.metadata.subsets["train"].uri
    batches = task.train_batches(epoch=0)
    sampler = task.make_sampler(0)
    for _ in range(10):
        chunks = sampler.take(6)
        batch = next(batches)
        y = batch["y"].tolist()
        assert y == chunks.labels.tolist() and batch["X"].shape == (6, 1, 16000)
        # two speakers, three chunks each, one after the other
        assert len(set(y)) == 2 and y[0] == y[1] == y[2] and y[3] == y[4] == y[5]
        for file, start, label in zip(chunks.files.tolist(), chunks.starts.tolist(), y):
            speaker = task.speakers[label]
            assert spoken_alone(annotations[str(uris[file])], speaker, start, start + 1.0), (speaker, file, start)


def test_training_speakers_are_those_talking_alone_for_a_whole_chunk(protocol, tmp_path):
    task = make_task(protocol, tmp_path)
    set_up(task)
    assert task.speakers == ["spk00", "spk01", "spk02", "spk03"]  # the train subset's, not development's
    assert task.specifications.classes is None and task.specifications.num_outputs == 16
    assert task.specifications.extra == {"task": "speaker-embedding", "dimension": 16}
    head = task.model.training_heads["speaker_classifier"]
    assert (head.num_classes, head.dimension, head.margin, head.scale) == (4, 16, 0.2, 30.0)


def test_more_speakers_per_batch_than_training_speakers_is_refused(protocol, tmp_path):
    with pytest.raises(ValueError, match="5 speakers per batch, but only 4 training speaker"):
        set_up(make_task(protocol, tmp_path, speakers_per_batch=5, batch_size=10))
    with pytest.raises(ValueError, match="speakers_per_batch, not labels_per_batch"):
        make_task(protocol, tmp_path, labels_per_batch=2)


def test_the_default_speakers_per_batch_fits_the_training_speakers_and_says_so(protocol, tmp_path):
    """8 by default, at most what batch_size allows (6 of 6); with 4 training speakers, 3 (the
    largest number of them that divides 6), with a warning, rather than stopping (issue 23,
    item 6)."""
    assert make_task(protocol, tmp_path, speakers_per_batch=None, batch_size=32).speakers_per_batch == 8
    task = make_task(protocol, tmp_path, speakers_per_batch=None, batch_size=6)
    assert task.speakers_per_batch == task.labels_per_batch == 6 and task.adapts_speakers_per_batch
    with pytest.warns(UserWarning, match="only 4 training speakers talk alone for 1 s or more: 3 speakers per "
                                         "batch instead of 6"):
        set_up(task)
    assert task.speakers_per_batch == task.labels_per_batch == 3


def longest_alone(task) -> list[float]:
    """Each training speaker's longest single-speaker stretch, longest first."""
    regions = task.speaker_regions("train", duration=0.0)
    longest = {}
    for label, length in zip(regions.labels.tolist(), (regions.ends - regions.starts).tolist()):
        longest[label] = max(longest.get(label, 0.0), length)
    return sorted(longest.values(), reverse=True)


def test_the_default_duration_fits_the_training_speakers_and_says_so(protocol, tmp_path, monkeypatch):
    """When fewer than two training speakers talk alone for the default duration, it becomes
    the largest, in tenths of a second, at which two do (issue 23, item 6); a duration given
    stays, and stops set-up, as before."""
    import audiotask.tasks.speaker_embedding as speaker_embedding

    measured = make_task(protocol, tmp_path)
    set_up(measured)
    longest = longest_alone(measured)
    assert len(longest) == 4 and longest[1] >= 1.0
    monkeypatch.setattr(speaker_embedding, "DEFAULT_DURATION", longest[0] + 1.0)  # nobody talks that long
    task = make_task(protocol, tmp_path, duration=None, speakers_per_batch=None, batch_size=6)
    assert task.adapts_duration and task.duration == longest[0] + 1.0
    expected = math.floor(longest[1] * 10) / 10
    with pytest.warns(UserWarning, match=rf"only 0 training speaker\(s\) talk alone for .* s or more: chunks of "
                                         rf"{expected:g} s instead \(the longest at which 2 do"):
        set_up(task)
    assert task.duration == task.min_duration == task.specifications.duration == expected
    assert len(task.speakers) >= 2 and task.speakers_per_batch >= 2
    # a speakers per batch given is what the fitted duration must serve: 3 speakers, shorter chunks
    task = make_task(protocol, tmp_path, duration=None, speakers_per_batch=3, batch_size=6)
    with pytest.warns(UserWarning, match="the longest at which 3 do"):
        set_up(task)
    assert task.duration == math.floor(longest[2] * 10) / 10 and len(task.speakers) >= 3
    # given, the duration is the user's: set-up stops and says which
    with pytest.raises(ValueError, match="only 0 training speaker"):
        set_up(make_task(protocol, tmp_path, duration=longest[0] + 1.0))


def test_validation_chunks_are_consecutive_chunks_of_development_speakers_alone(protocol, tmp_path):
    task = make_task(protocol, tmp_path)
    set_up(task)
    annotations = {file["uri"]: file["annotation"] for file in protocol.development()}
    development = task.metadata.subsets["development"]
    chunks, speakers = task._validation_chunks, task.validation_speakers
    assert len(chunks) >= 10 and set(task.metadata.labels[k] for k in speakers) == {"spk04", "spk05"}
    for (file, start), label in zip(chunks.tolist(), speakers.tolist()):
        uri = str(development.uri[int(file)])
        assert spoken_alone(annotations[uri], task.metadata.labels[label], start, start + 1.0)


def test_trials_are_every_pair_or_a_fixed_sample_without_self_pairs():
    first, second = trial_pairs(4, max_trials=6)
    assert list(zip(first.tolist(), second.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    first, second = trial_pairs(1000, max_trials=500)
    again = trial_pairs(1000, max_trials=500)
    assert len(first) == 500 and (first != second).all()
    assert np.array_equal(first, again[0]) and np.array_equal(second, again[1])


# ---- the loss ----------------------------------------------------------------------------
def test_additive_angular_margin_adds_the_margin_to_the_target_angle_only_then_scales():
    cosine = torch.tensor([[0.8, 0.1, -0.3], [0.2, 0.5, 0.0]])
    targets = torch.tensor([0, 2])
    logits = additive_angular_margin_logits(cosine, targets, margin=0.2, scale=10.0)
    expected = 10.0 * torch.tensor([
        [math.cos(math.acos(0.8) + 0.2), 0.1, -0.3],
        [0.2, 0.5, math.cos(math.acos(0.0) + 0.2)],
    ])
    torch.testing.assert_close(logits, expected)
    # past pi the cosine would rise again: there the target logit keeps falling instead
    far = additive_angular_margin_logits(torch.tensor([[-0.999, 0.0]]), torch.tensor([0]), margin=0.2, scale=1.0)
    assert far[0, 0].item() == pytest.approx(-0.999 - 0.2 * math.sin(0.2))


def test_additive_angular_margin_loss_is_the_cross_entropy_of_normalised_cosines():
    loss = AdditiveAngularMargin(3, 2, margin=0.3, scale=5.0)
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))  # norms do not matter
    embeddings = torch.tensor([[3.0, 3.0]])  # 45 degrees from classes 0 and 1, 180 from class 2
    angles = [math.pi / 4 + 0.3, math.pi / 4, math.pi]  # target: class 0, margin added
    logits = [5.0 * math.cos(angles[0]), 5.0 * math.cos(angles[1]), 5.0 * -1.0]
    expected = -logits[0] + math.log(sum(math.exp(value) for value in logits))
    assert loss(embeddings, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match=r"embeddings must be \(batch, 2\)"):
        loss(torch.zeros(1, 3), torch.tensor([0]))


# ---- verification metrics ----------------------------------------------------------------
def test_equal_error_rate_of_perfect_random_and_reversed_scorers():
    is_target = np.array([True] * 3 + [False] * 3)
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    assert equal_error_rate(scores, is_target) == (0.0, 0.7)
    assert equal_error_rate(-scores, is_target)[0] == 1.0
    rng = np.random.default_rng(0)
    random_target = rng.random(20000) < 0.3
    assert equal_error_rate(rng.random(20000), random_target)[0] == pytest.approx(0.5, abs=0.015)


def test_equal_error_rate_and_min_dcf_on_a_hand_computed_example():
    # targets 0.9, 0.6, 0.4; non-targets 0.5, 0.3, 0.1: accepting from 0.5 misses 1/3 and
    # falsely accepts 1/3
    scores = np.array([0.9, 0.6, 0.4, 0.5, 0.3, 0.1])
    is_target = np.array([True, True, True, False, False, False])
    eer, threshold = equal_error_rate(scores, is_target)
    assert eer == pytest.approx(1 / 3) and threshold == 0.5
    # p_target 0.5, unit costs: cost / 0.5 = P_miss + P_fa, least (1/3) from 0.6 or 0.4
    assert min_dcf(scores, is_target, p_target=0.5) == pytest.approx(1 / 3)
    # a target and a non-target tied at 0.5: from 0.9 to 0.5, misses go 1/2 -> 0 and false
    # alarms 0 -> 1/2 at once; they cross half-way, as do the thresholds
    eer, threshold = equal_error_rate([0.9, 0.5, 0.5, 0.1], [True, True, False, False])
    assert eer == pytest.approx(0.25) and threshold == pytest.approx(0.7)


def test_min_dcf_of_perfect_and_uninformative_scorers():
    is_target = np.array([True] * 10 + [False] * 90)
    scores = np.where(is_target, 1.0, 0.0) + np.linspace(0, 0.1, 100)
    assert min_dcf(scores, is_target) == 0.0
    assert min_dcf(np.zeros(100), is_target) == 1.0  # one score: accept all or nothing
    with pytest.raises(ValueError, match="target and non-target trials"):
        min_dcf([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="p_target must be in"):
        min_dcf(scores, is_target, p_target=1.0)


def test_read_trials_accepts_voxceleb_and_nist_keys(tmp_path):
    path = tmp_path / "trials.txt"
    path.write_text("1 id1/a/1.wav id1/b/2.wav\n\n# a comment\n0 id1/a/1.wav id2/c/3.wav\n"
                    "target x y\nnontarget x z\nTARGET y z\n")
    trials = read_trials(path)
    assert list(trials) == [(True, "id1/a/1.wav", "id1/b/2.wav"), (False, "id1/a/1.wav", "id2/c/3.wav"),
                            (True, "x", "y"), (False, "x", "z"), (True, "y", "z")]
    assert trials.lines == [1, 4, 5, 6, 7] and trials.path == str(path)


@pytest.mark.parametrize("text, line", [("1 a b\n2 a b\n", 2), ("1 a b\n\nyes a b\n", 3), ("1 a\n", 1), ("1 a b c\n", 1)])
def test_read_trials_names_the_file_and_line_of_a_bad_trial(tmp_path, text, line):
    path = tmp_path / "trials.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"trials.txt, line {line}: expected 'KEY enrolment test'"):
        read_trials(path)


def test_verification_report_matches_names_with_or_without_extension_and_names_a_missing_one(tmp_path):
    embeddings = {"a/1": np.array([1.0, 0.0]), "a/2.wav": np.array([2.0, 0.1]), "b/1": np.array([0.0, 1.0]),
                  "b/2": np.array([0.1, 3.0])}
    path = tmp_path / "trials.txt"
    path.write_text("1 a/1.wav a/2.wav\n0 a/1.wav b/1.wav\n1 b/1.wav b/2\n0 a/2 b/2.wav\n")
    report = verification_report(embeddings, read_trials(path))
    assert report["eer"] == 0.0 and report["min_dcf"] == 0.0
    assert (report["trials"], report["targets"], report["p_target"]) == (4, 2, 0.01)
    assert format_verification(report).startswith("EER 0.00 % (threshold ")
    path.write_text("1 a/1.wav a/2.wav\n\n0 a/1.wav c/9.wav\n")
    with pytest.raises(ValueError, match=r"trials.txt, line 3: no embedding for 'c/9.wav'"):
        verification_report(embeddings, read_trials(path))
    with pytest.raises(ValueError, match=r"my list, line 1: no embedding for 'z'"):
        verification_report(embeddings, [(True, "z", "a/1")], source="my list")


# ---- the embedding head ------------------------------------------------------------------
def embedding_specifications(dimension=12, resolution=Resolution.CHUNK):
    return Specifications(Problem.REPRESENTATION, resolution, 1.0, extra={"task": "speaker-embedding", "dimension": dimension})


def test_statistics_pooling_is_the_mean_and_standard_deviation_over_frames():
    features = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])  # (batch 1, frames 2, features 2)
    pooled = statistics_pooling(features, eps=0.0)
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 0.0, 1.0, 0.0]]))


def test_crnn_embeds_each_chunk_into_the_specified_dimension():
    model = CRNN(**SMALL_CRNN)
    model.attach_specifications(embedding_specifications(12))
    model.eval()
    waveforms = torch.randn(3, 1, 16000)
    embeddings = model(waveforms)
    assert embeddings.shape == (3, 12)
    # batched equals one by one
    torch.testing.assert_close(torch.cat([model(waveforms[i : i + 1]) for i in range(3)]), embeddings)


@pytest.mark.parametrize("architecture", [CRNN, Debug])
def test_an_embedding_per_frame_is_refused(architecture):
    with pytest.raises(ValueError, match="CHUNK resolution only"):
        architecture().attach_specifications(embedding_specifications(resolution=Resolution.FRAME))


# ---- training, saving, resuming ----------------------------------------------------------
class Losses(pl.Callback):
    def __init__(self):
        self.values = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.values.append(float(outputs["loss"]))


def test_the_loss_decreases_and_validation_logs_the_equal_error_rate(protocol, tmp_path):
    torch.manual_seed(0)
    task = make_task(protocol, tmp_path)
    model = CRNN(**SMALL_CRNN, task=task)
    model.learning_rate = 3e-3
    losses = Losses()
    assert task.monitor == ("val/eer", "min")
    trainer = quiet_trainer(max_steps=24, callbacks=[losses], check_val_every_n_epoch=None, val_check_interval=24,
                            num_sanity_val_steps=0)
    trainer.fit(model)
    first, last = np.mean(losses.values[:4]), np.mean(losses.values[-4:])
    assert last < 0.7 * first, losses.values
    assert 0.0 <= float(trainer.callback_metrics["val/eer"]) <= 0.5


def test_saved_models_keep_the_embedding_and_checkpoints_keep_the_loss_centres(protocol, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint
    from safetensors import safe_open

    torch.manual_seed(0)
    task = make_task(protocol, tmp_path)
    model = CRNN(**SMALL_CRNN, task=task)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", filename="last")
    quiet_trainer(max_steps=2, enable_checkpointing=True, callbacks=[checkpoint], limit_val_batches=0).fit(model)
    centres = model.training_heads["speaker_classifier"].weight.detach().clone()

    model.save_pretrained(tmp_path / "model")
    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as weights:
        assert weights.keys() and not [name for name in weights.keys() if "training_heads" in name]
    loaded = Model.from_pretrained(tmp_path / "model")
    assert not hasattr(loaded, "training_heads") and loaded.specifications.extra["dimension"] == 16
    waveforms = torch.randn(2, 1, 16000)
    model.eval()
    assert torch.equal(loaded(waveforms), model(waveforms))

    path = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(path, weights_only=True)["state_dict"]
    assert torch.equal(state["training_heads.speaker_classifier.weight"], centres)
    assert torch.equal(Model.from_pretrained(path)(waveforms), model(waveforms))

    # a resumed run gets the centres back
    resumed = CRNN(**SMALL_CRNN, task=make_task(protocol, tmp_path))
    quiet_trainer(max_steps=2, limit_val_batches=0).fit(resumed, ckpt_path=path)
    assert torch.equal(resumed.training_heads["speaker_classifier"].weight.detach(), centres)


# ---- file and segment embeddings ---------------------------------------------------------
@pytest.fixture(scope="module")
def embedding_model():
    torch.manual_seed(0)
    model = CRNN(**SMALL_CRNN)
    model.attach_specifications(embedding_specifications(12))
    return model.eval()


def test_windows_cover_the_audio_without_padding():
    assert window_starts(100, 40, 20).tolist() == [0, 20, 40, 60]
    assert window_starts(90, 40, 20).tolist() == [0, 20, 40, 50]  # the last one ends at the end
    assert window_starts(30, 40, 20).tolist() == [0]


def test_file_and_segment_embeddings_have_one_row_per_segment_and_are_deterministic(embedding_model, speakers_yml):
    path = speakers_yml.parent / "development00.wav"
    embedding = file_embedding(embedding_model, path)
    assert embedding.shape == (12,) and np.isfinite(embedding).all()
    np.testing.assert_array_equal(file_embedding(embedding_model, path), embedding)
    # the mean of unit vectors: at most 1 long
    assert 0 < np.linalg.norm(embedding) <= 1 + 1e-6

    segments = [(0.5, 3.0), (4.8, 7.8), (11.5, 11.9)]  # the last one shorter than a chunk
    rows = segment_embeddings(embedding_model, path, segments)
    assert rows.shape == (3, 12) and np.isfinite(rows).all()
    np.testing.assert_array_equal(segment_embeddings(embedding_model, path, segments), rows)
    # a segment is embedded as a file holding only it
    waveform, sample_rate = embedding_model.audio(path)
    excerpt = {"waveform": waveform[:, 8000:48000], "sample_rate": sample_rate}
    np.testing.assert_allclose(file_embedding(embedding_model, excerpt), rows[0], rtol=1e-5, atol=1e-6)
    # a whole-file segment is the file
    np.testing.assert_allclose(segment_embeddings(embedding_model, path, [(0.0, 12.0)])[0], embedding, rtol=1e-5, atol=1e-6)
    # an Inference brings its own hop: windows every 0.25 s differ from every 0.5 s
    finer = file_embedding(Inference(embedding_model, step=0.25), path)
    assert finer.shape == (12,) and not np.allclose(finer, embedding)


def test_a_segment_outside_the_file_and_a_non_embedding_model_are_refused(embedding_model, speakers_yml):
    path = speakers_yml.parent / "development00.wav"
    with pytest.raises(ValueError, match=r"segment \[13.0, 14.0\] holds no sample"):
        segment_embeddings(embedding_model, path, [(1.0, 2.0), (13.0, 14.0)])
    detector = Debug()
    detector.attach_specifications(Specifications(Problem.BINARY_CLASSIFICATION, Resolution.CHUNK, 1.0, classes=["speech"]))
    with pytest.raises(ValueError, match="need a speaker embedding model"):
        file_embedding(detector, path)


def test_the_generated_protocol_is_deterministic(tmp_path, speakers_yml):
    again = make_speaker_protocol(tmp_path / "again")
    for name in ("train.rttm", "development.uem", "test.lst", "train00.wav", "test01.wav"):
        assert (again.parent / name).read_bytes() == (speakers_yml.parent / name).read_bytes()


def test_validation_gathers_each_chunk_once_whatever_the_batches_repeat(protocol, tmp_path):
    task = make_task(protocol, tmp_path)
    model = set_up(task, Debug())
    task.setup_metrics(model)
    waveforms = torch.randn(3, 1, 16000)
    # a distributed share is padded with batches seen already: their chunks count once
    task.validation_step({"X": waveforms, "index": torch.tensor([0, 1, 2])}, 0)
    task.validation_step({"X": waveforms[1:], "index": torch.tensor([1, 2])}, 1)
    embeddings, speakers = task.validation_embeddings()
    with torch.no_grad():
        torch.testing.assert_close(embeddings, model(waveforms))
    assert speakers.tolist() == task.validation_speakers[:3].tolist()
