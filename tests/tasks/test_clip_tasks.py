"""Clip corpora, clip-level classification and tagging, their metrics and k-fold cross-validation.

Data is generated in ``tmp_path`` (``audiotask.testing.clip_corpora``): 1-s clips at 16 kHz.
"""

import csv
import json
import warnings

import numpy as np
import pytest
import soundfile
import torch
from lightning.pytorch.callbacks import Callback
from sklearn.metrics import average_precision_score

from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.cross_validation import cross_validate, format_cross_validation
from audiotask.engine.folds import folds, split_by_fold
from audiotask.engine.metadata import ProtocolMetadata, SubsetMetadata
from audiotask.inference.clip_scores import clip_scores
from audiotask.inference.inference import Inference
from audiotask.metrics import (
    average_precision_report, classification_report, format_classification, format_tagging, plot_confusion,
)
from audiotask.models import CRNN, Debug
from audiotask.protocols.clip_tables import ClipLabels, ClipLoader, clip_protocol, read_clip_csv, write_clip_database
from audiotask.protocols.dcase import WeakLabels
from audiotask.tasks.audio_classification import AudioClassification
from audiotask.tasks.audio_tagging import AudioTagging
from audiotask.testing.clip_corpora import class_names, make_clip_dataset, make_tagging_dataset
from helpers import quiet_trainer

SMALL_CRNN = dict(channels=(8, 16), time_pooling=(2, 2), n_mels=32, hidden_size=16)


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return path


def silent_wavs(folder, names, seconds=1.0):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        soundfile.write(folder / name, np.zeros(int(16000 * seconds), dtype=np.float32), 16000, subtype="PCM_16")
    return folder


def clip_set(tmp_path, **kwargs):
    """Protocol of a generated clip set (3 classes x 4 clips in 2 folds by default) and its CSV rows."""
    options = dict(classes=3, clips_per_class=4, folds=2, duration=1.0) | kwargs
    audio, labels = make_clip_dataset(tmp_path / "clips", **options)
    rows = list(csv.DictReader(open(labels)))
    return clip_protocol(audio, labels, tmp_path / "db" / "database.yml"), rows


def classification(protocol, tmp_path, **kwargs):
    options = dict(duration=1.0, batch_size=4, num_workers=0, cache=tmp_path / "cache") | kwargs
    return AudioClassification(protocol, **options)


# ---- clip CSV files -------------------------------------------------------------------------
def test_clip_csv_reads_the_columns_of_each_corpus_and_ignores_the_others(tmp_path):
    esc50 = write_csv(tmp_path / "esc50.csv", [("filename", "fold", "target", "category", "esc10"),
                                               ("1-100032-A-0.wav", "1", "0", "dog", "True")])
    urban = write_csv(tmp_path / "urban.csv", [("slice_file_name", "fsID", "fold", "classID", "class"),
                                               ("100032-3-0-0.wav", "100032", "5", "3", "dog_bark")])
    fsd = write_csv(tmp_path / "fsd.csv", [("fname", "labels", "mids", "split"),
                                           ("64760", "Guitar,Music", "/m/1,/m/2", "val"), ("17", "Bark", "/m/3", "train")])
    plain = write_csv(tmp_path / "plain.csv", [("Label", "FileName"), ("cat", "a.b.flac"), ("cat", "a.b.flac")])
    assert {uri: (row.labels, row.fold, row.split) for uri, row in read_clip_csv(esc50).items()} == {
        "1-100032-A-0": (("dog",), "1", "train")}
    assert {uri: (row.labels, row.fold) for uri, row in read_clip_csv(urban).items()} == {
        "100032-3-0-0": (("dog_bark",), "5")}
    assert {uri: (row.labels, row.fold, row.split) for uri, row in read_clip_csv(fsd).items()} == {
        "64760": (("Guitar", "Music"), "", "development"), "17": (("Bark",), "", "train")}
    assert {uri: row.labels for uri, row in read_clip_csv(plain).items()} == {"a.b": ("cat",)}


