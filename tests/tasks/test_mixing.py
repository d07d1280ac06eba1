"""Dynamic mixing: exact labels, seeded and resumable batches, SNRs as drawn, clear errors."""

import pickle

import numpy as np
import pytest
import soundfile

from audiotask.core.frames import Frames
from audiotask.tasks.sed.mixing import DynamicMixing, SoundscapeMixer, trim_bounds

SR = 16000
DURATION = 2.0
CLASSES = ["Dog", "Speech"]
LEAD, TONE, TAIL = 0.2, 0.5, 0.3  # seconds of the clip with silence around its tone


def tone(seconds, sample_rate, frequency=440.0, amplitude=0.5):
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    # a cosine: the first and last samples of the tone are loud, so its bounds are sharp
    return (amplitude * np.cos(2 * np.pi * frequency * t)).astype(np.float32)


def padded_tone(sample_rate=SR, frequency=440.0):
    silence = lambda s: np.zeros(int(round(s * sample_rate)), dtype=np.float32)  # noqa: E731
    return np.concatenate([silence(LEAD), tone(TONE, sample_rate, frequency), silence(TAIL)])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixing")
    (root / "events" / "Dog").mkdir(parents=True)
    (root / "events" / "Speech").mkdir()
    (root / "backgrounds").mkdir()
    soundfile.write(root / "events" / "Dog" / "padded.wav", padded_tone(), SR)
    soundfile.write(root / "events" / "Dog" / "short.flac", tone(0.3, SR, 700.0), SR)
    soundfile.write(root / "events" / "Speech" / "slow.wav", padded_tone(22050, 1500.0), 22050)
    stereo = np.stack([tone(0.8, SR, 2000.0), tone(0.8, SR, 2000.0, 0.25)], axis=1)
    soundfile.write(root / "events" / "Speech" / "stereo.wav", stereo, SR)
    # longer than the soundscape: cropped
    soundfile.write(root / "events" / "Speech" / "long.wav", tone(3.0, SR, 1000.0), SR)
    # louder towards its end: an SNR measured against the whole background would miss
    envelope = np.linspace(0.05, 0.5, int(1.5 * SR))
    noise = (np.random.default_rng(0).standard_normal(int(1.5 * SR)) * envelope).astype(np.float32)
    soundfile.write(root / "backgrounds" / "noise.wav", noise, SR)
    (root / "only_padded" / "Dog").mkdir(parents=True)
    soundfile.write(root / "only_padded" / "Dog" / "padded.wav", padded_tone(), SR)
    return root


def mixer(data, **options):
    options = {"events": data / "events", "backgrounds": data / "backgrounds", **options}
    return SoundscapeMixer(DynamicMixing(**options), CLASSES, sample_rate=SR, duration=DURATION)


@pytest.fixture(scope="module")
def default_mixer(data):
    return mixer(data)


KEY = dict(seed=3, rank=0, worker=0, epoch=0)


def test_batches_have_their_shape_and_never_clip(default_mixer):
    waveforms, events = default_mixer.soundscapes(6, **KEY, index=0)
    assert waveforms.shape == (6, 1, int(DURATION * SR)) and waveforms.dtype == np.float32
    assert np.abs(waveforms).max() <= 0.99
    assert len(events) == 6
    for soundscape in events:
        assert soundscape == sorted(soundscape)
        for onset, offset, cls in soundscape:
            assert 0 <= onset < offset <= DURATION and cls in (0, 1)


def test_trim_keeps_exactly_the_tone():
    start, stop = trim_bounds(padded_tone(), SR, 40.0)
    assert (start, stop) == (int(LEAD * SR), int((LEAD + TONE) * SR))
    assert trim_bounds(np.zeros(100, dtype=np.float32), SR, 40.0) is None


def test_a_label_spans_exactly_the_samples_written(data):
    only = SoundscapeMixer(
        DynamicMixing(data / "only_padded", events_per_clip=(1, 1)), ["Dog"], sample_rate=SR, duration=DURATION
    )
    waveforms, events, details = only.soundscapes(8, **KEY, index=0, return_details=True)
    for b in range(8):
        [(onset, offset, cls)] = events[b]
        assert cls == 0
        assert offset - onset == pytest.approx(TONE, abs=0.5 / SR)  # the silence around the tone is gone
        # the mixture less its noise floor is the event alone
        written = np.flatnonzero(waveforms[b, 0] != details.background[b])
        assert abs(written[0] - onset * SR) <= 1 and abs(written[-1] + 1 - offset * SR) <= 1


