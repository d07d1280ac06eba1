"""SNR estimation: exact targets, masks where the annotation says, reproducible mixing, clear errors, learning."""

import numpy as np
import pytest
import soundfile
import torch
from lightning.pytorch.callbacks import Callback

from audiotask.inference.inference import Inference
from audiotask.models import CRNN, Debug
from audiotask.tasks.snr_estimation import NoiseBank, SNREstimation, noise_gains
from audiotask.testing.dummies import load_protocol
from audiotask.testing.mixtures import coloured_noise, make_noise_folder, make_speech_protocol
from audiotask.utils.random import global_seed
from helpers import quiet_trainer

SR = 16000
DURATION = 2.0
HOP = 1600  # Debug frames of 0.1 s: frame i centred at 0.1 i + 0.05


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("snr")
    yml = make_speech_protocol(root / "speech", files_per_subset=(3, 2, 1), duration=8.0)
    noise = make_noise_folder(root / "noise", files_per_colour=2, duration=1.5)  # shorter than a chunk: looped
    return root, yml, noise


def speech_protocol(yml):
    return load_protocol(yml, "Speechy.SpeakerDiarization.Speech")


def make_task(data, model="debug", **options):
    root, yml, noise = data
    options = {"duration": DURATION, "batch_size": 6, "num_workers": 0, "cache": root / "cache", **options}
    task = SNREstimation(speech_protocol(yml), options.pop("noise", noise), **options)
    if model == "debug":
        Debug(frame_hop=HOP, task=task)
    else:
        CRNN(task=task, channels=(8, 16), time_pooling=(2, 2), n_mels=32, hidden_size=16)
    task.prepare_data()
    task.setup("fit")
    task.model.attach_specifications(task.specifications)
    return task


@pytest.fixture(scope="module")
def task(data):
    return make_task(data)


def annotated_speech(yml, uri):
    """``[(onset, offset)]`` of ``uri`` in the RTTM, read directly."""
    rttm = (yml.parent / "train.rttm").read_text().splitlines()
    return [(float(f[3]), float(f[3]) + float(f[4])) for f in (line.split() for line in rttm) if f[1] == uri]


# chunks starting on whole seconds: sample boundaries of segments are exact there
CHUNKS = [(file, start) for file in range(3) for start in (0.0, 2.0, 4.0, 6.0)]


def clean_batch(task):
    files, starts = np.array([f for f, _ in CHUNKS]), np.array([s for _, s in CHUNKS])
    return task.make_batch("train", files, starts, DURATION)


def test_specifications_say_regression_per_frame_in_db(task):
    specifications = task.specifications
    assert (specifications.problem.value, specifications.resolution.value) == ("regression", "frame")
    assert specifications.classes == ["snr"] and specifications.extra["task"] == "snr-estimation"
    assert specifications.duration == DURATION and task.monitor == ("val/mae_db", "min")
    assert SNREstimation.__init__.__kwdefaults__["duration"] == 5.0


def test_a_mixed_chunk_is_at_its_drawn_snr_over_its_speech_samples(task, data):
    _, yml, _ = data
    clean = clean_batch(task)
    draws = task.training_draws(len(CHUNKS), key=(0, 0, 0, 0, 7))
    mixed, details = task.mix(clean, task.noise_banks()[0], draws, return_details=True)
    uris = list(task.metadata.subsets["train"].uri)
    checked = 0
    for row, (file, start) in enumerate(CHUNKS):
        speech = np.zeros(int(DURATION * SR), dtype=bool)
        for onset, offset in annotated_speech(yml, uris[file]):
            speech[max(0, round((onset - start) * SR)) : max(0, round((offset - start) * SR))] = True
        # the parts written add up to the mixture; the speech part is the clean chunk, scaled
        np.testing.assert_allclose(mixed["X"][row, 0].numpy(), details.speech[row] + details.noise[row], atol=1e-6)
        chunk = clean["X"][row, 0].numpy().astype(np.float64)
        gain = details.speech[row][chunk != 0] / chunk[chunk != 0]
        np.testing.assert_allclose(gain, gain[:1].repeat(len(gain)), rtol=1e-9)
        assert np.all(details.speech[row][chunk == 0] == 0)
        if not speech.any():
            assert not details.measured[row] and not mixed["mask"][row].any()
            continue
        snr = 10 * np.log10(np.mean(details.speech[row][speech] ** 2) / np.mean(details.noise[row][speech] ** 2))
        assert snr == pytest.approx(draws.snr_db[row], abs=0.01)
        assert -5.0 <= draws.snr_db[row] <= 20.0
        counted = mixed["mask"][row].bool()
        assert torch.all(mixed["y"][row, counted, 0] == torch.tensor(draws.snr_db[row], dtype=torch.float32))
        assert torch.all(mixed["y"][row, ~counted, 0] == 0)
        checked += 1
    assert checked >= 6
    assert np.abs(mixed["X"].numpy()).max() <= 0.99


