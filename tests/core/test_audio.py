"""Audio reading: crop semantics, resampling, downmix, and clear errors."""

import numpy as np
import pytest
import soundfile
import soxr
import torch
from pyannote.core import Segment

from audiotask.core.audio import Audio, AudioError


@pytest.fixture
def ramp(tmp_path):
    path = tmp_path / "ramp.wav"
    samples = (np.arange(16000 * 3) % 1000 / 1000.0 - 0.5).astype(np.float32)
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    return path, samples


def test_crop_is_exact_and_fixed_length(ramp):
    path, samples = ramp
    audio = Audio(16000)
    waveform, sample_rate = audio.crop(path, Segment(1.0, 1.5))
    assert sample_rate == 16000 and waveform.shape == (1, 8000)
    np.testing.assert_array_equal(waveform[0].numpy(), samples[16000:24000])
    # past the end: zero-padded to exactly round(fixed * sample_rate) samples
    waveform, _ = audio.crop({"audio": str(path)}, Segment(2.5, 3.5), fixed=1.0)
    assert waveform.shape == (1, 16000)
    np.testing.assert_array_equal(waveform[0, :8000].numpy(), samples[40000:])
    assert not waveform[0, 8000:].any()
    # before the start
    waveform, _ = audio.crop(path, Segment(-0.25, 0.75), fixed=1.0)
    assert not waveform[0, :4000].any()
    np.testing.assert_array_equal(waveform[0, 4000:].numpy(), samples[:12000])


def test_in_memory_waveform_and_whole_file(ramp):
    path, samples = ramp
    audio = Audio(16000)
    whole, _ = audio(path)
    np.testing.assert_array_equal(whole[0].numpy(), samples)
    file = {"waveform": torch.from_numpy(np.stack([samples, samples])), "sample_rate": 16000}
    assert audio.get_duration(file) == pytest.approx(3.0)
    waveform, _ = audio.crop(file, Segment(1.0, 2.0))
    np.testing.assert_array_equal(waveform[0].numpy(), samples[16000:32000])


def test_downmix_and_resampling_match_soxr(tmp_path):
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, size=(44100 * 2, 2)).astype(np.float32)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo, 44100, subtype="FLOAT")
    waveform, sample_rate = Audio(16000)(path)
    expected = soxr.resample(stereo.mean(axis=1), 44100, 16000)
    assert sample_rate == 16000 and waveform.shape == (1, 32000)
    np.testing.assert_allclose(waveform[0].numpy(), expected, atol=1e-6)
    assert Audio(16000).crop(path, Segment(0.5, 1.0), fixed=0.5)[0].shape == (1, 8000)


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    audio = Audio(16000)
    with pytest.raises(AudioError, match="not found: .*missing.wav"):
        audio.crop(tmp_path / "missing.wav", Segment(0, 1))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(AudioError, match="Cannot decode .*corrupt.wav"):
        audio.get_duration(corrupt)


def test_check_samples_refuses_empty_and_non_finite_waveforms_naming_the_file():
    from audiotask.core.audio import check_samples

    waveform = torch.zeros(1, 100)
    assert check_samples(waveform, "a.wav") is waveform
    with pytest.raises(AudioError, match="^empty audio file: a.wav$"):
        check_samples(torch.zeros(1, 0), "a.wav")
    waveform[0, [3, 50, 99]] = torch.tensor([float("nan"), float("inf"), float("-inf")])
    with pytest.raises(AudioError, match="^a.wav: 3 of 100 samples are NaN or infinite$"):
        check_samples(waveform, "a.wav")


def test_empty_files_and_waveforms_read_as_zero_samples(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, np.float32), 16000)
    audio = Audio(16000)
    assert audio.get_duration(path) == 0.0
    assert audio(path)[0].shape == (1, 0)
    assert audio({"waveform": torch.zeros(2, 0), "sample_rate": 8000})[0].shape == (1, 0)
