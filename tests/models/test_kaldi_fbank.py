"""models/kaldi_fbank.py against kaldi-native-fbank, a C++ transcription of Kaldi's
compute-fbank-feats (the front end of WeSpeaker's and BEATs' published code)."""

import numpy as np
import pytest
import torch

from audiotask.models.kaldi_fbank import KaldiFbank, kaldi_mel_banks

knf = pytest.importorskip("kaldi_native_fbank")


def kaldi_features(waveform: np.ndarray, sample_rate: int, num_bins: int, low_freq: float, high_freq: float):
    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.frame_opts.samp_freq = sample_rate
    options.mel_opts.num_bins = num_bins
    options.mel_opts.low_freq = low_freq
    options.mel_opts.high_freq = high_freq
    fbank = knf.OnlineFbank(options)
    fbank.accept_waveform(sample_rate, waveform.tolist())
    fbank.input_finished()
    return np.stack([fbank.get_frame(index) for index in range(fbank.num_frames_ready)])


@pytest.mark.parametrize("sample_rate, num_bins, low_freq, high_freq, samples",
                         [(16000, 80, 20.0, 0.0, 32123), (16000, 64, 50.0, -400.0, 16000), (8000, 23, 20.0, 0.0, 4000)])
def test_the_filterbank_is_kaldis(sample_rate, num_bins, low_freq, high_freq, samples):
    rng = np.random.default_rng(0)
    # speech-like levels of 16-bit samples, as the published models feed it (waveform * 2 ** 15)
    waveform = (3000.0 * rng.standard_normal(samples)).astype(np.float32)
    waveform[: samples // 4] *= 0.001  # a quiet stretch: the logarithm's floor region
    theirs = kaldi_features(waveform, sample_rate, num_bins, low_freq, high_freq)
    fbank = KaldiFbank(num_bins, sample_rate, low_freq=low_freq, high_freq=high_freq)
    ours = fbank(torch.from_numpy(np.stack([waveform, waveform[::-1].copy()])))
    assert ours.shape == (2, fbank.num_frames(samples), num_bins) and theirs.shape == ours.shape[1:]
    assert np.abs(ours[0].numpy() - theirs).max() < 1e-3
    assert np.abs(ours[1].numpy() - kaldi_features(waveform[::-1].copy(), sample_rate, num_bins, low_freq,
                                                   high_freq)).max() < 1e-3


def test_a_waveform_shorter_than_a_frame_has_no_frames():
    fbank = KaldiFbank(80)
    assert fbank(torch.zeros(3, 399)).shape == (3, 0, 80) and fbank.num_frames(400) == 1


def test_mel_banks_refuse_a_band_past_nyquist():
    with pytest.raises(ValueError, match="high_freq"):
        kaldi_mel_banks(40, 512, 16000, high_freq=9000.0)