def test_loader_gives_weak_labels_that_carry_the_fold(tmp_path):
    path = write_csv(tmp_path / "labels.csv", [("filename", "label", "fold"), ("a.wav", "dog", "3"), ("b.wav", "cat", "")])
    loader = ClipLoader(path)
    labels = loader({"uri": "a"})
    assert isinstance(labels, WeakLabels) and isinstance(labels, ClipLabels)
    assert tuple(labels) == ("dog",) and labels.fold == "3"
    assert loader({"uri": "b"}).fold == ""


def test_a_uri_absent_from_the_csv_is_an_error_naming_both(tmp_path):
    path = write_csv(tmp_path / "labels.csv", [("filename", "label"), ("a.wav", "dog")])
    with pytest.raises(ValueError, match=r"labels\.csv: no row for file 'zebra'"):
        ClipLoader(path)({"uri": "zebra"})


def test_a_csv_without_label_column_is_an_error_naming_it(tmp_path):
    path = write_csv(tmp_path / "broken.csv", [("filename", "fold"), ("a.wav", "1")])
    with pytest.raises(ValueError, match=r"broken\.csv, line 1: .*names no label/labels/category/class column"):
        read_clip_csv(path)


def test_a_row_naming_a_missing_clip_is_an_error_naming_csv_line_and_clip(tmp_path):
    audio = silent_wavs(tmp_path / "audio", ["a.wav"])
    path = write_csv(tmp_path / "labels.csv", [("filename", "label"), ("a.wav", "dog"), ("ghost.wav", "cat")])
    with pytest.raises(ValueError, match=r"labels\.csv: 1 listed clip\(s\) have no audio file .*'ghost' \(line 3\)"):
        write_clip_database(audio, path, tmp_path / "database.yml")


def test_database_follows_the_split_column_and_finds_clips_in_sub_folders(tmp_path):
    audio = tmp_path / "audio"
    silent_wavs(audio / "fold1", ["a.wav", "b.wav"])
    silent_wavs(audio / "fold2", ["c.wav"])
    path = write_csv(tmp_path / "labels.csv", [("fname", "labels", "split"), ("a", "x,y", "train"), ("b", "y", "val"),
                                               ("c", "x", "test")])
    protocol = clip_protocol(audio, path, tmp_path / "db" / "database.yml", name="Split")
    found = {subset: [(f["uri"], tuple(f["annotation"]), str(f["audio"]).endswith(f"{f['uri']}.wav"))
                      for f in getattr(protocol, subset)()] for subset in ("train", "development", "test")}
    assert found == {"train": [("a", ("x", "y"), True)], "development": [("b", ("y",), True)],
                     "test": [("c", ("x",), True)]}


def test_writing_the_same_database_again_keeps_the_prepared_metadata(tmp_path):
    protocol, _ = clip_set(tmp_path)
    before = classification(protocol, tmp_path).metadata_folder()
    again = clip_protocol(tmp_path / "clips" / "audio", tmp_path / "clips" / "labels.csv", tmp_path / "db" / "database.yml")
    assert classification(again, tmp_path).metadata_folder() == before


