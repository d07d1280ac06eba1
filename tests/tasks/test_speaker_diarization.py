"""Speaker diarization: local speaker targets, permutation-invariant losses (powerset and
multi-label), the local diarization error rate, and training from the command line."""

from itertools import permutations

import lightning.pytorch as pl
import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F

from audiotask.cli.main import main
from audiotask.core.model import Model
from audiotask.core.powerset import Powerset
from audiotask.core.specifications import Problem
from audiotask.engine.local_speakers import local_speaker_targets
from audiotask.models import CRNN
from audiotask.tasks.speaker_diarization import (
    LocalDiarizationErrorRate, SpeakerDiarization, diarization_errors, permutation_invariant_bce,
    permutation_invariant_powerset_loss,
)
from audiotask.testing.dummies import load_protocol, write_database_yml
from audiotask.testing.speakers import make_speaker_protocol, write_rttm
from helpers import prepared, quiet_trainer

SPEAKERS = "Speakers.SpeakerDiarization.Speakers"
SMALL_CRNN = dict(channels=(8, 16), time_pooling=(2, 2), n_mels=32, hidden_size=16)

#: one 4-s file, four speakers: D says little first, then B, A and C in turn (label order
#: and first-activity order differ); B, A and C all talk at 2.8-2.9 s
TURNS = [
    ("spkD", 0.0, 0.45), ("spkB", 0.5, 2.0), ("spkA", 1.5, 3.0), ("spkC", 2.5, 4.0),
    ("spkB", 2.8, 2.9), ("spkB", 3.5, 3.8),
]


@pytest.fixture(scope="module")
def four_speakers(tmp_path_factory):
    root = tmp_path_factory.mktemp("four-speakers")
    soundfile.write(root / "talk.wav", np.zeros(64000, dtype=np.float32), 16000, subtype="PCM_16")
    write_rttm(root / "talk.rttm", [("talk", start, end, speaker) for speaker, start, end in TURNS])
    (root / "talk.lst").write_text("talk\n")
    subset = {"uri": "talk.lst", "annotation": "talk.rttm"}
    write_database_yml(root / "database.yml", "Four", "Talk", {"train": subset, "development": subset},
                       audio="{uri}.wav")
    return load_protocol(root / "database.yml", "Four.SpeakerDiarization.Talk")


@pytest.fixture(scope="module")
def speakers_yml(tmp_path_factory):
    return make_speaker_protocol(tmp_path_factory.mktemp("speakers"), files=(3, 1, 1), duration=8.0)


def active_frames(speaker: str, num_frames: int = 40) -> np.ndarray:
    """(frames,) 0/1: the 0.1-s frames whose centre lies in one of ``speaker``'s turns."""
    centres = 0.1 * np.arange(num_frames) + 0.05
    return np.any([(start <= centres) & (centres < end) for name, start, end in TURNS if name == speaker],
                  axis=0).astype(np.uint8)


# ---- local speakers ----------------------------------------------------------------------
def test_local_speakers_are_ordered_by_first_activity_and_the_least_active_is_dropped(four_speakers, tmp_path):
    task = prepared(SpeakerDiarization(four_speakers, duration=4.0, num_workers=0, cache=tmp_path / "cache"))
    y = task.targets("train", np.array([0]), np.array([0.0]), 4.0)["y"][0]
    assert y.shape == (40, 3) and y.dtype == np.uint8
    # spkD (4 frames) is dropped; B (first at 0.5 s), A (1.5 s), C (2.5 s) in that order
    expected = np.stack([active_frames("spkB"), active_frames("spkA"), active_frames("spkC")], axis=1)
    assert np.array_equal(y, expected)
    assert y[28].tolist() == [1, 1, 1]  # the three at once at 2.85 s...
    powerset = task.powerset
    classes = powerset.class_index(torch.from_numpy(y).float())
    assert powerset.class_names[classes[28]] == "1+2"  # ...are taught as the first two (pyannote.audio's rule)
    assert [powerset.class_names[k] for k in classes[[2, 7, 17, 22, 27, 37]]] == ["none", "1", "1+2", "2", "2+3", "1+3"]