def test_a_clip_at_another_rate_is_resampled_and_trimmed(data, default_mixer):
    lengths = default_mixer._clip_length
    # sorted files: Dog/padded, Dog/short, Speech/long, Speech/slow (22050 Hz), Speech/stereo
    assert lengths[4] == int(0.8 * SR)
    assert abs(lengths[3] - TONE * SR) <= 0.002 * SR  # soxr's filter rings a little around the steps


def test_an_event_longer_than_the_soundscape_fills_it(data):
    # Speech/long.wav lasts 3 s: cropped to the whole soundscape, nothing else fits beside it
    alone = mixer(data, events_per_clip=(1, 1), max_overlap=1)
    events = [e for index in range(10) for e in alone.soundscapes(4, **KEY, index=index)[1]]
    assert [(0.0, DURATION, CLASSES.index("Speech"))] in events


def test_a_batch_drawn_alone_equals_the_same_batch_drawn_in_sequence(data, default_mixer):
    for index in range(5):
        default_mixer.soundscapes(4, **KEY, index=index)
    in_sequence = default_mixer.soundscapes(4, **KEY, index=5)
    alone = mixer(data).soundscapes(4, **KEY, index=5)
    np.testing.assert_array_equal(in_sequence[0], alone[0])
    assert in_sequence[1] == alone[1]


@pytest.mark.parametrize("change", [dict(seed=4), dict(rank=1), dict(worker=1), dict(epoch=1), dict(index=1)])
def test_every_part_of_the_key_gives_other_soundscapes(default_mixer, change):
    base = default_mixer.soundscapes(4, **{**KEY, "index": 0})
    other = default_mixer.soundscapes(4, **{**KEY, "index": 0, **change})
    assert not np.array_equal(base[0], other[0])


def test_each_event_is_at_its_drawn_snr_even_when_the_mixture_is_scaled(data):
    loud = mixer(data, snr_range=(5.0, 20.0), max_overlap=1)
    waveforms, events, details = loud.soundscapes(8, **KEY, index=0, return_details=True)
    assert (details.scale < 1).any()  # loud enough that clipping was avoided
    checked = 0
    for b in range(8):
        alone = waveforms[b, 0].astype(np.float64) - details.background[b]
        for (onset, offset, _), snr in zip(events[b], details.snr_db[b]):
            span = slice(round(onset * SR), round(offset * SR))
            measured = 10 * np.log10(np.mean(alone[span] ** 2) / np.mean(details.background[b, span].astype(np.float64) ** 2))
            assert measured == pytest.approx(snr, abs=0.1)
            assert 5.0 <= snr <= 20.0
            checked += 1
    assert checked >= 8


def test_max_overlap_one_gives_no_overlapping_labels(data):
    alone = mixer(data, events_per_clip=(3, 3), max_overlap=1)
    for index in range(10):
        _, events = alone.soundscapes(4, **KEY, index=index)
        for soundscape in events:
            for (_, offset, _), (onset, _, _) in zip(soundscape, soundscape[1:]):
                assert offset <= onset


def test_max_overlap_bounds_the_events_sounding_at_once(data):
    two = mixer(data, events_per_clip=(3, 3), max_overlap=2)
    most = 0
    for index in range(10):
        _, events = two.soundscapes(4, **KEY, index=index)
        for soundscape in events:
            for onset, _, _ in soundscape:
                most = max(most, sum(on <= onset < off for on, off, _ in soundscape))
    assert most == 2


def test_min_gap_separates_events_of_one_class(data):
    gapped = mixer(data, events_per_clip=(3, 3), max_overlap=3, min_gap=0.1)
    for index in range(10):
        _, events = gapped.soundscapes(4, **KEY, index=index)
        for soundscape in events:
            for i, (on, off, cls) in enumerate(soundscape):
                for on2, _, cls2 in soundscape[i + 1 :]:
                    assert cls2 != cls or on2 - off >= 0.1 - 1e-9


def test_events_per_clip_is_respected(data):
    # room for every event: short clips, overlap up to the most events drawn
    ranged = SoundscapeMixer(
        DynamicMixing(data / "only_padded", events_per_clip=(2, 3), max_overlap=3), ["Dog"], sample_rate=SR,
        duration=DURATION,
    )
    counts = set()
    for index in range(10):
        _, events = ranged.soundscapes(4, **KEY, index=index)
        counts.update(len(e) for e in events)
    assert counts == {2, 3}