# ---- metadata ---------------------------------------------------------------------------------
def test_select_keeps_the_chosen_files_with_their_regions_segments_and_attributes():
    subset = SubsetMetadata(
        uri=np.array(["a", "b", "c"]), audio=np.array(["a.wav", "b.wav", "c.wav"]), duration=np.array([1.0, 2.0, 3.0]),
        annotated_offsets=np.array([0, 1, 3, 4]), annotated=np.array([[0, 1], [0, 0.5], [1, 2], [0, 3.0]]),
        segment_offsets=np.array([0, 2, 2, 5]),
        segment_start=np.array([0.1, 0.2, 0.0, 1.0, 2.0]), segment_end=np.array([0.5, 0.9, 0.5, 1.5, 2.9]),
        segment_label=np.array([0, 1, 2, 0, 1], dtype=np.int32), max_segment_length=np.array(0.9),
        audio_stamp=np.array([[1, 10], [2, 20], [3, 30]]), attributes={"fold": np.array(["1", "2", "3"])},
    )
    picked = subset.select([2, 0])
    assert picked.uri.tolist() == ["c", "a"] and picked.audio.tolist() == ["c.wav", "a.wav"]
    assert picked.duration.tolist() == [3.0, 1.0]
    assert picked.annotated_offsets.tolist() == [0, 1, 2] and picked.annotated.tolist() == [[0, 3.0], [0, 1]]
    assert picked.segment_offsets.tolist() == [0, 3, 5]
    assert picked.segment_start.tolist() == [0.0, 1.0, 2.0, 0.1, 0.2]
    assert picked.segment_end.tolist() == [0.5, 1.5, 2.9, 0.5, 0.9]
    assert picked.segment_label.tolist() == [2, 0, 1, 0, 1] and picked.segment_label.dtype == np.int32
    assert float(picked.max_segment_length) == pytest.approx(0.9)
    assert picked.audio_stamp.tolist() == [[3, 30], [1, 10]] and picked.attribute("fold").tolist() == ["3", "1"]
    starts, ends, labels = picked.segments_in(0, 0.9, 2.5)
    assert (starts.tolist(), ends.tolist(), labels.tolist()) == ([1.0, 2.0], [1.5, 2.9], [0, 1])
    middle = subset.select([1])
    assert middle.segment_offsets.tolist() == [0, 0] and middle.annotated.tolist() == [[0, 0.5], [1, 2]]
    assert len(subset.select([])) == 0


# ---- folds and targets ---------------------------------------------------------------------------
def test_every_clip_is_validated_in_exactly_one_fold_and_never_trained_on_there(tmp_path):
    protocol, rows = clip_set(tmp_path, folds=3, clips_per_class=3)
    assert folds(classification(protocol, tmp_path)) == ["1", "2", "3"]
    validated = []
    for fold in ("1", "2", "3"):
        task = classification(protocol, tmp_path, fold=fold)
        metadata = task.load_metadata()
        train, development = set(metadata.subsets["train"].uri.tolist()), metadata.subsets["development"].uri.tolist()
        assert sorted(development) == sorted(row["filename"][:-4] for row in rows if row["fold"] == fold)
        assert train.isdisjoint(development)
        assert train | set(development) == {row["filename"][:-4] for row in rows}
        validated += development
    assert sorted(validated) == sorted(row["filename"][:-4] for row in rows)


def test_folds_are_ordered_by_number_and_an_unknown_fold_names_the_existing_ones(tmp_path):
    protocol, _ = clip_set(tmp_path, folds=2)
    with pytest.raises(ValueError, match=r"no training file is in fold '7'; the folds are 1, 2"):
        classification(protocol, tmp_path, fold=7).load_metadata()
    subset = classification(protocol, tmp_path).load_metadata().subsets["train"].select([0, 1, 2, 3])
    subset.attributes["fold"] = np.array(["10", "2", "b", "a"])
    assert folds(subset) == ["2", "10", "a", "b"]


def test_a_fold_without_fold_column_is_an_error(tmp_path):
    audio = silent_wavs(tmp_path / "audio", ["a.wav", "b.wav"])
    path = write_csv(tmp_path / "labels.csv", [("filename", "label"), ("a.wav", "x"), ("b.wav", "y")])
    protocol = clip_protocol(audio, path, tmp_path / "db" / "database.yml")
    with pytest.raises(ValueError, match=r"fold '1' was asked for, but no training file has a fold"):
        classification(protocol, tmp_path, fold=1).load_metadata()


def test_a_validation_label_absent_from_training_is_an_error_naming_clip_and_label(tmp_path):
    audio = silent_wavs(tmp_path / "audio", ["a.wav", "b.wav", "c.wav"])
    path = write_csv(tmp_path / "labels.csv", [("filename", "label", "fold"), ("a.wav", "x", "1"), ("b.wav", "x", "2"),
                                               ("c.wav", "owl", "2")])
    task = classification(clip_protocol(audio, path, tmp_path / "db" / "database.yml"), tmp_path, fold=2)
    with pytest.raises(ValueError, match=r"development file 'c' is labelled 'owl', which is absent from the training classes \['x'\]"):
        task.setup("fit")