def test_frames_are_masked_exactly_where_the_annotation_has_no_speech(task, data):
    _, yml, _ = data
    mixed = task.extend_batch(clean_batch(task), key=(0, 0, 0, 0, 0))
    uris = list(task.metadata.subsets["train"].uri)
    centres = 0.1 * np.arange(20) + 0.05
    for row, (file, start) in enumerate(CHUNKS):
        expected = np.zeros(20, dtype=bool)
        for onset, offset in annotated_speech(yml, uris[file]):
            expected |= (start + centres >= onset) & (start + centres < offset)
        assert mixed["mask"][row].numpy().astype(bool).tolist() == expected.tolist()


def test_snr_is_measured_over_speech_samples_only():
    speech = np.zeros((1, 1000))
    speech[0, :100] = 1.0  # loud speech in the first tenth, silence after
    noise = np.ones((1, 1000))
    noise[0, :100] = 0.5  # noise quieter where the speech is
    gains, measured = noise_gains(speech, noise, speech != 0, np.array([10.0]))
    # 10 dB over the speech samples: (0.5 g)^2 = 1 / 10
    assert measured.tolist() == [True] and gains[0] == pytest.approx(2 * np.sqrt(0.1))
    # no speech power: measured over the whole chunk, and its targets do not count
    gains, measured = noise_gains(np.zeros((1, 1000)), noise, np.ones((1, 1000), bool), np.array([0.0]))
    assert measured.tolist() == [False] and gains[0] > 0
    with pytest.raises(ValueError, match="chunks, samples"):
        noise_gains(speech[0], noise[0], speech[0] != 0, np.array([1.0]))


def test_training_batches_are_a_pure_function_of_the_key(task):
    clean = clean_batch(task)
    key = (3, 0, 0, 1, 5)
    first, again = task.extend_batch(clean, key=key), task.extend_batch(clean, key=key)
    assert all(torch.equal(first[name], again[name]) for name in ("X", "y", "mask"))
    for changed in range(5):
        other = task.extend_batch(clean, key=tuple(k + (i == changed) for i, k in enumerate(key)))
        assert not torch.equal(first["X"], other["X"])


def test_a_resumed_stream_gives_the_batches_of_the_uninterrupted_one(data):
    task = make_task(data)
    stream = task.train_batches(epoch=0)
    batches = [next(stream) for _ in range(3)]
    task.resume_state = {"epoch": 0, "batches": 2, "num_workers": 0, "batch_size": 6}
    resumed = next(task.train_batches(epoch=0))
    assert all(torch.equal(resumed[name], batches[2][name]) for name in ("X", "y", "mask"))
    # and the mixing is the one its key draws
    expected = task.training_draws(6, key=(global_seed(), 0, 0, 0, 2)).snr_db
    # the target of every counted frame is its row's SNR (which may be negative: a maximum
    # over the row would read the uncounted frames' 0 instead, as it once did)
    mask = resumed["mask"].bool().reshape(len(expected), -1)
    y = resumed["y"].reshape(len(expected), -1)
    assert mask.any()
    for row in np.flatnonzero(mask.any(dim=1).numpy()):
        np.testing.assert_allclose(y[row][mask[row]].numpy(), np.float32(expected[row]))


def test_validation_mixtures_are_the_same_at_every_validation_and_batch_size(data, task):
    def validation(task):
        batches = list(task.val_dataloader())
        return {name: torch.cat([batch[name] for batch in batches]) for name in ("X", "y", "mask")}

    first, second = validation(task), validation(task)
    assert all(torch.equal(first[name], second[name]) for name in first)
    other = validation(make_task(data, batch_size=3))
    assert all(torch.equal(first[name], other[name]) for name in first)
    assert first["mask"].any() and len(first["X"]) == len(task._validation_chunks) == 8


def test_noise_from_a_protocol_trains_on_its_train_files_and_validates_on_its_development_files(data, tmp_path):
    yml = make_speech_protocol(tmp_path / "noises", name="Noises", files_per_subset=(2, 1, 0), duration=3.0)
    noise = load_protocol(yml, "Noises.SpeakerDiarization.Speech")
    task = make_task(data, noise=noise)
    training, validation = task.noise_banks()
    assert [name.rsplit("/", 1)[-1] for name in training.names] == ["train00.wav", "train01.wav"]
    assert [name.rsplit("/", 1)[-1] for name in validation.names] == ["development00.wav"]
    assert training.recordings[0].shape == (3 * SR,)
    assert next(iter(task.val_dataloader()))["X"].shape[-1] == DURATION * SR


