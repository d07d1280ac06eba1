import math
import pickle

import numpy as np
import pytest
import scipy.stats
import soundfile as sf
import soxr
import torch

from audiotask.augmentation import (
    SILENT_EXAMPLE_NOISE_RMS,
    BackgroundMixer,
    draw_mixup,
    filter_augment,
    frequency_mask,
    mix_at_snr,
    mixup,
    random_gain,
    time_mask,
    time_shift,
)
from audiotask.augmentation.recipe import DetectionAugmentation

NEPER = math.log(10.0) / 10.0  # natural-log units per dB of power


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def log_mels(batch: int = 6, frames: int = 20, n_mels: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, frames, n_mels, generator=seeded(seed))


# ---------------------------------------------------------------------------- mixup


def test_mixup_is_the_lambda_mixture_of_each_row_and_its_partner():
    features = log_mels()
    weak = torch.randint(0, 2, (6, 3), generator=seeded(2))
    strong = torch.randint(0, 2, (6, 20, 3), generator=seeded(3)).float()
    mixed, (mixed_weak, mixed_strong) = mixup(features, [weak, strong], alpha=0.2, generator=seeded(7))

    lam, partners = draw_mixup(torch.ones(6, dtype=torch.bool), alpha=0.2, generator=seeded(7))
    assert 0.0 <= lam <= 1.0 and sorted(partners.tolist()) == list(range(6))
    torch.testing.assert_close(mixed, lam * features + (1 - lam) * features[partners], rtol=0, atol=1e-6)
    torch.testing.assert_close(mixed_weak, lam * weak.float() + (1 - lam) * weak[partners].float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(mixed_strong, lam * strong + (1 - lam) * strong[partners], rtol=0, atol=1e-6)
    assert mixed_weak.dtype == torch.float32 and mixed_weak.shape == (6, 3) and mixed_strong.shape == (6, 20, 3)


def test_mixup_leaves_rows_outside_the_mask_unchanged_and_pairs_only_selected_rows():
    features, targets = log_mels(), torch.randint(0, 2, (6, 20, 3), generator=seeded(2)).float()
    rows = torch.tensor([True, False, True, True, False, True])
    mixed, (mixed_targets,) = mixup(features, [targets], rows=rows, generator=seeded(4))
    assert torch.equal(mixed[~rows], features[~rows]) and torch.equal(mixed_targets[~rows], targets[~rows])

    lam, partners = draw_mixup(rows, generator=seeded(4))
    assert set(partners[rows].tolist()) == {0, 2, 3, 5} and partners[~rows].tolist() == [1, 4]
    torch.testing.assert_close(mixed[rows], (lam * features + (1 - lam) * features[partners])[rows], rtol=0, atol=1e-6)


def test_hard_mixup_targets_are_the_maximum_of_both_clips():
    features, targets = log_mels(), torch.randint(0, 2, (6, 20, 3), generator=seeded(2)).float()
    _, (hard,) = mixup(features, [targets], soft=False, generator=seeded(5))
    _, partners = draw_mixup(torch.ones(6, dtype=torch.bool), generator=seeded(5))
    assert torch.equal(hard, torch.maximum(targets, targets[partners]))


def test_mixup_with_fewer_than_two_selected_rows_changes_nothing():
    features, targets = log_mels(), torch.ones(6, 3)
    rows = torch.zeros(6, dtype=torch.bool)
    rows[2] = True
    mixed, (same,) = mixup(features, [targets], rows=rows, generator=seeded())
    assert torch.equal(mixed, features) and torch.equal(same, targets)


def test_mixup_weight_follows_the_beta_distribution_of_the_baseline():
    generator = seeded(11)
    draws = np.array([draw_mixup(torch.ones(2, dtype=torch.bool), alpha=0.2, generator=generator)[0] for _ in range(2000)])
    assert abs((draws < 0.1).mean() - scipy.stats.beta.cdf(0.1, 0.2, 0.2)) < 0.04
    assert abs(draws.mean() - 0.5) < 0.04


@pytest.mark.parametrize(
    "features, targets, rows",
    [
        (torch.zeros(4, 64), [torch.zeros(4, 3)], None),
        (torch.zeros(4, 10, 64), [torch.zeros(3, 3)], None),
        (torch.zeros(4, 10, 64), [torch.zeros(4)], None),
        (torch.zeros(4, 10, 64), [torch.zeros(4, 3)], torch.ones(4)),
        (torch.zeros(4, 10, 64), [torch.zeros(4, 3)], torch.ones(3, dtype=torch.bool)),
    ],
)
def test_mixup_rejects_bad_shapes(features, targets, rows):
    with pytest.raises(ValueError, match="mixup"):
        mixup(features, targets, rows=rows)


# ---------------------------------------------------------------------------- spectral


def gain_curves(features_in: torch.Tensor, features_out: torch.Tensor) -> torch.Tensor:
    """(batch, n_mels) gain in dB, after checking that it is the same on every frame."""
    difference = features_out - features_in
    torch.testing.assert_close(difference, difference[:, :1].expand_as(difference), rtol=0, atol=1e-5)
    return difference[:, 0] / NEPER


@pytest.mark.parametrize("filter_type", ["linear", "step"])
def test_filter_augment_adds_one_gain_curve_per_example_within_the_db_range(filter_type):
    features = log_mels(batch=8)
    out = filter_augment(features, db_range=(-6.0, 6.0), filter_type=filter_type, generator=seeded())
    gains = gain_curves(features, out)
    assert gains.abs().max() <= 6.0 + 1e-4
    assert len({tuple(curve.round(decimals=3).tolist()) for curve in gains}) == 8  # each example its own


def test_step_filter_is_piecewise_constant_with_3_to_5_bands_of_at_least_min_bandwidth():
    features = log_mels(batch=32)
    gains = gain_curves(features, filter_augment(features, filter_type="step", min_bandwidth=6, generator=seeded(3)))
    counts = set()
    for curve in gains:
        changes = torch.nonzero((curve[1:] - curve[:-1]).abs() > 1e-4).flatten() + 1
        edges = [0, *changes.tolist(), len(curve)]
        assert min(np.diff(edges)) >= 6
        counts.add(len(edges) - 1)
    assert counts <= {3, 4, 5} and len(counts) > 1


def test_linear_filter_is_linear_inside_each_band():
    features = log_mels(batch=16)
    gains = gain_curves(features, filter_augment(features, filter_type="linear", generator=seeded(4)))
    # a band's gains form a line; only around the (at most 4) interior edges does the slope change
    slope_changes = ((gains[:, 2:] - 2 * gains[:, 1:-1] + gains[:, :-2]).abs() > 1e-3).sum(dim=1)
    assert slope_changes.max() <= 2 * 4 and slope_changes.min() >= 1


def test_frequency_mask_sets_one_band_of_at_most_max_width_to_the_example_mean():
    features = log_mels(batch=32)
    out = frequency_mask(features, max_width=8, generator=seeded(5))
    widths = []
    for example_in, example_out in zip(features, out):
        masked = torch.nonzero((example_out != example_in).any(dim=0)).flatten().tolist()
        if masked:
            assert masked == list(range(masked[0], masked[-1] + 1))  # one contiguous band
            assert torch.all(example_out[:, masked] == example_in.mean())
        widths.append(len(masked))
    assert max(widths) <= 8 and len(set(widths)) > 3


def test_time_mask_sets_one_stretch_of_at_most_max_width_frames_to_the_example_mean():
    features = log_mels(batch=32)
    out = time_mask(features, max_width=6, generator=seeded(5))
    widths = []
    for example_in, example_out in zip(features, out):
        masked = torch.nonzero((example_out != example_in).any(dim=1)).flatten().tolist()
        if masked:
            assert masked == list(range(masked[0], masked[-1] + 1))  # one contiguous stretch
            assert torch.all(example_out[masked] == example_in.mean())  # every band of those frames
        widths.append(len(masked))
    assert max(widths) <= 6 and len(set(widths)) > 3


def test_the_recipe_applies_time_masks_only_when_asked_and_keeps_the_targets():
    spectrogram, targets = log_mels(batch=4), torch.ones(4, 5, 2)
    rows = torch.ones(4, dtype=torch.bool)
    kwargs = dict(strong=rows, weak=~rows, pooling=1, generator=seeded(1))
    plain = DetectionAugmentation.none().spectrogram(spectrogram, targets, targets[:, 0], **kwargs)[0]
    assert torch.equal(plain, spectrogram)
    masked, frame_targets, _ = DetectionAugmentation(mixup=0.0, filter_augment=False, time_masks=2, time_mask_width=0.5) \
        .spectrogram(spectrogram, targets, targets[:, 0], **{**kwargs, "generator": seeded(1)})
    assert not torch.equal(masked, spectrogram) and torch.equal(frame_targets, targets)

def upsampled(frame_targets: torch.Tensor, pooling: int) -> torch.Tensor:
    return frame_targets.repeat_interleave(pooling, dim=1)


def test_time_shift_moves_features_by_pooling_times_the_output_frames_the_targets_move():
    pooling, output_frames, classes = 4, 25, 3
    targets = torch.zeros(16, output_frames, classes)
    targets[:, 3:6, 0] = 1.0  # one event, output frames 3..5 of every example
    targets[:, 10, 2] = 1.0
    # features carry the event where the targets say, plus 3 trailing frames pooling drops
    features = torch.cat([upsampled(targets, pooling), torch.full((16, 3, classes), 7.0)], dim=1)
    shifted, shifted_targets = time_shift(features, targets, max_shift=0.5, pooling=pooling, generator=seeded(6))

    assert torch.equal(shifted[:, : output_frames * pooling], upsampled(shifted_targets, pooling))
    assert torch.all(shifted[:, output_frames * pooling :] == 7.0)
    # the one-frame event of class 2 at output frame 10 tells each example's shift k
    moved_by = (shifted_targets[:, :, 2].argmax(dim=1) - 10 + 12) % output_frames - 12
    onsets = shifted[:, : output_frames * pooling, 2].argmax(dim=1)
    assert torch.equal(onsets, ((10 + moved_by) % output_frames) * pooling)
    assert moved_by.abs().max() <= 0.5 * 103 / pooling and len(set(moved_by.tolist())) > 3


def test_time_shift_without_targets_and_with_bad_targets():
    features = log_mels(frames=40)
    shifted, none = time_shift(features, max_shift=0.2, pooling=4, generator=seeded())
    assert none is None and shifted.shape == features.shape
    with_targets, _ = time_shift(features, torch.zeros(6, 10, 2), max_shift=0.2, pooling=4, generator=seeded())
    assert torch.equal(shifted, with_targets)
    with pytest.raises(ValueError, match="frames // pooling=10"):
        time_shift(features, torch.zeros(6, 40, 2), pooling=4)


@pytest.mark.parametrize(
    "augment",
    [
        lambda x: filter_augment(x),
        lambda x: frequency_mask(x),
        lambda x: time_shift(x, pooling=4),
    ],
)
def test_spectral_augmentations_reject_features_that_are_not_batch_frames_mels(augment):
    with pytest.raises(ValueError, match=r"\(batch, frames, n_mels\)"):
        augment(torch.zeros(20, 64))


def test_bad_parameters_are_rejected():
    features = log_mels()
    with pytest.raises(ValueError, match="filter_type"):
        filter_augment(features, filter_type="peak")
    with pytest.raises(ValueError, match="n_bands"):
        filter_augment(features, n_bands=(4, 4))
    with pytest.raises(ValueError, match="max_width"):
        frequency_mask(features, max_width=65)


# ---------------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize(
    "augment",
    [
        lambda x, g: mixup(x, [torch.ones(6, 3)], generator=g)[0],
        lambda x, g: filter_augment(x, generator=g),
        lambda x, g: filter_augment(x, filter_type="step", generator=g),
        lambda x, g: frequency_mask(x, num_masks=2, generator=g),
        lambda x, g: time_shift(x, pooling=2, max_shift=0.5, generator=g)[0],
        lambda x, g: random_gain(x, generator=g),
    ],
)
def test_the_same_seed_gives_the_same_augmentation_and_another_seed_another(augment):
    features = log_mels()
    assert torch.equal(augment(features, seeded(3)), augment(features, seeded(3)))
    assert not torch.equal(augment(features, seeded(3)), augment(features, seeded(4)))


