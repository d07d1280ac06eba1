"""Sound event detection as DCASE trains it: label kinds in one batch, two outputs, mean
teacher, dynamic mixing, selection by PSDS."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from audiotask.augmentation.recipe import DetectionAugmentation
from audiotask.demo.soundscapes import MIXED_PROTOCOL, PROTOCOL, build_demo_dataset, kind_of_files
from audiotask.tasks.sed.mixing import DynamicMixing
from audiotask.engine.samplers import ClipSampler, MixedSampler, split_batch
from audiotask.tasks.sed.teacher import MeanTeacher, sigmoid_ramp_up
from audiotask.inference.formats import read_events_tsv
from audiotask.models import CRNN
from audiotask.tasks import SoundEventDetection
from audiotask.tasks.sed import DCASE_CLASSES
from audiotask.testing.dummies import load_protocol

SMALL = dict(channels=[4, 8, 8], hidden_size=8, n_mels=32)


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    return root, build_demo_dataset(root / "data", num_train=8, num_development=2, num_test=1)


def mixed_task(root, yml, **options):
    options = {"batch_size": 8, "num_workers": 0, "duration": 10.0, **options}
    task = SoundEventDetection(load_protocol(yml, MIXED_PROTOCOL), classes=DCASE_CLASSES, resolution="frame",
                               cache=root / "cache", **options)
    model = CRNN(task=task, **SMALL)
    task.prepare_data()
    task.setup("fit")
    model.attach_specifications(task.specifications)
    return task


def test_frame_resolution_is_the_recipe_and_chunk_the_plain_task(mixed_data):
    """``SoundEventDetection`` is the plain task; asked for frames it is DCASE's recipe (a
    subclass, in its own module); the recipe's options are refused by the plain task."""
    import pickle

    from audiotask.tasks.sed.recipe import DetectionRecipe

    root, yml = mixed_data
    protocol = load_protocol(yml, MIXED_PROTOCOL)
    plain = SoundEventDetection(protocol, classes=DCASE_CLASSES, cache=root / "cache")
    assert type(plain) is SoundEventDetection and not hasattr(plain, "teacher_options")
    for positional in (False, True):
        recipe = (SoundEventDetection(protocol, DCASE_CLASSES, "frame") if positional
                  else SoundEventDetection(protocol, classes=DCASE_CLASSES, resolution="frame"))
        assert type(recipe) is DetectionRecipe and isinstance(recipe, SoundEventDetection)
        assert recipe.label_kinds == ("strong", "weak", "none") and recipe.select_by == "psds1"
    assert type(pickle.loads(pickle.dumps(recipe))) is DetectionRecipe  # dataloader workers may pickle it
    for option in ({"mean_teacher": False}, {"select_by": "loss"}, {"kind_proportions": {"strong": 1.0}}):
        with pytest.raises(ValueError, match=f"{next(iter(option))} applies to FRAME resolution only"):
            SoundEventDetection(protocol, classes=DCASE_CLASSES, resolution="chunk", **option)


def test_split_batch_follows_the_proportions():
    assert split_batch(16, (1, 1, 2)) == [4, 4, 8]
    assert split_batch(5, (1, 1, 2)) == [1, 1, 3]
    assert split_batch(3, (1, 0, 100)) == [1, 0, 2]
    with pytest.raises(ValueError):
        split_batch(2, (1, 1, 1))


def test_a_mixed_sampler_batch_depends_only_on_its_index():
    def sampler():
        parts = [ClipSampler(np.full(5, 10.0), 10.0, file_ids=np.arange(5), seed=1), ClipSampler(np.full(7, 10.0), 10.0, file_ids=np.arange(5, 12), seed=2)]
        return MixedSampler(parts, [2, 3], seed=0)

    first = sampler()
    batches = [first.take(5) for _ in range(4)]
    assert all(set(b.files[:2]) <= set(range(5)) and set(b.files[2:]) <= set(range(5, 12)) for b in batches)
    again = sampler()
    again.position = 3 * 5
    assert np.array_equal(again.take(5).files, batches[3].files)