def test_a_later_chunk_has_its_own_local_speakers(four_speakers, tmp_path):
    task = prepared(SpeakerDiarization(four_speakers, duration=2.0, num_workers=0, cache=tmp_path / "cache"))
    y = task.targets("train", np.array([0, 0]), np.array([0.0, 2.0]), 2.0)["y"]
    # first chunk: D, then B, then A; second: A, C, B (B's short turn at 0.8 s of the chunk)
    assert np.array_equal(y[0], np.stack([active_frames(s)[:20] for s in ("spkD", "spkB", "spkA")], axis=1))
    assert np.array_equal(y[1], np.stack([active_frames(s)[20:] for s in ("spkA", "spkC", "spkB")], axis=1))


def test_local_speaker_targets_of_a_batch_pad_missing_speakers_and_merge_a_speakers_turns():
    from audiotask.core.frames import Frames

    frames = Frames(step=0.1, duration=0.1, hop_samples=1600)
    # chunk 0: speaker 7 in two turns; chunk 1: nobody; chunk 2: speakers 3 then 1
    chunk, starts, ends, tracks = zip((0, 0.0, 0.3, 7), (0, 0.2, 0.5, 7), (2, 0.4, 1.0, 1), (2, 0.0, 0.2, 3))
    y = local_speaker_targets(np.array(chunk), np.array(starts), np.array(ends), np.array(tracks), frames=frames,
                              num_chunks=3, num_frames=10, max_speakers=2)
    assert y[0, :, 0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0] and not y[0, :, 1].any() and not y[1].any()
    assert y[2, :, 0].tolist() == [1, 1] + [0] * 8 and y[2, :, 1].tolist() == [0] * 4 + [1] * 6


def test_the_specifications_carry_what_reads_the_outputs_back(four_speakers, tmp_path):
    task = prepared(SpeakerDiarization(four_speakers, duration=2.0, num_workers=0, cache=tmp_path / "cache"))
    specifications = task.specifications
    assert specifications.problem is Problem.MONO_LABEL_CLASSIFICATION and specifications.permutation_invariant
    assert specifications.classes == ["none", "1", "2", "3", "1+2", "1+3", "2+3"]
    assert specifications.extra == {"task": "speaker-diarization", "max_speakers_per_chunk": 3,
                                    "max_speakers_per_frame": 2, "powerset": True}
    multilabel = prepared(SpeakerDiarization(four_speakers, duration=2.0, powerset=False, max_speakers_per_chunk=4,
                                             num_workers=0, cache=tmp_path / "cache")).specifications
    assert multilabel.problem is Problem.MULTI_LABEL_CLASSIFICATION and multilabel.classes == ["1", "2", "3", "4"]
    assert multilabel.extra["powerset"] is False and multilabel.extra["max_speakers_per_chunk"] == 4
    with pytest.raises(ValueError, match="max_speakers_per_frame"):
        SpeakerDiarization(four_speakers, max_speakers_per_chunk=2, max_speakers_per_frame=3)
    with pytest.raises(ValueError, match="max_speakers_per_chunk 7 is more than 6"):
        SpeakerDiarization(four_speakers, max_speakers_per_chunk=7)


# ---- losses ------------------------------------------------------------------------------
def random_batch(seed: int = 0, chunks: int = 4, frames: int = 12, speakers: int = 3):
    generator = torch.Generator().manual_seed(seed)
    target = (torch.rand(chunks, frames, speakers, generator=generator) > 0.6).float()
    return generator, target


def test_the_multilabel_loss_is_the_bce_of_each_chunks_best_permutation_whatever_the_target_order():
    generator, target = random_batch()
    logits = torch.randn(*target.shape, generator=generator)
    weights = (torch.rand(target.shape[:2], generator=generator) > 0.2).float()
    loss, orders = permutation_invariant_bce(logits, target, weights)
    # brute force, chunk by chunk: the weighted mean BCE of every order of the outputs
    best = []
    for b in range(len(target)):
        costs = [(F.binary_cross_entropy_with_logits(logits[b][:, list(order)], target[b], reduction="none")
                  * weights[b][:, None]).sum() for order in permutations(range(3))]
        best.append(min(costs))
    torch.testing.assert_close(loss, sum(best) / (weights.sum() * 3))
    torch.testing.assert_close(loss, (F.binary_cross_entropy_with_logits(
        torch.gather(logits, 2, orders[:, None, :].expand_as(logits)), target, reduction="none") * weights[..., None]
    ).sum() / (weights.sum() * 3))
    shuffled = target[:, :, [2, 0, 1]]
    torch.testing.assert_close(permutation_invariant_bce(logits, shuffled, weights)[0], loss)
    assert permutation_invariant_bce(logits, target)[0] <= F.binary_cross_entropy_with_logits(logits, target)