def test_a_noise_shorter_than_the_chunk_is_looped_and_a_longer_one_cropped():
    bank = NoiseBank([np.arange(1, 4, dtype=np.float32), np.arange(1, 11, dtype=np.float32)], ["short", "long"])
    crops = bank.crops(np.array([0, 1, 1]), np.array([0.5, 0.0, 0.99]), 5)
    assert crops.tolist() == [[2, 3, 1, 2, 3], [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]


def test_bad_inputs_are_clear_errors_naming_the_folder_or_file(data, tmp_path):
    _, yml, noise = data
    protocol = speech_protocol(yml)
    with pytest.raises(ValueError, match=f"noise: {tmp_path / 'missing'} is not a folder"):
        SNREstimation(protocol, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(ValueError, match=f"noise: {tmp_path / 'empty'} holds no audio file"):
        SNREstimation(protocol, tmp_path / "empty")
    with pytest.raises(ValueError, match="low <= high"):
        SNREstimation(protocol, noise, snr_range=(20.0, -5.0))
    with pytest.raises(ValueError, match="loss must be one of"):
        SNREstimation(protocol, noise, loss="l1")
    (tmp_path / "silent").mkdir()
    soundfile.write(tmp_path / "silent" / "zeros.wav", np.zeros(SR, dtype=np.float32), SR)
    with pytest.raises(ValueError, match=f"noise file {tmp_path / 'silent' / 'zeros.wav'} is silent"):
        make_task(data, noise=tmp_path / "silent")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bad.wav").write_bytes(b"RIFF nothing of a wave")
    with pytest.raises(ValueError, match="bad.wav"):
        make_task(data, noise=tmp_path / "broken")


@pytest.mark.parametrize("loss,expected", [("smooth_l1", 0.5 * 0.5**2), ("mse", 0.5**2)])
def test_the_loss_counts_speech_frames_outside_warm_up_only(data, loss, expected):
    task = make_task(data, loss=loss, warm_up=0.3)  # frames 0-2 and 17-19 of 20 are warm-up
    y = torch.full((2, 20, 1), 10.0)
    mask = torch.zeros(2, 20, dtype=torch.uint8)
    mask[:, 5:15] = 1
    y_pred = y + 100.0  # wrong where nothing counts: masked and warm-up frames
    y_pred[:, 5:15] = y[:, 5:15] + 0.5
    y_pred[0, 1, 0] = 10.5
    mask[0, 1] = 1  # speech, but in the warm-up
    assert task.compute_loss(y_pred, y, DURATION, mask=mask).item() == pytest.approx(expected)


class LossHistory(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


@pytest.fixture
def one_thread():
    # a model this small trains fastest on one thread, and a busy machine's other core is no help
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["smooth_l1", "mse"])
def test_the_loss_goes_down_and_inference_gives_one_snr_per_frame(data, loss, one_thread, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # the chunks and mixtures drawn, whatever ran before
    torch.manual_seed(0)
    task = make_task(data, model="crnn", batch_size=8, loss=loss)
    model = task.model
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=1e-2)
    history = LossHistory()
    trainer = quiet_trainer(max_steps=40, callbacks=[history], num_sanity_val_steps=0, check_val_every_n_epoch=1000)
    before = trainer.validate(model, verbose=False)[0]
    trainer.fit(model)
    after = trainer.validate(model, verbose=False)[0]
    # on the fixed validation mixtures: training batches vary too much in speech to compare
    assert len(history.losses) == 40 and after["val/loss"] < 0.9 * before["val/loss"], (before, after)
    # the kept checkpoint's metric: the mean absolute error in dB over speech frames
    model.eval()
    errors = []
    with torch.no_grad():
        for batch in task.val_dataloader():
            errors.append((model(batch["X"])[..., 0] - batch["y"][..., 0])[batch["mask"].bool()].abs())
    assert after["val/mae_db"] == pytest.approx(torch.cat(errors).mean().item(), rel=1e-5)
    scores = Inference(model, batch_size=4)(next(iter(speech_protocol(data[1]).test())))
    assert scores.data.shape == (model.num_frames(8 * SR), 1) and scores.labels == ["snr"]
    assert np.isfinite(scores.data).all()


def test_generated_noises_have_their_colour():
    def slope(samples):
        power = np.abs(np.fft.rfft(samples)) ** 2
        frequencies = np.fft.rfftfreq(len(samples), 1 / SR)
        low, high = (frequencies > 100) & (frequencies < 400), (frequencies > 1600) & (frequencies < 6400)
        # dB per octave between bands four octaves apart (100-400 Hz and 1.6-6.4 kHz)
        return 10 * np.log10(power[low].mean() / power[high].mean()) / 4

    assert slope(coloured_noise("white", 4.0)) == pytest.approx(0.0, abs=0.5)
    assert slope(coloured_noise("pink", 4.0)) == pytest.approx(3.0, abs=0.7)
    assert slope(coloured_noise("brown", 4.0)) == pytest.approx(6.0, abs=0.7)
    assert np.sqrt(np.mean(coloured_noise("pink", 1.0) ** 2)) == pytest.approx(0.1, rel=1e-4)