def test_frame_targets_agree_with_the_events(default_mixer):
    _, events = default_mixer.soundscapes(4, **KEY, index=2)
    frames = Frames.from_hop(160, SR)
    num_frames = frames.num_frames_for_duration(DURATION, SR)
    targets = default_mixer.frame_targets(events, frames=frames, num_frames=num_frames)
    assert targets.shape == (4, num_frames, 2) and targets.dtype == np.uint8
    centres = frames.centers(num_frames)
    expected = np.zeros_like(targets)
    for b, soundscape in enumerate(events):
        for onset, offset, cls in soundscape:
            expected[b, (centres >= onset) & (centres < offset), cls] = 1
    np.testing.assert_array_equal(targets, expected)
    assert default_mixer.frame_targets([[], []], frames=frames, num_frames=num_frames).sum() == 0


def test_without_backgrounds_there_is_no_digital_silence(data):
    quiet = mixer(data, backgrounds=None, events_per_clip=(0, 1))
    waveforms, _ = quiet.soundscapes(4, **KEY, index=0)
    assert np.count_nonzero(waveforms == 0) == 0
    assert np.sqrt(np.mean(waveforms[:, 0, :1000] ** 2)) < 0.01


def test_the_mixer_survives_pickling(default_mixer):
    copy = pickle.loads(pickle.dumps(default_mixer))
    a, b = default_mixer.soundscapes(3, **KEY, index=7), copy.soundscapes(3, **KEY, index=7)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


# ---- errors ----------------------------------------------------------------------------
def test_a_class_without_folder_is_named_and_never_mixed(data):
    with pytest.warns(UserWarning, match="for class\\(es\\) Cat"):
        mixer = SoundscapeMixer(DynamicMixing(data / "only_padded"), ["Dog", "Cat"], sample_rate=SR, duration=DURATION)
    _, events = mixer.soundscapes(8, **KEY, index=0)
    assert {label for clip in events for _, _, label in clip} == {0}


def test_no_class_folder_at_all_is_an_error(data):
    with pytest.raises(ValueError, match="no folder of a class"):
        SoundscapeMixer(DynamicMixing(data / "only_padded"), ["Bird", "Cat"], sample_rate=SR, duration=DURATION)


def test_an_empty_class_folder_is_named(tmp_path):
    (tmp_path / "Dog").mkdir()
    (tmp_path / "Dog" / "notes.txt").write_text("no audio here")
    with pytest.raises(ValueError, match="Dog.*no audio clip"):
        SoundscapeMixer(DynamicMixing(tmp_path), ["Dog"], sample_rate=SR, duration=DURATION)


def test_an_undecodable_clip_is_named(tmp_path):
    (tmp_path / "Dog").mkdir()
    (tmp_path / "Dog" / "x.wav").write_bytes(b"this is not a wav file" * 10)
    with pytest.raises(ValueError, match="x.wav"):
        SoundscapeMixer(DynamicMixing(tmp_path), ["Dog"], sample_rate=SR, duration=DURATION)


def test_a_folder_that_is_not_a_class_is_ignored_with_a_warning(tmp_path):
    (tmp_path / "Dog").mkdir()
    (tmp_path / "Cat").mkdir()
    soundfile.write(tmp_path / "Dog" / "a.wav", tone(0.3, SR), SR)
    with pytest.warns(UserWarning, match="Cat"):
        SoundscapeMixer(DynamicMixing(tmp_path), ["Dog"], sample_rate=SR, duration=DURATION)


@pytest.mark.parametrize(
    "options",
    [
        dict(snr_range=(10.0, 0.0)), dict(snr_range=(0.0, float("inf"))), dict(events_per_clip=(3, 1)),
        dict(events_per_clip=(0, 0)), dict(events_per_clip=(1.5, 2)), dict(max_overlap=0), dict(share=0.0),
        dict(share=1.5), dict(trim_db=0.0), dict(min_gap=-0.1), dict(events=""), dict(backgrounds=3),
    ],
)
def test_options_are_validated(options):
    with pytest.raises(ValueError, match="DynamicMixing"):
        DynamicMixing(**{"events": "events", **options})