def test_the_powerset_loss_is_the_cross_entropy_of_each_chunks_best_permutation():
    generator, target = random_batch(seed=1)
    powerset = Powerset(3, 2)
    logits = torch.randn(*target.shape[:2], 7, generator=generator)
    loss, orders = permutation_invariant_powerset_loss(logits, target, powerset)
    best = []
    for b in range(len(target)):
        costs = [F.cross_entropy(logits[b], powerset.class_index(target[b][:, list(order)]), reduction="sum")
                 for order in permutations(range(3))]
        best.append(min(costs))
    torch.testing.assert_close(loss, sum(best) / target.shape[0] / target.shape[1])
    for order in ([1, 2, 0], [2, 1, 0]):
        torch.testing.assert_close(permutation_invariant_powerset_loss(logits, target[:, :, order], powerset)[0], loss)
    # logits that say the permuted target's classes score near 0
    permuted = target[:, :, [1, 2, 0]]
    confident = 20.0 * F.one_hot(powerset.class_index(permuted), 7).float()
    assert permutation_invariant_powerset_loss(confident, target, powerset)[0] < 1e-6


# ---- the local diarization error rate ----------------------------------------------------
def test_a_perfect_or_permuted_perfect_hypothesis_scores_zero():
    _, reference = random_batch(seed=2)
    metric = LocalDiarizationErrorRate()
    metric.update(reference, reference)
    metric.update(reference[:, :, [1, 2, 0]], reference)
    assert metric.compute()["der"] == 0.0


def test_the_local_der_counts_false_alarm_miss_and_confusion_as_pyannote():
    # one chunk, 4 frames, 2 speakers; the hypothesis' speakers are the reference's swapped
    reference = torch.tensor([[[1, 0], [1, 1], [0, 1], [0, 0]]]).float()
    hypothesis = torch.tensor([[[0, 1], [0, 1], [1, 1], [1, 0]]]).float()
    errors = diarization_errors(hypothesis, reference)
    # swapped back: frame 1 misses one speaker, frame 2 has one false alarm, frame 3 one
    # false alarm; no confusion
    assert {part: value.item() for part, value in errors.items()} == {
        "false_alarm": 2.0, "missed_detection": 1.0, "confusion": 0.0, "speech": 4.0}
    # frame 1 says the other speaker: a confusion
    confused = torch.tensor([[[1, 0], [0, 1], [0, 1], [0, 1]]]).float()
    errors = diarization_errors(confused, torch.tensor([[[1, 0], [1, 0], [0, 1], [0, 1]]]).float())
    assert [errors[part].item() for part in ("false_alarm", "missed_detection", "confusion")] == [0.0, 0.0, 1.0]
    metric = LocalDiarizationErrorRate()
    metric.update(hypothesis, reference, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))  # the last frame left out
    values = metric.compute()
    assert values["der"].item() == pytest.approx(2 / 4) and values["false_alarm"].item() == pytest.approx(1 / 4)


def pyannote_der_update(preds: torch.Tensor, target: torch.Tensor):
    """pyannote.audio's ``_der_update`` (pyannote/audio/torchmetrics/functional/audio/
    diarization_error_rate.py, threshold 0.5, reduce "batch") with its ``permutate``
    (utils/permutation.py: Hungarian assignment of least mean squared error), transcribed;
    (batch, speakers, frames) inputs."""
    from scipy.optimize import linear_sum_assignment

    permutated = []
    for y1, y2 in zip(target.transpose(1, 2), preds.transpose(1, 2)):  # (frames, speakers)
        cost = torch.stack([torch.mean(F.mse_loss(y2, y1[:, i:i + 1].expand(-1, y1.shape[1]), reduction="none"), 0)
                            for i in range(y1.shape[1])])
        permutated.append(y2[:, tuple(linear_sum_assignment(cost)[1])])
    hypothesis = (torch.stack(permutated).transpose(1, 2) > 0.5).float()
    detection_error = hypothesis.sum(1) - target.sum(1)
    false_alarm = detection_error.clamp_min(0)
    missed = (-detection_error).clamp_min(0)
    confusion = ((hypothesis != target) * hypothesis).sum(1) - false_alarm
    return false_alarm.sum(), missed.sum(), confusion.sum(), target.sum()