def test_a_clip_with_two_labels_cannot_be_classified(tmp_path):
    audio = silent_wavs(tmp_path / "audio", ["a.wav", "b.wav"])
    path = write_csv(tmp_path / "labels.csv", [("filename", "labels"), ("a.wav", "x,y"), ("b.wav", "x")])
    task = classification(clip_protocol(audio, path, tmp_path / "db" / "database.yml"), tmp_path)
    with pytest.raises(ValueError, match=r"train file 'a' has 2 labels \(x, y\): audio classification needs exactly one"):
        task.setup("fit")


def attach(task, model):
    task.prepare_data()
    task.setup("fit")
    model.attach_specifications(task.specifications)
    return task


def test_classification_target_is_the_class_index_of_each_clip(tmp_path):
    protocol, rows = clip_set(tmp_path)
    task = classification(protocol, tmp_path)
    attach(task, Debug(task=task))
    train = task.metadata.subsets["train"]
    classes = sorted({row["label"] for row in rows})
    assert task.specifications.classes == classes and task.specifications.extra == {"task": "audio-classification"}
    label = {row["filename"][:-4]: row["label"] for row in rows}
    y = task.targets("train", np.arange(len(train)), np.zeros(len(train)), 1.0)["y"]
    assert y.dtype == np.int64
    assert y.tolist() == [classes.index(label[uri]) for uri in train.uri.tolist()]


def test_tagging_target_is_the_multi_hot_of_each_clips_tags(tmp_path):
    audio, tsv = make_tagging_dataset(tmp_path / "tags", classes=4, clips=6, duration=1.0)
    task = AudioTagging(clip_protocol(audio, tsv, tmp_path / "db" / "database.yml"), duration=1.0, batch_size=4,
                        num_workers=0, cache=tmp_path / "cache")
    attach(task, Debug(task=task))
    tags = {line.split("\t")[0][:-4]: line.strip().split("\t")[1].split(",") for line in tsv.read_text().splitlines()[1:]}
    classes = task.specifications.classes
    assert classes == sorted({tag for names in tags.values() for tag in names}) and set(classes) <= set(class_names(4))
    assert task.monitor == ("val/loss", "min")  # no development subset, no fold
    train = task.metadata.subsets["train"]
    y = task.targets("train", np.arange(len(train)), np.zeros(len(train)), 1.0)["y"]
    expected = [[int(name in tags[uri]) for name in classes] for uri in train.uri.tolist()]
    assert y.tolist() == expected


# ---- learning ----------------------------------------------------------------------------------
class LossHistory(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


def learns(task, monkeypatch, steps=16):
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # the training chunks' seed, whatever ran before
    torch.manual_seed(0)
    model = CRNN(task=task, **SMALL_CRNN)
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=1e-2)
    history = LossHistory()
    trainer = quiet_trainer(max_steps=steps, callbacks=[history], check_val_every_n_epoch=1000)
    trainer.fit(model)
    return np.mean(history.losses[:4]), np.mean(history.losses[-4:]), trainer


def test_audio_classification_loss_goes_down(tmp_path, monkeypatch):
    protocol, _ = clip_set(tmp_path, classes=4, clips_per_class=6)
    first, last, _ = learns(classification(protocol, tmp_path, batch_size=8), monkeypatch)
    assert last < 0.5 * first, (first, last)


def test_audio_tagging_loss_goes_down_and_validation_logs_its_map(tmp_path, monkeypatch):
    audio, labels = make_tagging_dataset(tmp_path / "tags", classes=4, clips=24, folds=2, duration=1.0, labels_format="csv")
    task = AudioTagging(clip_protocol(audio, labels, tmp_path / "db" / "database.yml"), fold=2, duration=1.0,
                        batch_size=8, num_workers=0, cache=tmp_path / "cache")
    assert task.monitor == ("val/mAP", "max")
    first, last, trainer = learns(task, monkeypatch, steps=24)
    assert last < 0.6 * first, (first, last)
    trainer.validate(trainer.lightning_module, verbose=False)
    assert 0.0 < float(trainer.callback_metrics["val/mAP"]) <= 1.0