# ---------------------------------------------------------------------------- waveform


def test_random_gain_scales_each_example_by_one_gain_within_the_range():
    waveforms = torch.rand(16, 2, 1000, generator=seeded()) + 0.1
    ratios = random_gain(waveforms, db_range=(-6.0, 3.0), generator=seeded(1)) / waveforms
    torch.testing.assert_close(ratios, ratios[:, :1, :1].expand_as(ratios))
    gains_db = 20 * torch.log10(ratios[:, 0, 0])
    assert gains_db.min() >= -6.0 - 1e-4 and gains_db.max() <= 3.0 + 1e-4 and gains_db.std() > 1.0
    with pytest.raises(ValueError, match="channels"):
        random_gain(torch.zeros(2, 1000))


def measured_snr_db(signal: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    noise = mixture.double() - signal.double()
    return 10 * torch.log10(signal.double().pow(2).mean(dim=(1, 2)) / noise.pow(2).mean(dim=(1, 2)))


def test_mix_at_snr_gives_exactly_the_asked_snr():
    signal = torch.randn(3, 2, 16000, generator=seeded(1)) * torch.tensor([0.01, 0.3, 1.0])[:, None, None]
    noise = torch.randn(3, 1, 16000, generator=seeded(2)) * 4.0
    snr_db = torch.tensor([-5.0, 0.0, 17.5])
    mixture = mix_at_snr(signal, noise, snr_db)
    assert mixture.shape == signal.shape
    assert torch.allclose(measured_snr_db(signal, mixture), snr_db.double(), atol=1e-3)
    assert torch.allclose(measured_snr_db(signal, mix_at_snr(signal, noise, 10.0)), torch.full((3,), 10.0).double(), atol=1e-3)


def test_mix_at_snr_gives_a_silent_example_the_noise_at_a_fixed_rms():
    noise = torch.randn(2, 1, 8000, generator=seeded(3)) * 3.0
    mixture = mix_at_snr(torch.zeros(2, 1, 8000), noise, 10.0)
    torch.testing.assert_close(mixture.pow(2).mean(dim=(1, 2)).sqrt(), torch.full((2,), SILENT_EXAMPLE_NOISE_RMS))
    with pytest.raises(ValueError, match="noise"):
        mix_at_snr(torch.zeros(2, 1, 8000), torch.zeros(2, 1, 4000), 10.0)


@pytest.fixture
def backgrounds(tmp_path):
    """A 16 kHz mono background of 3000 samples and an 8 kHz stereo one of 400 (800 at 16 kHz)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "backgrounds"
    (folder / "sub").mkdir(parents=True)
    long = rng.uniform(-0.5, 0.5, 3000).astype(np.float32)
    short = rng.uniform(-0.5, 0.5, (400, 2)).astype(np.float32)
    sf.write(folder / "long.wav", long, 16000, subtype="FLOAT")
    sf.write(folder / "sub" / "short.WAV", short, 8000, subtype="FLOAT")
    (folder / "notes.txt").write_text("not audio")
    expected = {"long.wav": long, "short.WAV": soxr.resample(short.mean(axis=1), 8000, 16000).astype(np.float32)}
    return folder, expected


def crops_of(backgrounds: list[np.ndarray], length: int) -> np.ndarray:
    """(crops, length): every crop of ``length`` samples of the backgrounds, wrapped (tiled) around their end."""
    return np.concatenate(
        [b[(np.arange(len(b))[:, None] + np.arange(length)[None, :]) % len(b)] for b in backgrounds]
    ).astype(np.float64)


def test_background_mixer_adds_crops_of_resampled_backgrounds_at_an_snr_in_range(backgrounds):
    folder, expected = backgrounds
    mixer = BackgroundMixer(folder, sample_rate=16000, snr_range=(5.0, 20.0), probability=1.0)
    assert sorted(path.name for path in mixer.paths) == ["long.wav", "short.WAV"]
    for path, decoded in zip(mixer.paths, mixer.backgrounds):
        assert decoded.dtype == np.float32
        np.testing.assert_allclose(decoded, expected[path.name], atol=1e-6)

    waveforms = torch.randn(8, 1, 2000, generator=seeded(1)) * 0.2
    mixed = mixer(waveforms, generator=seeded(2))
    snr = measured_snr_db(waveforms, mixed)
    assert snr.min() >= 5.0 - 1e-3 and snr.max() <= 20.0 + 1e-3
    # each example gained a scaled copy of one crop: the crop most correlated with what was added
    residuals = (mixed - waveforms)[:, 0].double().numpy()
    candidates = crops_of(mixer.backgrounds, 2000)
    best = candidates[np.argmax(np.abs(candidates @ residuals.T) / np.linalg.norm(candidates, axis=1)[:, None], axis=0)]
    scales = (best * residuals).sum(axis=1) / (best * best).sum(axis=1)
    np.testing.assert_allclose(residuals, scales[:, None] * best, atol=1e-5)


def test_background_mixer_with_probability_zero_returns_the_input(backgrounds):
    folder, _ = backgrounds
    waveforms = torch.randn(4, 2, 1000, generator=seeded(1))
    assert torch.equal(BackgroundMixer(folder, sample_rate=16000, probability=0.0)(waveforms, generator=seeded()), waveforms)


def test_background_mixer_pickles_and_replays(backgrounds):
    folder, _ = backgrounds
    mixer = BackgroundMixer([folder / "long.wav"], sample_rate=16000, probability=0.5)
    clone = pickle.loads(pickle.dumps(mixer))
    waveforms = torch.randn(8, 1, 1000, generator=seeded(1))
    mixed = mixer(waveforms, generator=seeded(9))
    assert torch.equal(mixed, clone(waveforms, generator=seeded(9)))
    changed = (mixed != waveforms).any(dim=(1, 2))
    assert 0 < int(changed.sum()) < 8  # some examples, not all, at probability 0.5


def test_background_mixer_names_the_file_it_cannot_use(tmp_path):
    missing = tmp_path / "gone.wav"
    with pytest.raises(ValueError, match="no such audio file: .*gone.wav"):
        BackgroundMixer([missing], sample_rate=16000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="empty audio file: .*empty.wav"):
        BackgroundMixer([empty], sample_rate=16000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_text("not a wav file")
    with pytest.raises(ValueError, match="Cannot decode audio file .*garbage.wav"):
        BackgroundMixer([garbage], sample_rate=16000)
    broken = tmp_path / "nan.wav"
    sf.write(broken, np.array([0.1, np.nan, 0.2], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="nan.wav: 1 of 3 samples are NaN"):
        BackgroundMixer([broken], sample_rate=16000)
    (tmp_path / "no_audio").mkdir()
    with pytest.raises(ValueError, match="no_audio holds no audio file"):
        BackgroundMixer(tmp_path / "no_audio", sample_rate=16000)


def test_background_mixer_rejects_waveforms_without_channels(backgrounds):
    folder, _ = backgrounds
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        BackgroundMixer(folder, sample_rate=16000)(torch.zeros(4, 1000))
