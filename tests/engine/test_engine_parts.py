"""The engine's parts through tasks: masked and weighted objectives, the ready-made tasks'
targets, the hooks a subclass overrides, one protocol pass per preparation, weak labels and
the samplers.

Models are ``Debug(frame_hop=1600)``: 0.1-s frames at 16 kHz, frame ``i`` centred at
``0.1 i + 0.05`` s from the chunk start.
"""

from collections import Counter
from contextlib import nullcontext

import numpy as np
import pytest
import soundfile
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from pyannote.core import Annotation, Segment
from pyannote.database import FileFinder, registry
from pyannote.database.protocol import SpeakerDiarizationProtocol
from torchmetrics.classification import BinaryAUROC

from audiotask.core.objectives import IGNORE, metric_inputs, validation_metric
from audiotask.core.specifications import Problem, Resolution
from audiotask.engine.annotated_task import AnnotatedTask
from audiotask.engine.builders import ChunkClasses, ChunkTags, TargetBuilder
from audiotask.models import Debug
from audiotask.protocols.dcase import write_dcase_tsv
from audiotask.tasks import MultiLabelSegmentation, OverlappedSpeechDetection, SoundEventDetection, VoiceActivityDetection
from audiotask.testing.dummies import load_protocol, write_database_yml
from helpers import handmade_protocol, prepared, quiet_trainer

CLASSES = ["Cat", "Dog", "Speech"]
EVENTS = {
    "full": [(0.5, 1.5, "Dog"), (1.0, 2.5, "Speech"), (2.2, 3.0, "Cat")],
    "partial": [(0.3, 1.2, "Speech"), (2.0, 3.5, "Dog")],
}


def options(tmp_path, **kwargs):
    return {"duration": 2.0, "batch_size": 4, "num_workers": 0, "cache": tmp_path / "cache", **kwargs}


def write_wav(path, duration=4.0, seed=0):
    rng = np.random.default_rng(seed)
    soundfile.write(path, (0.1 * rng.standard_normal(int(duration * 16000))).astype(np.float32), 16000, subtype="PCM_16")