def test_a_clip_recipe_mixes_up_clips_and_their_labels_and_the_soft_losses_are_cross_entropies(tmp_path):
    from audiotask.augmentation.recipe import DetectionAugmentation

    protocol, _ = clip_set(tmp_path, classes=4, clips_per_class=6)
    recipe = DetectionAugmentation(mixup=1.0, filter_augment=False)
    task = classification(protocol, tmp_path, batch_size=8, augmentation=recipe)
    assert task.recipe is recipe and task.augmentation is None  # the recipe, not a waveform callable
    model = CRNN(task=task, **SMALL_CRNN)
    task.prepare_data()
    task.setup("fit")
    model.attach_specifications(task.specifications)
    # the soft loss of one-hot targets is the ordinary cross-entropy
    logits, y = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    soft = task.soft_targets(y)
    assert torch.equal(soft.argmax(dim=1), y) and torch.equal(soft.sum(dim=1), torch.ones(5))
    assert torch.isclose(task.soft_loss(logits, soft), torch.nn.functional.cross_entropy(logits, y))
    # a mixed-up batch: each row's targets are a blend of two clips' (rows sum to 1)
    batch = next(task.train_batches(epoch=0))
    captured = {}
    task.soft_loss = lambda logits, targets: captured.setdefault("targets", targets).sum() * 0 + logits.sum() * 0
    task.model.log = lambda *args, **kwargs: None
    task.training_step(batch, 0)
    targets = captured["targets"]
    assert torch.allclose(targets.sum(dim=1), torch.ones(len(targets)))
    assert ((targets > 0) & (targets < 1)).any()  # soft labels
    assert not torch.equal(targets, task.soft_targets(batch["y"]))

# ---- metrics -------------------------------------------------------------------------------------
def test_classification_report_matches_hand_counted_figures():
    reference = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", "a", "a"]
    report = classification_report(reference, predicted, ["a", "b", "c", "d"])
    assert report["confusion"] == [[2, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert report["accuracy"] == pytest.approx(3 / 6)
    a, b, c, d = (report["per_class"][name] for name in "abcd")
    assert a == pytest.approx({"precision": 2 / 4, "recall": 2 / 3, "f1": 4 / 7, "support": 3})
    assert b == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2})
    assert c == {"precision": None, "recall": 0.0, "f1": 0.0, "support": 1}
    assert d == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert report["macro_f1"] == pytest.approx((4 / 7 + 1 / 2 + 0) / 3)  # d is in neither list: no F1
    text = format_classification(report)
    assert "accuracy 50.00 %, macro F1 35.71 %" in text and "57.14" in text


def test_an_unknown_label_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"predicted label\(s\) \['zebra'\] are not among the classes"):
        classification_report(["a"], ["zebra"], ["a", "b"])
    with pytest.raises(ValueError, match=r"reference label\(s\) \['owl'\]"):
        classification_report(["owl"], ["a"], ["a", "b"])


