"""Samplers: seeded, resumable, distinct per stream; each draws what it promises."""

import hashlib
import itertools

import numpy as np
import pytest

from audiotask.engine.samplers import BLOCK, BalancedSampler, Chunk, Chunks, ChunkSampler, ClipSampler

REGIONS = np.array([[0.0, 10.0], [2.0, 3.0], [0.0, 30.0]])
REGION_FILE = np.array([0, 0, 1])
FILE_DURATIONS = np.array([1.0, 2.0, 5.0, 9.5, 2.5, 0.5, 30.0])

# label 7 has two segments in file 0, label 3 one in file 1, label 5 two in file 2, label 9 a
# segment at the very end of a short region (its bounds cannot hold a whole chunk)
SEGMENTS = dict(
    segment_files=np.array([0, 0, 1, 2, 2, 3, 3]),
    segment_starts=np.array([1.0, 6.0, 0.5, 10.0, 20.0, 0.2, 4.0]),
    segment_ends=np.array([2.0, 9.0, 4.0, 10.5, 28.0, 0.8, 4.0]),
    segment_labels=np.array([7, 7, 3, 5, 5, 9, 9]),
    segment_bounds=np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 4.5], [0.0, 30.0], [0.0, 30.0], [0.0, 1.0], [0.0, 5.0]]),
)


def chunk_sampler(**kwargs):
    return ChunkSampler(REGIONS, REGION_FILE, 2.0, **kwargs)


def clip_sampler(**kwargs):
    return ClipSampler(FILE_DURATIONS, 2.0, **{"batch_size": 6, **kwargs})


def balanced_sampler(**kwargs):
    return BalancedSampler(**SEGMENTS, duration=2.0, labels_per_batch=3, chunks_per_label=5, **kwargs)


FACTORIES = [chunk_sampler, clip_sampler, balanced_sampler]


def assert_same(a: Chunks, b: Chunks):
    for name, x, y in zip(Chunks._fields, a, b):
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


# ---- properties shared by every sampler --------------------------------------------------
@pytest.mark.parametrize("make", FACTORIES)
def test_equal_keys_draw_equal_streams_and_any_other_key_another(make):
    base = make(seed=1).take(300)
    assert_same(make(seed=1).take(300), base)
    for other in (dict(seed=2), dict(seed=1, worker=1), dict(seed=1, rank=1), dict(seed=1, epoch=1)):
        assert not np.array_equal(make(**other).take(300).starts, base.starts), other


@pytest.mark.parametrize("make", FACTORIES)
def test_take_in_pieces_equals_take_at_once(make):
    whole = make(seed=4).take(3 * BLOCK + 17)
    pieces = make(seed=4)
    parts = [pieces.take(n) for n in (0, 5, BLOCK - 5, 1, 2 * BLOCK, 16)]
    assert_same(Chunks(*(np.concatenate(column) for column in zip(*parts))), whole)
    assert pieces.position == 3 * BLOCK + 17


@pytest.mark.parametrize("make", FACTORIES)
@pytest.mark.parametrize("stop", [7, BLOCK + 3, 2 * BLOCK])  # mid-batch, mid-block, block edge
def test_a_rebuilt_sampler_continues_with_the_chunks_of_the_uninterrupted_one(make, stop):
    reference = make(seed=3, epoch=2).take(stop + 500)
    interrupted = make(seed=3, epoch=2)
    interrupted.take(stop)
    resumed = make(seed=0)  # the state, not the constructor, decides the stream
    resumed.take(40)  # and a warm cache of another stream must not leak in
    resumed.load_state_dict(interrupted.state_dict())
    assert_same(resumed.take(500), Chunks(*(column[stop:] for column in reference)))


@pytest.mark.parametrize("make", FACTORIES)
def test_iteration_yields_one_by_one_what_take_gives(make):
    arrays = make(seed=5).take(BLOCK + 10)
    chunks = list(itertools.islice(iter(make(seed=5)), BLOCK + 10))
    assert chunks[3] == Chunk(int(arrays.files[3]), float(arrays.starts[3]), float(arrays.durations[3]), int(arrays.labels[3]))
    assert [c.file for c in chunks] == arrays.files.tolist()
    assert [c.start for c in chunks] == arrays.starts.tolist()
    assert [c.label for c in chunks] == arrays.labels.tolist()