# ---- 3. loss and metric honour mask and weight ------------------------------------------
def bce(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Binary cross-entropy with logits, elementwise, in float64 numpy."""
    x, t = logits.double().numpy(), y.double().numpy()
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def pairwise_auroc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Share of (positive, negative) pairs ranked right, ties counting half."""
    positive, negative = scores[targets == 1][:, None], scores[targets == 0][None, :]
    assert positive.size and negative.size
    return float(((positive > negative).sum() + 0.5 * (positive == negative).sum()) / (positive.size * negative.size))


@pytest.fixture
def multilabel_task(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", EVENTS)
    return prepared(SoundEventDetection(protocol, classes=CLASSES, resolution="frame", **options(tmp_path)))


def test_masked_entries_change_nothing_and_the_loss_is_the_mean_over_the_others(multilabel_task):
    generator = torch.Generator().manual_seed(0)
    y_pred = torch.randn(2, 20, 3, generator=generator)
    y = (torch.rand(2, 20, 3, generator=generator) > 0.5).to(torch.uint8)
    mask = torch.tensor([[[1, 1, 1]], [[0, 1, 0]]], dtype=torch.uint8)  # sample 1 annotates "Dog" only
    loss = multilabel_task.compute_loss(y_pred, y, mask=mask)
    changed = y_pred.clone()
    changed[1, :, 0] += 10.0
    changed[1, :, 2] = -7.0
    assert multilabel_task.compute_loss(changed, y, mask=mask).item() == loss.item()
    keep = mask.bool().expand(2, 20, 3).numpy()
    assert loss.item() == pytest.approx(bce(y_pred, y)[keep].mean(), rel=1e-6)
    assert multilabel_task.compute_loss(changed, y).item() != pytest.approx(loss.item(), rel=1e-3)


def test_a_sample_of_weight_zero_is_left_out_and_weights_scale_samples(multilabel_task):
    generator = torch.Generator().manual_seed(1)
    y_pred = torch.randn(2, 20, 3, generator=generator)
    y = (torch.rand(2, 20, 3, generator=generator) > 0.5).to(torch.uint8)
    task = multilabel_task
    alone = task.compute_loss(y_pred[:1], y[:1]).item()
    assert task.compute_loss(y_pred, y, weight=torch.tensor([1.0, 0.0])).item() == pytest.approx(alone, rel=1e-6)
    changed = y_pred.clone()
    changed[1] = 50.0
    assert task.compute_loss(changed, y, weight=torch.tensor([1.0, 0.0])).item() == pytest.approx(alone, rel=1e-6)
    per_sample = bce(y_pred, y).reshape(2, -1)
    weighted = (3 * per_sample[0].sum() + per_sample[1].sum()) / (4 * per_sample.shape[1])
    assert task.compute_loss(y_pred, y, weight=torch.tensor([3.0, 1.0])).item() == pytest.approx(weighted, rel=1e-6)
    # mask and weight together: sample 0's annotated classes only
    mask = torch.tensor([[[1, 0, 1]], [[1, 1, 1]]], dtype=torch.uint8)
    both = task.compute_loss(y_pred, y, mask=mask, weight=torch.tensor([1.0, 0.0])).item()
    assert both == pytest.approx(bce(y_pred, y)[0][:, [0, 2]].mean(), rel=1e-6)


def test_binary_auroc_of_masked_frames_is_that_of_the_unmasked_frames_alone(tmp_path):
    task = prepared(VoiceActivityDetection(handmade_protocol(tmp_path / "data", EVENTS), **options(tmp_path)))
    generator = torch.Generator().manual_seed(2)
    y_pred = torch.randn(2, 20, 1, generator=generator)
    y = (torch.rand(2, 20, 1, generator=generator) > 0.5).to(torch.uint8)
    mask = torch.ones(2, 20, dtype=torch.uint8)
    mask[1, 10:] = 0
    # the masked frames are positives scored lowest: counted, they would pull the AUROC down
    y[1, 10:] = 1
    y_pred[1, 10:] = -10.0
    scores, targets = metric_inputs(task.specifications, y_pred, y, mask)
    keep = mask.bool().reshape(-1)
    assert targets[~keep].tolist() == [IGNORE] * 10
    assert targets[keep].tolist() == y.reshape(-1)[keep].tolist()
    name, metric = validation_metric(task.specifications)
    value = metric(scores, targets).item()
    probabilities = torch.sigmoid(y_pred).reshape(-1)
    expected = pairwise_auroc(probabilities[keep].numpy(), y.reshape(-1)[keep].numpy())
    assert name == "auroc"
    assert value == pytest.approx(expected, abs=1e-6)
    assert value == pytest.approx(BinaryAUROC()(probabilities[keep], y.reshape(-1)[keep].long()).item(), abs=1e-6)
    assert BinaryAUROC()(probabilities, y.reshape(-1).long()).item() < expected - 0.05


def test_multilabel_auroc_of_masked_classes_is_that_of_the_unmasked_entries_alone(multilabel_task):
    generator = torch.Generator().manual_seed(3)
    y_pred = torch.randn(2, 20, 3, generator=generator)
    y = (torch.rand(2, 20, 3, generator=generator) > 0.5).to(torch.uint8)
    mask = torch.tensor([[[1, 1, 1]], [[1, 0, 1]]], dtype=torch.uint8)  # sample 1 does not annotate "Dog"
    # sample 1's "Dog" entries ranked exactly wrong: counted, they would pull its AUROC down
    y_pred[1, :, 1] = torch.where(y[1, :, 1] == 1, -10.0, 10.0)
    scores, targets = metric_inputs(multilabel_task.specifications, y_pred, y, mask)
    assert scores.shape == targets.shape == (40, 3)
    assert (targets[20:, 1] == IGNORE).all() and (targets[:, [0, 2]] != IGNORE).all()
    _, metric = validation_metric(multilabel_task.specifications)
    value = metric(scores, targets).item()
    probabilities = torch.sigmoid(y_pred).numpy()
    kept = {0: [0, 1], 1: [0], 2: [0, 1]}  # samples whose entries count, per class
    per_class = [
        pairwise_auroc(probabilities[kept[k], :, k].reshape(-1), y.numpy()[kept[k], :, k].reshape(-1)) for k in range(3)
    ]
    assert value == pytest.approx(np.mean(per_class), abs=1e-6)
    unmasked_dog = pairwise_auroc(probabilities[:, :, 1].reshape(-1), y.numpy()[:, :, 1].reshape(-1))
    assert unmasked_dog < per_class[1] - 0.1


# ---- 4. multi-label segmentation from files that annotate some classes ------------------
def annotated_classes(file):
    return ["Speech", "Dog"] if file["uri"] == "partial" else None


class LossHistory(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


def test_multilabel_segmentation_masks_the_classes_a_file_does_not_annotate_and_trains(tmp_path):
    handmade_protocol(tmp_path / "data", EVENTS, name="Partial")
    protocol = registry.get_protocol(
        "Partial.SpeakerDiarization.Events", preprocessors={"audio": FileFinder(), "annotated_classes": annotated_classes}
    )
    task = prepared(MultiLabelSegmentation(protocol, classes=CLASSES, **options(tmp_path)))
    assert task.metadata.subsets["train"].attribute("annotated_classes").tolist() == ["", "Dog,Speech"]
    rows = np.array([[1, 1, 1], [0, 1, 1]], dtype=np.uint8)  # per file: everything, all but "Cat"
    batch = task.make_batch("train", np.array([0, 1, 1, 0]), np.array([0.0, 0.0, 2.0, 1.0]), 2.0)
    assert batch["mask"].dtype == torch.uint8 and batch["mask"].shape == (4, 1, 3)
    np.testing.assert_array_equal(batch["mask"].numpy(), rows[[0, 1, 1, 0]][:, None, :])
    # the first training batch: each chunk gets the mask of its file
    files = task.make_sampler(0).take(4).files
    first = next(iter(task.train_dataloader()))
    np.testing.assert_array_equal(first["mask"].numpy(), rows[files][:, None, :])

    seen = []
    compute_loss = task.compute_loss

    def recording(y_pred, y, duration=None, *, mask=None, weight=None):
        seen.append(mask.clone())
        return compute_loss(y_pred, y, duration, mask=mask, weight=weight)

    task.compute_loss = recording
    torch.manual_seed(0)
    history = LossHistory()
    # an epoch is one batch here (8 annotated seconds in 2-s chunks), each followed by validation
    trainer = quiet_trainer(max_epochs=3, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[history])
    trainer.fit(task.model)
    assert len(history.losses) == 3 and np.isfinite(history.losses).all()
    assert len(seen) == 6  # three training and three validation batches, each with its mask
    assert all(mask.shape == (4, 1, 3) for mask in seen)
    assert all(row in rows.tolist() for mask in seen for row in mask[:, 0].tolist())
    assert np.isfinite(trainer.callback_metrics["val/loss"].item())
    assert 0.0 <= trainer.callback_metrics["val/auroc"].item() <= 1.0


# ---- 5. overlapped speech detection from an RTTM ----------------------------------------
RTTM = """\
SPEAKER meeting 1 0.500 1.000 <NA> <NA> A <NA> <NA>
SPEAKER meeting 1 1.000 0.800 <NA> <NA> B <NA> <NA>
SPEAKER meeting 1 1.800 0.700 <NA> <NA> A <NA> <NA>
SPEAKER meeting 1 2.000 1.000 <NA> <NA> A <NA> <NA>
"""


def test_overlapped_speech_is_two_distinct_speakers_not_one_speaker_twice(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    write_wav(root / "meeting.wav")
    (root / "meeting.rttm").write_text(RTTM)  # A+B on [1.0, 1.5); A+A on [2.0, 2.5)
    (root / "files.lst").write_text("meeting\n")
    write_database_yml(root / "database.yml", "Rttm", "Meetings", {"train": {"uri": "files.lst", "annotation": "meeting.rttm"}},
                       audio="{uri}.wav")
    protocol = load_protocol(root / "database.yml", "Rttm.SpeakerDiarization.Meetings")
    task = prepared(OverlappedSpeechDetection(protocol, **options(tmp_path, duration=4.0)))
    assert task.metadata.labels == ["A", "B"] and task.specifications.classes == ["overlap"]
    y = task.make_batch("train", np.array([0]), np.array([0.0]), 4.0)["y"]
    expected = np.zeros((1, 40, 1), dtype=np.uint8)
    expected[0, 10:15] = 1  # centres 1.05..1.45
    assert y.dtype == torch.uint8
    np.testing.assert_array_equal(y.numpy(), expected)
    # from 1.0 s on: the overlap starts the chunk, A+A at 1.0..1.5 from its start stays 0
    np.testing.assert_array_equal(task.target("train", 0, 1.0, 2.0)["y"][:, 0], [1] * 5 + [0] * 15)


# ---- 6. the hooks a subclass overrides --------------------------------------------------
class PerChunkTarget(AnnotatedTask):
    """A task whose own ``target`` gives class 300 + file index of 400 classes."""

    problem, resolution = Problem.MONO_LABEL_CLASSIFICATION, Resolution.CHUNK
    labels_are_classes = False

    def known_classes(self):
        return [f"k{index:03d}" for index in range(400)]

    def target(self, subset, file, start, duration):
        self.calls.append((subset, file, start, duration))
        return np.int64(300 + file)


def test_an_overridden_target_is_called_for_every_chunk_and_its_int64_arrives_unchanged(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", EVENTS)
    task = prepared(PerChunkTarget(protocol, **options(tmp_path)))
    task.calls = []
    batch = next(iter(task.train_dataloader()))
    chunks = task.make_sampler(0).take(4)
    assert task.calls == [("train", int(f), float(s), 2.0) for f, s in zip(chunks.files, chunks.starts)]
    assert batch["y"].dtype == torch.int64
    assert batch["y"].tolist() == (300 + chunks.files).tolist()
    assert set(batch) == {"X", "y"}


class FileWeight(TargetBuilder):
    """Per-chunk ``weight``: its file index + 0.5."""

    outputs = {"weight": np.dtype(np.float32)}

    def __call__(self, segments):
        return {"weight": segments.files + 0.5}


class WeightedEvents(SoundEventDetection):
    def target_builders(self):
        return [ChunkClasses(), FileWeight()]


def test_overridden_target_builders_are_the_ones_used(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", EVENTS)
    task = prepared(WeightedEvents(protocol, classes=CLASSES, **options(tmp_path)))
    batch = next(iter(task.train_dataloader()))
    files = task.make_sampler(0).take(4).files
    assert set(batch) == {"X", "y", "weight"}
    assert batch["weight"].dtype == torch.float32 and batch["weight"].tolist() == (files + 0.5).tolist()
    chunk = task.make_batch("train", np.array([0, 1]), np.array([0.0, 2.0]), 2.0)
    np.testing.assert_array_equal(chunk["y"].numpy(), [[0, 1, 1], [0, 1, 0]])  # full [0, 2); partial [2, 4)


# ---- 7. one pass over the protocol per preparation ----------------------------------------
class PassCounter:
    """Counts the passes over each subset of a protocol: started, and read to the end."""

    def __init__(self):
        self.started, self.finished = Counter(), Counter()

    def wrap(self, protocol, subsets=("train", "development")):
        for subset in subsets:
            self._wrap(protocol, subset, getattr(protocol, f"{subset}_iter"))
        return protocol

    def _wrap(self, protocol, subset, original):
        def counted():
            self.started[subset] += 1
            yield from original()
            self.finished[subset] += 1

        setattr(protocol, f"{subset}_iter", counted)


class PythonProtocol(SpeakerDiarizationProtocol):
    """A protocol built in Python (hashed by content): two train files, one development file."""

    def __init__(self, root, **kwargs):
        super().__init__(**kwargs)
        self.root = root

    def _file(self, uri, label):
        annotation = Annotation(uri=uri)
        annotation[Segment(0.5, 1.5)] = label
        return {"uri": uri, "database": "Py", "audio": str(self.root / f"{uri}.wav"), "annotation": annotation}

    def train_iter(self):
        yield self._file("full", "Dog")
        yield self._file("partial", "Cat")

    def development_iter(self):
        yield self._file("full", "Speech")


def registry_protocol(tmp_path):
    handmade_protocol(tmp_path / "data", EVENTS, name="Once")
    return registry.get_protocol("Once.SpeakerDiarization.Events", preprocessors={"audio": FileFinder()})


def registry_protocol_with_a_lambda(tmp_path):
    # a lambda's values cannot be vouched for: the fingerprint reads them from every file
    handmade_protocol(tmp_path / "data", EVENTS, name="Lambda")
    return registry.get_protocol(
        "Lambda.SpeakerDiarization.Events", preprocessors={"audio": FileFinder(), "database": lambda file: "Lambda"}
    )


def python_protocol(tmp_path):
    handmade_protocol(tmp_path / "data", EVENTS)  # the audio files
    return PythonProtocol(tmp_path / "data")


@pytest.mark.parametrize("make", [registry_protocol, registry_protocol_with_a_lambda, python_protocol])
def test_preparing_metadata_reads_each_subset_of_the_protocol_once(make, tmp_path):
    counter = PassCounter()
    protocol = counter.wrap(make(tmp_path))
    task = SoundEventDetection(protocol, classes=CLASSES, **options(tmp_path))
    assert task.has_validation
    probed = dict(counter.finished)  # has_subset reads one file: no pass
    Debug(frame_hop=1600, task=task)
    task.prepare_data()
    task.setup("fit")
    assert probed == {}
    assert counter.finished == {"train": 1, "development": 1}
    assert counter.started["train"] == 1
    assert [len(subset) for subset in task.metadata.subsets.values()] == [2, 1 if make is python_protocol else 2]
    # a second task on the prepared metadata reads the protocol at most once more
    again = SoundEventDetection(protocol, classes=CLASSES, **options(tmp_path))
    Debug(frame_hop=1600, task=again)
    again.prepare_data()
    again.setup("fit")
    assert counter.finished["train"] <= 2 and counter.finished["development"] <= 2
    if make is registry_protocol:  # the cheap fingerprint: stat calls only
        assert counter.finished == {"train": 1, "development": 1}


# ---- 8. weak labels through the engine -------------------------------------------------------
def mixed_protocol(root):
    """``X.SpeakerDiarization.Mixed``: weak-labelled file "w1" first, then strong files "s1", "s2"."""
    root.mkdir(parents=True)
    for seed, uri in enumerate(("w1", "s1", "s2")):
        write_wav(root / f"{uri}.wav", seed=seed)
    write_dcase_tsv(root / "strong.tsv", [("s1.wav", 0.5, 1.5, "Dog"), ("s2.wav", 1.0, 3.0, "Cat")])
    (root / "weak.tsv").write_text("filename\tevent_labels\nw1.wav\tSpeech,Dog\n")
    (root / "strong.lst").write_text("s1\ns2\n")
    (root / "weak.lst").write_text("w1\n")
    config = {
        "Databases": {"Strong": "{uri}.wav", "Weak": "{uri}.wav"},
        "Protocols": {
            "Strong": {"SpeakerDiarization": {"Events": {"scope": "file", "train": {"uri": "strong.lst", "annotation": "strong.tsv"}}}},
            "Weak": {"SpeakerDiarization": {"Events": {"scope": "file", "train": {"uri": "weak.lst", "annotation": "weak.tsv"}}}},
            "X": {"SpeakerDiarization": {"Mixed": {"train": {
                "Weak.SpeakerDiarization.Events": ["train"], "Strong.SpeakerDiarization.Events": ["train"],
            }}}},
        },
    }
    (root / "database.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return load_protocol(root / "database.yml", "X.SpeakerDiarization.Mixed")


class TaggedClips(SoundEventDetection):
    """Clip-level tags from weak and strong files alike."""

    label_kinds = ("strong", "weak")

    def target_builders(self):
        return [ChunkTags()]


def test_weak_files_are_prepared_with_their_tags_and_left_out_of_strong_training(tmp_path):
    protocol = mixed_protocol(tmp_path / "data")
    task = SoundEventDetection(protocol, classes=CLASSES, **options(tmp_path))
    Debug(frame_hop=1600, task=task)
    with pytest.warns(UserWarning, match=r"trains on strong labels: 1 train file\(s\) labelled otherwise are left out \(weak\), e.g. 'w1'"):
        task.prepare_data()
    task.setup("fit")
    train = task.metadata.subsets["train"]
    assert train.uri.tolist() == ["w1", "s1", "s2"]
    assert train.attribute("label_kind").tolist() == ["weak", "strong", "strong"]
    assert train.attribute("tags").tolist() == ["Dog,Speech", "", ""]
    assert train.attribute("database").tolist() == ["Weak", "Strong", "Strong"]
    assert task.usable_files("train").tolist() == [False, True, True]
    assert set(task.make_sampler(0).take(200).files.tolist()) == {1, 2}


def test_chunk_tags_give_a_weak_file_its_tags_and_a_strong_file_its_chunk_classes(tmp_path):
    task = prepared(TaggedClips(mixed_protocol(tmp_path / "data"), classes=CLASSES, **options(tmp_path)))
    y = task.make_batch("train", np.array([0, 1, 2, 2]), np.array([2.0, 0.0, 0.0, 3.0]), 1.0)["y"]
    assert y.dtype == torch.uint8
    np.testing.assert_array_equal(y.numpy(), [[0, 1, 1], [0, 1, 0], [0, 0, 0], [0, 0, 0]])
    y = task.make_batch("train", np.array([2]), np.array([1.5]), 1.0)["y"]
    np.testing.assert_array_equal(y.numpy(), [[1, 0, 0]])
    assert set(task.make_sampler(0).take(200).files.tolist()) == {0, 1, 2}


# ---- 9. samplers through the task ----------------------------------------------------------
@pytest.mark.parametrize("task_class, usable", [(SoundEventDetection, [1, 2]), (TaggedClips, [0, 1, 2])])
def test_clip_sampling_gives_one_chunk_per_usable_file_per_pass(task_class, usable, tmp_path):
    protocol = mixed_protocol(tmp_path / "data")
    task = task_class(protocol, classes=CLASSES, sampling="clips", **options(tmp_path))
    Debug(frame_hop=1600, task=task)
    with pytest.warns(UserWarning) if task_class is SoundEventDetection else nullcontext():
        task.prepare_data()
    task.setup("fit")
    assert task.train__len__() == 4  # a batch at least
    passes = 6
    chunks = task.make_sampler(0).take(passes * len(usable))
    for files in chunks.files.reshape(passes, len(usable)):
        assert sorted(files.tolist()) == usable
    # 4-s files, 2-s chunks: random crops inside the file
    assert chunks.starts.min() >= 0.0 and chunks.starts.max() <= 2.0 and len(set(chunks.starts.tolist())) > 1
    assert (chunks.durations == 2.0).all()


def test_clip_sampler_gives_the_file_ids_it_is_given_and_draws_as_without_them():
    from audiotask.engine.samplers import ClipSampler

    durations = np.array([4.0, 1.0, 6.0])
    plain = ClipSampler(durations, 2.0, batch_size=3, seed=1).take(30)
    mapped = ClipSampler(durations, 2.0, batch_size=3, seed=1, file_ids=np.array([3, 7, 9])).take(30)
    assert mapped.files.tolist() == np.array([3, 7, 9])[plain.files].tolist()
    np.testing.assert_array_equal(mapped.starts, plain.starts)
    with pytest.raises(ValueError, match="2 file ids for 3 files"):
        ClipSampler(durations, 2.0, file_ids=np.array([0, 1]))


def test_balanced_batches_hold_two_classes_each_active_at_the_centre_of_its_chunks(tmp_path):
    events = {
        "a": [(1.0, 1.6, "Dog"), (1.5, 2.5, "Cat")],
        "b": [(2.4, 3.0, "Speech"), (1.2, 2.0, "Dog")],
    }
    protocol = handmade_protocol(tmp_path / "data", events)
    task = prepared(SoundEventDetection(protocol, classes=CLASSES, resolution="frame", sampling="balanced",
                                        labels_per_batch=2, **options(tmp_path)))
    sampler = task.make_sampler(0)
    for _ in range(10):
        chunks = sampler.take(4)
        labels = chunks.labels.tolist()
        assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]
        y = task.make_batch("train", chunks.files, chunks.starts, 2.0, chunks.labels)["y"].numpy()
        # the sampled class is active at the chunk's centre (1.0 s: between frames 9 and 10)
        for row, label in enumerate(labels):
            assert y[row, 9:11, label].max() == 1, (row, CLASSES[label], chunks.files[row], chunks.starts[row])
    # the training batches are the sampler's chunks
    first = next(iter(task.train_dataloader()))
    chunks = task.make_sampler(0).take(4)
    expected = task.make_batch("train", chunks.files, chunks.starts, 2.0, chunks.labels)
    torch.testing.assert_close(first["X"], expected["X"], rtol=0, atol=0)
    torch.testing.assert_close(first["y"], expected["y"], rtol=0, atol=0)


class TwoDatabases(SpeakerDiarizationProtocol):
    """One uri in two databases (two recordings that happen to share a name)."""

    def __init__(self, root, **kwargs):
        super().__init__(**kwargs)
        self.root = root

    def train_iter(self):
        for database, label in (("A", "Dog"), ("B", "Cat"), ("B", "Cat")):
            annotation = Annotation(uri="clip")
            annotation[Segment(0.5, 1.5)] = label
            yield {"uri": "clip", "database": database, "audio": str(self.root / f"{database}.wav"),
                   "annotation": annotation}


def test_the_same_uri_in_two_databases_stays_two_balance_groups(tmp_path):
    for name in ("A", "B"):
        soundfile.write(tmp_path / f"{name}.wav", np.zeros(32000, dtype=np.float32), 16000)
    task = SoundEventDetection(TwoDatabases(tmp_path), balance="database", **options(tmp_path))
    prepared(task)
    assert task.balance_groups().tolist() == ["A", "B", "B"]
    files = task.make_sampler().take(4000).files
    # database A (one file of three) gets half of the chunks
    assert abs((files == 0).mean() - 0.5) < 0.03