def test_the_local_der_of_hard_decisions_is_pyannotes():
    generator = torch.Generator().manual_seed(3)
    reference = (torch.rand(16, 30, 3, generator=generator) > 0.6).float()
    hypothesis = (torch.rand(16, 30, 3, generator=generator) > 0.6).float()
    metric = LocalDiarizationErrorRate()
    metric.update(hypothesis, reference)
    ours = metric.compute()
    false_alarm, missed, confusion, speech = pyannote_der_update(hypothesis.transpose(1, 2), reference.transpose(1, 2))
    assert ours["false_alarm"].item() == pytest.approx(false_alarm.item() / speech.item())
    assert ours["missed_detection"].item() == pytest.approx(missed.item() / speech.item())
    assert ours["confusion"].item() == pytest.approx(confusion.item() / speech.item())
    assert ours["der"].item() == pytest.approx((false_alarm + missed + confusion).item() / speech.item())


# ---- training ----------------------------------------------------------------------------
class Losses(pl.Callback):
    def __init__(self):
        self.values = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.values.append(float(outputs["loss"]))


@pytest.mark.parametrize("powerset", [True, False])
def test_both_formulations_learn_and_validate_by_the_local_der(speakers_yml, tmp_path, powerset):
    torch.manual_seed(0)
    task = SpeakerDiarization(load_protocol(speakers_yml, SPEAKERS), duration=1.0, batch_size=4, powerset=powerset,
                              num_workers=0, cache=tmp_path / "cache")
    model = CRNN(**SMALL_CRNN, task=task)
    model.learning_rate = 3e-3
    losses = Losses()
    assert task.monitor == ("val/der", "min")
    trainer = quiet_trainer(max_steps=20, callbacks=[losses], check_val_every_n_epoch=None, val_check_interval=20,
                            num_sanity_val_steps=0)
    trainer.fit(model)
    assert np.isfinite(losses.values).all() and np.mean(losses.values[-4:]) < np.mean(losses.values[:4]), losses.values
    metrics = trainer.callback_metrics
    assert 0.0 <= float(metrics["val/der"]) < 5.0
    parts = sum(float(metrics[f"val/der/{part}"]) for part in ("false_alarm", "missed_detection", "confusion"))
    assert parts == pytest.approx(float(metrics["val/der"]), rel=1e-5)


def test_audiotask_train_task_diarization_saves_a_model_the_pipeline_can_read(speakers_yml, tmp_path, capsys):
    small = ["--model-option", "channels=[8,16]", "--model-option", "time_pooling=[2,2]", "--model-option",
             "n_mels=32", "--model-option", "hidden_size=16"]
    common = ["train", "--database", str(speakers_yml), "--protocol", SPEAKERS, "--task", "diarization",
              "--duration", "1", "--batch-size", "4", "--epochs", "1", "--num-workers", "0",
              "--cache", str(tmp_path / "cache"), "--no-progress", *small]
    assert main([*common, "--output", str(tmp_path / "powerset")]) == 0
    assert "kept the checkpoint with the best val/der" in capsys.readouterr().out
    model = Model.from_pretrained(tmp_path / "powerset" / "model")
    assert model.specifications.extra == {"task": "speaker-diarization", "max_speakers_per_chunk": 3,
                                          "max_speakers_per_frame": 2, "powerset": True}
    assert model(torch.zeros(1, 1, 16000)).shape[-1] == 7

    assert main([*common, "--no-powerset", "--max-speakers-per-chunk", "2", "--output", str(tmp_path / "multi")]) == 0
    model = Model.from_pretrained(tmp_path / "multi" / "model")
    assert model.specifications.extra["powerset"] is False and model.specifications.classes == ["1", "2"]
    assert model(torch.zeros(1, 1, 16000)).shape[-1] == 2