@pytest.mark.parametrize("make", FACTORIES)
def test_set_epoch_restarts_the_stream_of_that_epoch(make):
    sampler = make(seed=2)
    sampler.take(100)
    sampler.set_epoch(3)
    assert sampler.position == 0
    assert_same(sampler.take(50), make(seed=2, epoch=3).take(50))


def test_state_names_its_sampler_and_is_refused_by_another_kind():
    state = clip_sampler().state_dict()
    assert state == {"kind": "ClipSampler", "seed": 0, "rank": 0, "worker": 0, "epoch": 0, "position": 0}
    with pytest.raises(ValueError, match="ChunkSampler cannot resume the state of a ClipSampler"):
        chunk_sampler().load_state_dict(state)


def test_take_of_nothing_gives_typed_empty_arrays():
    empty = chunk_sampler().take(0)
    assert [len(column) for column in empty] == [0, 0, 0, 0]
    assert empty.files.dtype == np.int64 and empty.labels.dtype == np.int64


# ---- ChunkSampler ------------------------------------------------------------------------
# digests of what the sampler of the previous engine (core/sampler.py at 1cd7174) drew for
# take(10), take(1024), take(2055): the redesign keeps every stream, so resumed runs and
# published figures stay the same
LEGACY_DIGESTS = [
    (dict(seed=3), "4c7cbf4fbe1c155cf6e591576769832eac1fd459"),
    (dict(seed=1, rank=2, worker=1, epoch=4), "c7851b00e7dc1b515f07bfb4a2de75465dec310d"),
    (dict(min_duration=1.0, batch_size=8), "7b34c9d61eb7d2a1f325b8514892253c464a0bb3"),
    (dict(groups=["a", "b"], batch_size=3), "a476037250cec3e29dbff6157b2ad5ca558d8a57"),
]


@pytest.mark.parametrize("options, digest", LEGACY_DIGESTS)
def test_chunk_sampler_draws_exactly_what_the_previous_engine_drew(options, digest):
    ours = chunk_sampler(**options)
    sha1 = hashlib.sha1()
    for count in (10, BLOCK, 2 * BLOCK + 7):
        files, starts, durations, labels = ours.take(count)
        sha1.update(files.astype(np.int64).tobytes() + starts.tobytes() + durations.tobytes())
        assert (labels == -1).all()
    assert sha1.hexdigest() == digest


def test_chunk_sampler_block_follows_the_documented_formula():
    seed, rank, worker, epoch = 6, 1, 2, 3
    rng = np.random.default_rng(np.random.SeedSequence([seed, rank, worker, epoch, 1]))
    cdf = np.cumsum(np.array([10.0, 1.0, 30.0]) / 41.0)
    region = np.minimum(np.searchsorted(cdf, rng.random(BLOCK) * cdf[-1], side="right"), 2)
    lo, hi = REGIONS[region, 0], REGIONS[region, 1]
    starts = lo + rng.random(BLOCK) * (np.maximum(lo, hi - 2.0) - lo)
    sampler = chunk_sampler(seed=seed, rank=rank, worker=worker, epoch=epoch)
    sampler.position = BLOCK
    drawn = sampler.take(BLOCK)
    np.testing.assert_array_equal(drawn.files, REGION_FILE[region])
    np.testing.assert_array_equal(drawn.starts, starts)
    np.testing.assert_array_equal(drawn.durations, np.full(BLOCK, 2.0))


def test_chunks_lie_inside_regions_weighted_by_duration():
    files, starts, _, _ = chunk_sampler().take(4 * BLOCK)
    # file 1 holds 30 of the 41 annotated seconds
    assert abs((files == 1).mean() - 30 / 41) < 0.03
    assert starts[files == 1].max() <= 28.0 and starts.min() >= 0.0


# ---- ClipSampler -------------------------------------------------------------------------
def test_each_pass_visits_every_file_exactly_once_in_a_new_order():
    n = len(FILE_DURATIONS)
    files = clip_sampler(seed=8).take(50 * n).files.reshape(50, n)
    assert (np.sort(files, axis=1) == np.arange(n)).all()
    assert len({tuple(order) for order in files}) > 40  # 5040 orders: passes do not repeat one


def test_pass_order_follows_its_key():
    sampler = clip_sampler(seed=2, rank=1, worker=3, epoch=4)
    n = len(FILE_DURATIONS)
    sampler.position = 5 * n
    expected = np.random.default_rng(np.random.SeedSequence([2, 1, 3, 4, 5])).permutation(n)
    np.testing.assert_array_equal(sampler.take(n).files, expected)