def test_confusion_plot_is_a_png(tmp_path):
    path = plot_confusion(classification_report(["a", "b"], ["a", "a"], ["a", "b"]), tmp_path / "plots" / "confusion.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_average_precision_matches_scikit_learn():
    rng = np.random.default_rng(0)
    scores = rng.random((40, 4))
    targets = (rng.random((40, 4)) < 0.3).astype(int)
    targets[:, 3] = 0  # a class never present has no AP
    scores[:5, 0] = scores[5:10, 0] = 0.5  # ties
    report = average_precision_report(scores, targets, ["w", "x", "y", "z"])
    expected = [average_precision_score(targets[:, k], scores[:, k]) for k in range(3)]
    assert [report["per_class"][name] for name in "wxy"] == pytest.approx(expected)
    assert report["per_class"]["z"] is None and report["positives"]["z"] == 0
    assert report["mAP"] == pytest.approx(np.mean(expected))
    assert f"mAP {100 * np.mean(expected):.2f} %" in format_tagging(report)


# ---- clip scores -----------------------------------------------------------------------------------
class WindowLevel(Model):
    """CHUNK model whose logits are (mean, -mean) of each window's samples: known outputs."""

    def build(self):
        pass

    def forward(self, waveforms):
        level = waveforms.mean(dim=(1, 2))
        return torch.stack([level, -level], dim=1)


def window_level(problem):
    model = WindowLevel(sample_rate=1000)
    model.attach_specifications(Specifications(problem, Resolution.CHUNK, duration=1.0, classes=["up", "down"]))
    return Inference(model, step=1.0)


def test_clip_scores_average_mono_label_windows_and_take_the_largest_multi_label_ones():
    levels = [0.2, -0.6, 1.0]  # three 1-s windows of constant level
    clip = {"waveform": torch.tensor(np.repeat(levels, 1000), dtype=torch.float32)[None], "sample_rate": 1000}
    logits = torch.tensor([[level, -level] for level in levels])
    mono = clip_scores(window_level(Problem.MONO_LABEL_CLASSIFICATION), clip)
    assert mono == pytest.approx(torch.softmax(logits, dim=1).mean(dim=0).numpy(), abs=1e-6)
    multi = clip_scores(window_level(Problem.MULTI_LABEL_CLASSIFICATION), clip)
    assert multi == pytest.approx(torch.sigmoid(logits).max(dim=0).values.numpy(), abs=1e-6)
    assert clip_scores(window_level(Problem.MULTI_LABEL_CLASSIFICATION), clip, reduce="mean") == pytest.approx(
        torch.sigmoid(logits).mean(dim=0).numpy(), abs=1e-6)


def test_a_clip_shorter_than_the_chunk_is_one_zero_padded_window():
    clip = {"waveform": torch.full((1, 400), 0.5), "sample_rate": 1000}
    level = 0.5 * 400 / 1000  # the window's mean over 1000 samples, 600 of them padding
    expected = torch.sigmoid(torch.tensor([level, -level])).numpy()
    assert clip_scores(window_level(Problem.MULTI_LABEL_CLASSIFICATION), clip) == pytest.approx(expected, abs=1e-6)


# ---- cross-validation ------------------------------------------------------------------------------
def test_cross_validation_reports_every_fold_and_their_mean(tmp_path):
    protocol, rows = clip_set(tmp_path)
    output = tmp_path / "runs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = cross_validate(
            lambda fold: classification(protocol, tmp_path, fold=fold), lambda task: Debug(task=task),
            output, folds=["1", "2"], max_steps=3, progress=False,
        )
    assert [fold.fold for fold in result.folds] == ["1", "2"] and [fold.clips for fold in result.folds] == [6, 6]
    accuracies = [fold.report["accuracy"] for fold in result.folds]
    for fold in result.folds:
        confusion = np.array(fold.report["confusion"])
        assert confusion.sum() == 6 and fold.report["accuracy"] == pytest.approx(np.trace(confusion) / 6)
        assert (fold.output / "confusion.png").is_file() and (fold.output / "report.txt").is_file()
        assert {"val/accuracy", "val/macro_f1"} <= set(next(csv.reader(open(fold.output / "metrics.csv"))))
    assert result.mean["accuracy"] == pytest.approx(np.mean(accuracies))
    assert result.std["accuracy"] == pytest.approx(np.std(accuracies))
    saved = json.loads((output / "cross_validation.json").read_text())
    assert saved["mean"] == result.mean and [fold["fold"] for fold in saved["folds"]] == ["1", "2"]
    assert "mean ± std" in format_cross_validation(result)


def test_split_by_fold_keeps_labels_and_drops_other_subsets(tmp_path):
    protocol, _ = clip_set(tmp_path)
    metadata = classification(protocol, tmp_path).load_metadata()
    split = split_by_fold(ProtocolMetadata(metadata.labels, {**metadata.subsets, "test": metadata.subsets["train"]}), 1)
    assert list(split.subsets) == ["train", "development"] and split.labels == metadata.labels
    assert set(split.subsets["development"].attribute("fold").tolist()) == {"1"}