def test_one_batch_unites_strong_weak_and_unlabelled_files_with_exact_masks(mixed_data):
    root, yml = mixed_data
    task = mixed_task(root, yml, augmentation=DetectionAugmentation.none())
    batch = next(task.train_batches(epoch=0))
    train = task.metadata.subsets["train"]
    kinds = dict(zip(train.uri.tolist(), train.attribute("label_kind").tolist()))
    # 8 files: 2 strong, 2 weak, 4 unlabelled; a batch of 8 takes them 2 : 2 : 4
    assert kind_of_files(8) == ["strong"] * 2 + ["weak"] * 2 + ["unlabelled"] * 4
    chunks = task.make_sampler(0).take(8)
    files = train.uri[chunks.files].tolist()
    assert [kinds[uri] for uri in files] == ["strong"] * 2 + ["weak"] * 2 + ["none"] * 4
    assert batch["mask"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert batch["mask_clip"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    reference = read_events_tsv(root / "data" / "metadata" / "train.tsv")
    frames = task.model.frames
    centres = frames.centers(batch["y"].shape[1])
    for row, uri in enumerate(files):
        events = reference.get(f"{uri}.wav", [])
        labels = {label for _, _, label in events}
        clip = {DCASE_CLASSES[k] for k in np.flatnonzero(batch["y_clip"][row].numpy())}
        if kinds[uri] == "none":
            assert not clip and not batch["y"][row].any()
            continue
        assert clip == labels  # strong: the events of the clip; weak: its tags
        if kinds[uri] == "weak":
            assert not batch["y"][row].any()  # no frame is known
            continue
        for k, name in enumerate(DCASE_CLASSES):
            expected = np.zeros(len(centres), dtype=bool)
            for onset, offset, label in events:
                if label == name:
                    expected |= (centres >= onset) & (centres < offset)
            assert np.array_equal(batch["y"][row, :, k].numpy().astype(bool), expected), (uri, name)



def logged_losses(task, batch) -> dict:
    """The losses ``task.training_step`` logs on ``batch`` (as floats, by name)."""
    logged = {}
    task.model.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    torch.manual_seed(0)  # the same dropout draws each time
    task.training_step(batch, 0)
    return logged


def test_strong_rows_train_the_frame_output_and_weak_rows_the_clip_output(mixed_data):
    """As DCASE's baseline: the clip loss is over weakly labelled rows only. (On strong rows
    too, it cost 0.07 PSDS1 on real recordings.)"""
    root, yml = mixed_data
    task = mixed_task(root, yml, augmentation=DetectionAugmentation.none(), mean_teacher=False)
    batch = next(task.train_batches(epoch=0))
    strong = batch["mask"].bool()
    weak = batch["mask_clip"].bool() & ~strong
    assert strong.any() and weak.any()
    before = logged_losses(task, batch)
    # clip targets of strong rows changed: the clip loss is the same
    flipped = dict(batch, y_clip=torch.where(strong[:, None], 1 - batch["y_clip"], batch["y_clip"]))
    assert logged_losses(task, flipped)["train/clip"] == pytest.approx(before["train/clip"])
    # frame targets of strong rows changed: the frame loss changes, the clip loss does not
    moved = dict(batch, y=torch.where(strong[:, None, None], 1 - batch["y"], batch["y"]))
    after = logged_losses(task, moved)
    assert after["train/frame"] != pytest.approx(before["train/frame"])
    assert after["train/clip"] == pytest.approx(before["train/clip"])
    # clip targets of weak rows changed: the clip loss changes
    tagged = dict(batch, y_clip=torch.where(weak[:, None], 1 - batch["y_clip"], batch["y_clip"]))
    assert logged_losses(task, tagged)["train/clip"] != pytest.approx(before["train/clip"])

def test_the_frame_crnn_also_gives_a_clip_output_pooled_from_its_frames(mixed_data):
    root, yml = mixed_data
    model = mixed_task(root, yml).model.eval()
    waveforms = torch.randn(3, 1, 16000 * 2)
    frame_logits, clip_logits = model.forward_spectrogram(model.spectrogram(waveforms), clip=True)
    assert torch.allclose(frame_logits, model(waveforms))
    assert clip_logits.shape == (3, len(DCASE_CLASSES))
    probability = torch.sigmoid(clip_logits)
    frames = torch.sigmoid(frame_logits)
    # an attention average of the frame probabilities lies between their extremes
    assert (probability <= frames.amax(dim=1) + 1e-5).all() and (probability >= frames.amin(dim=1) - 1e-5).all()


def test_the_teacher_follows_the_student_by_exponential_moving_average():
    student = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    teacher = MeanTeacher(student, decay=0.9, weight=2.0, ramp_up=10)
    before = {name: value.clone() for name, value in teacher.model.state_dict().items()}
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(1.0)
        student[1].running_mean.fill_(3.0)
        student[1].num_batches_tracked.fill_(7)
    teacher.update(student, step=100)  # decay min(0.9, 101 / 110) = 0.9
    after = {name: value.clone() for name, value in teacher.model.state_dict().items()}
    current = student.state_dict()
    for name in ("0.weight", "0.bias", "1.weight", "1.running_mean"):
        assert torch.allclose(after[name], 0.9 * before[name] + 0.1 * current[name]), name
    assert int(after["1.num_batches_tracked"]) == 7
    teacher.update(student, step=0)  # early: decay 1 / 10
    assert torch.allclose(teacher.model.state_dict()["0.bias"], 0.1 * after["0.bias"] + 0.9 * current["0.bias"])
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert teacher.consistency_weight(10) == 2.0 and teacher.consistency_weight(0) == pytest.approx(2 * np.exp(-5))
    assert sigmoid_ramp_up(5, 10) == pytest.approx(np.exp(-5 * 0.25))


def test_training_keeps_the_best_network_by_psds_and_saves_it_plain(mixed_data, tmp_path):
    from audiotask.core.model import Model
    from audiotask.training import fit

    root, yml = mixed_data
    task = mixed_task(root, yml, consistency_ramp_up=2)
    result = fit(task.model, tmp_path / "run", max_steps=3, progress=False, check_val_every_n_epoch=1, log_every_n_steps=1)
    assert result.monitored == "val/psds1"
    checkpoint = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    kept = checkpoint["audiotask_kept"]
    assert kept in ("student", "teacher")
    assert checkpoint["teacher_state_dict"].keys() == checkpoint["state_dict"].keys()
    # the saved model holds the kept network's weights, and nothing of the other
    saved = Model.from_pretrained(tmp_path / "run" / "model").state_dict()
    expected = checkpoint["state_dict" if kept == "student" else "teacher_state_dict"]
    assert all(torch.equal(saved[name], expected[name]) for name in saved)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    # one network is scored: the teacher, there being one (the mixed set has weak and unlabelled files)
    assert kept == "teacher"
    assert "val/psds1_teacher" in header and "val/psds1_student" not in header and "train/consistency" in header


def test_the_mean_teacher_is_on_by_default_only_where_files_lack_strong_labels(mixed_data):
    root, yml = mixed_data
    assert mixed_task(root, yml).mean_teacher  # strong, weak and unlabelled files
    assert not mixed_task(root, yml, mean_teacher=False).mean_teacher
    strong = SoundEventDetection(load_protocol(yml, PROTOCOL), classes=DCASE_CLASSES, resolution="frame",
                                 duration=10.0, batch_size=4, num_workers=0, cache=root / "cache")
    CRNN(task=strong, **SMALL)
    strong.prepare_data()
    strong.setup("fit")
    assert not strong.mean_teacher  # all strongly labelled: the teacher would only cost
    assert [name for name, _ in strong.networks()] == ["student"]


def test_the_teacher_is_no_parameter_of_the_model(mixed_data):
    root, yml = mixed_data
    task = mixed_task(root, yml)
    teacher = task.ensure_teacher()
    names = {name for name, _ in task.model.named_parameters()}
    assert not any(name.startswith("teacher") for name in names)
    assert all(p is not q for p in teacher.model.parameters() for q in task.model.parameters())
    assert "teacher_state_dict" in task.checkpoint_extras()


@pytest.fixture(scope="module")
def event_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("events")
    rng = np.random.default_rng(0)
    for name, frequency in (("Dog", 400.0), ("Speech", 2500.0)):
        (root / "events" / name).mkdir(parents=True)
        t = np.arange(int(0.8 * 16000)) / 16000
        soundfile.write(root / "events" / name / "a.wav", (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), 16000)
    (root / "backgrounds").mkdir()
    soundfile.write(root / "backgrounds" / "b.wav", (0.01 * rng.standard_normal(16000 * 3)).astype(np.float32), 16000)
    return root


def test_batches_completed_by_dynamic_mixing_have_exact_labels_and_resume(mixed_data, event_folders):
    root, yml = mixed_data
    mixing = DynamicMixing(events=event_folders / "events", backgrounds=event_folders / "backgrounds", share=0.25)
    task = mixed_task(root, yml, mixing=mixing)
    assert task.sampled_rows() == 6 and task.mixed_rows() == 2
    stream = task.train_batches(epoch=0)
    batches = [next(stream) for _ in range(3)]
    batch = batches[2]
    assert batch["X"].shape[0] == 8 and batch["mask"][-2:].tolist() == [1, 1] and batch["mask_clip"][-2:].tolist() == [1, 1]
    # the mixed rows' targets are those of the events the mixer placed
    mixer = task.soundscape_mixer()
    from audiotask.utils.random import global_seed

    waveforms, events = mixer.soundscapes(2, seed=global_seed(), rank=0, worker=0, epoch=0, index=2)
    assert torch.equal(batch["X"][-2:], torch.from_numpy(waveforms))
    # by hand, not by the mixer's own frame_targets: a frame is active when its centre lies in an event
    frames, num_frames = task.model.frames, batch["y"].shape[1]
    centres = frames.start + np.arange(num_frames) * frames.step + frames.duration / 2
    expected = np.zeros((2, num_frames, len(DCASE_CLASSES)), dtype=np.uint8)
    for row, soundscape in enumerate(events):
        for onset, offset, k in soundscape:
            expected[row, (centres >= onset) & (centres < offset), k] = 1
    assert expected.any() and np.array_equal(batch["y"][-2:].numpy(), expected)
    assert {DCASE_CLASSES.index(name) for name in ("Dog", "Speech")} >= set(np.flatnonzero(expected.max(axis=(0, 1))))
    # resuming after two batches gives the third again
    task.resume_state = {"epoch": 0, "batches": 2, "num_workers": 0, "batch_size": 8}
    resumed = next(task.train_batches(epoch=0))
    assert all(torch.equal(resumed[key], batch[key]) for key in batch)


def test_augmentation_keeps_frame_labels_aligned_with_a_time_shift(mixed_data):
    root, yml = mixed_data
    task = mixed_task(root, yml, augmentation=DetectionAugmentation(mixup=0.0, filter_augment=False, time_shift=0.5))
    model = task.model
    batch = next(task.train_batches(epoch=0))
    spectrogram = model.spectrogram(batch["X"])
    pooling = model.spectrogram_frames_per_output
    shifted, y, _ = task.recipe.spectrogram(spectrogram, batch["y"], batch["y_clip"], strong=batch["mask"].bool(),
                                            weak=batch["mask_clip"].bool(), pooling=pooling, generator=torch.Generator().manual_seed(3))
    frames = y.shape[1]
    for row in range(len(y)):
        shifts = [k for k in range(frames) if torch.equal(torch.roll(spectrogram[row, : frames * pooling], k * pooling, 0), shifted[row, : frames * pooling])]
        assert shifts, row
        assert torch.equal(torch.roll(batch["y"][row].float(), shifts[0], 0), y[row])


def test_a_frame_crnn_saved_before_its_clip_output_existed_still_loads(mixed_data, tmp_path):
    from safetensors.torch import load_file, save_file

    from audiotask.core.model import Model

    root, yml = mixed_data
    model = mixed_task(root, yml).model.eval()
    folder = model.save_pretrained(tmp_path / "model")
    weights = load_file(folder / "model.safetensors")
    save_file({name: value for name, value in weights.items() if not name.startswith("clip_head.")}, folder / "model.safetensors")
    waveforms = torch.randn(1, 1, 16000)
    assert torch.allclose(Model.from_pretrained(folder)(waveforms), model(waveforms))
    save_file({name: value for name, value in weights.items() if not name.startswith("head.")}, folder / "model.safetensors")
    with pytest.raises(RuntimeError, match="missing \\['head.weight', 'head.bias'\\]"):
        Model.from_pretrained(folder)


def test_a_database_of_strong_weak_and_unlabelled_folders_gives_each_file_its_label_kind(tmp_path):
    from pyannote.database import FileFinder, registry

    from audiotask.protocols.dcase import write_dcase_tsv
    from audiotask.protocols.label_kinds import Files, write_label_kinds_database

    for folder, names in (("strong", ["s1", "s2"]), ("weak", ["w1"]), ("unlabelled", ["u1", "u2", "u3"]), ("dev", ["d1"])):
        (tmp_path / folder).mkdir()
        for name in names:
            soundfile.write(tmp_path / folder / f"{name}.{'flac' if name == 'u3' else 'wav'}", np.zeros(1600, dtype=np.float32), 16000)
    write_dcase_tsv(tmp_path / "strong.tsv", [("s1.wav", 0.0, 0.05, "Dog")])
    (tmp_path / "weak.tsv").write_text("filename\tevent_labels\nw1.wav\tCat,Dog\n")
    write_dcase_tsv(tmp_path / "dev.tsv", [("d1.wav", 0.0, 0.05, "Cat")])
    (tmp_path / "some.lst").write_text("u1\nu3\n")
    name = write_label_kinds_database(
        tmp_path / "db" / "database.yml", "Kitchen",
        train=[Files(tmp_path / "strong", tmp_path / "strong.tsv"), Files(tmp_path / "weak", tmp_path / "weak.tsv"),
               Files(tmp_path / "unlabelled", uris=tmp_path / "some.lst")],
        development=Files(tmp_path / "dev", tmp_path / "dev.tsv"), classes=["Cat", "Dog"],
    )
    assert name == "X.SpeakerDiarization.Kitchen"
    registry.load_database(str(tmp_path / "db" / "database.yml"))
    protocol = registry.get_protocol(name, preprocessors={"audio": FileFinder()})
    kinds = {}
    for file in protocol.train():
        annotation = file["annotation"] if "annotation" in file else None
        kinds[file["uri"]] = type(annotation).__name__
        assert Path(file["audio"]).is_file()
    assert kinds == {"s1": "Annotation", "s2": "Annotation", "w1": "WeakLabels", "u1": "NoneType", "u3": "NoneType"}
    assert [f["uri"] for f in protocol.development()] == ["d1"]
    with pytest.raises(ValueError, match="no audio file in"):
        Files(tmp_path / "unlabelled", uris=["u9"]).uri_list()


def test_the_command_line_builds_the_recipe_from_its_options(event_folders):
    from audiotask.cli.common import CommandError
    from audiotask.cli.option_readers import detection_augmentation, dynamic_mixing, parse_shares

    assert detection_augmentation(["none=true"]) == DetectionAugmentation.none()
    assert detection_augmentation(["mixup=0", "frequency_masks=2"]) == DetectionAugmentation(mixup=0.0, frequency_masks=2)
    with pytest.raises(CommandError, match="--augmentation-option"):
        detection_augmentation(["mixup=2"])
    mixing = dynamic_mixing([f"events={event_folders / 'events'}", "share=0.5", "snr_range=[5,10]"])
    assert mixing.share == 0.5 and tuple(mixing.snr_range) == (5, 10)
    with pytest.raises(CommandError, match="events=FOLDER"):
        dynamic_mixing(["share=0.5"])
    assert parse_shares("strong=1, weak=1,none=2") == {"strong": 1.0, "weak": 1.0, "none": 2.0}
    with pytest.raises(CommandError, match="KIND=SHARE"):
        parse_shares("strong")


def test_the_command_line_gives_sed_the_crnn_measured_best_unless_told_otherwise():
    import argparse

    from audiotask.cli.common import model_options

    def options(task, *pairs, model="CRNN"):
        return model_options(argparse.Namespace(task=task, model=model, model_option=list(pairs)))

    assert options("sed") == {"channels": [16, 32, 64], "n_mels": 32, "hidden_size": 64,
                              "normalization": "instance"}
    assert options("sed", "n_mels=64")["n_mels"] == 64
    assert options("vad") == {} and options("sed", model="Debug") == {}