def test_short_files_start_at_zero_and_long_files_are_cropped_inside_them():
    files, starts, durations, labels = clip_sampler(seed=1).take(2000)
    file_duration = FILE_DURATIONS[files]
    short = file_duration <= 2.0
    assert short.any() and (starts[short] == 0.0).all()
    assert (starts[~short] >= 0.0).all() and (starts[~short] <= file_duration[~short] - 2.0).all()
    assert starts[files == 6].max() > 20.0  # the 30 s file is cropped all along, not only at its head
    assert (durations == 2.0).all() and (labels == -1).all()


def test_clip_stream_does_not_depend_on_the_block_size():
    small = clip_sampler(seed=9)
    small.block_size = 12
    assert_same(small.take(500), clip_sampler(seed=9).take(500))


def test_clip_sampler_refuses_an_empty_dataset():
    with pytest.raises(ValueError, match="no files"):
        ClipSampler(np.zeros(0), 2.0)


# ---- BalancedSampler ---------------------------------------------------------------------
def test_each_batch_holds_n_distinct_labels_of_m_chunks_each():
    sampler = balanced_sampler(seed=1)
    assert sampler.batch_size == 15 and sampler.block_size % 15 == 0
    labels = sampler.take(15 * 200).labels.reshape(200, 3, 5)
    assert (labels == labels[:, :, :1]).all()  # label by label
    per_batch = labels[:, :, 0]
    assert (np.sort(per_batch, axis=1)[:, 1:] != np.sort(per_batch, axis=1)[:, :-1]).all()
    # uniform among the 4 labels with segments: each in 3/4 of the batches
    for label in (3, 5, 7, 9):
        assert abs((per_batch == label).any(axis=1).mean() - 0.75) < 0.1


def test_chunk_centres_lie_in_a_segment_of_their_label_when_bounds_allow():
    files, starts, durations, labels = balanced_sampler(seed=2).take(3000)
    centres = starts + durations / 2
    roomy = labels != 9  # label 9's region [0, 1) is shorter than a chunk
    inside = [
        any(f == sf and l == sl and s <= c <= e for sf, s, e, sl in zip(*(SEGMENTS[k] for k in ("segment_files", "segment_starts", "segment_ends", "segment_labels"))))
        for f, c, l in zip(files[roomy], centres[roomy], labels[roomy])
    ]
    assert all(inside)
    assert (starts[labels == 9] == 0.0).all()  # clipped to the start of its bounds


def test_chunks_lie_inside_the_bounds_of_their_segment():
    files, starts, durations, labels = balanced_sampler(seed=3).take(3000)
    bounds = {(f, l): b for f, l, b in zip(SEGMENTS["segment_files"], SEGMENTS["segment_labels"], SEGMENTS["segment_bounds"])}
    for f, s, d, l in zip(files, starts, durations, labels):
        lo, hi = bounds[(f, l)]
        assert lo <= s and (s + d <= hi or s == lo)
    # label 7's segments (1 s and 3 s long) are drawn in proportion to their length
    seven = starts[labels == 7] + 1.0
    assert abs((seven < 4.0).mean() - 0.25) < 0.05


def test_zero_length_segments_are_never_drawn():
    files, starts, _, labels = balanced_sampler(seed=4).take(3000)
    # label 9's second segment [4, 4) would centre a chunk at 4 s of file 3
    assert not ((files == 3) & (starts == 3.0)).any()
    assert set(files[labels == 9]) == {3}


def test_balanced_stream_does_not_depend_on_the_block_size():
    small = balanced_sampler(seed=6)
    small.block_size = 30
    assert_same(small.take(700), balanced_sampler(seed=6).take(700))


def test_batch_draws_follow_their_key():
    sampler = balanced_sampler(seed=2, rank=1, worker=3, epoch=4)
    sampler.position = 15 * 7
    rng = np.random.default_rng(np.random.SeedSequence([2, 1, 3, 4, 7]))
    ranks = rng.choice(4, 3, replace=False)
    np.testing.assert_array_equal(sampler.take(15).labels, np.repeat(np.array([3, 5, 7, 9])[ranks], 5))


def test_too_few_labels_is_refused_with_the_counts():
    with pytest.raises(ValueError, match="5 labels per batch, but only 4 labels have segments"):
        BalancedSampler(**SEGMENTS, duration=2.0, labels_per_batch=5, chunks_per_label=2)
