"""Under DDP each rank scores its share of the development chunks; validation then gathers
every share in every rank, so that PSDS (and the embedding task's EER) are those of the whole
development set, as one process computes them, not an average of the shares' figures."""

import numpy as np
import torch

from audiotask.engine.validation_chunks import summed_over_ranks
from audiotask.tasks.sed.validation import DetectionScores


def other_rank(rows, count, shape):
    """A strategy's ``reduce`` for this process and one other holding ``rows``."""
    table, seen = summed_over_ranks(rows, count, shape)

    def reduce(tensor, reduce_op):
        assert reduce_op == "sum"
        return tensor + (table if tensor.dim() > 1 else seen)

    return reduce


def test_every_rank_gets_every_share_once():
    rng = np.random.default_rng(0)
    chunks = np.array([[file, 0.0] for file in range(5)])
    every = rng.random((5, 7, 3)).astype(np.float32)
    # a distributed split pads the shares: chunk 2 is scored by both ranks
    mine, theirs = DetectionScores(chunks, 10.0), DetectionScores(chunks, 10.0)
    mine.add("student", every[[0, 1, 2]], np.array([0, 1, 2]))
    theirs.add("student", every[[2, 3, 4]], np.array([2, 3, 4]))
    mine.gather(other_rank(theirs.scores["student"], 5, (7, 3)))
    assert sorted(mine.scores["student"]) == [0, 1, 2, 3, 4]
    assert np.allclose(np.stack([mine.scores["student"][i] for i in range(5)]), every)
    assert np.array_equal(mine.chunks, chunks)  # the reference is then the whole set's


def test_one_process_keeps_its_rows():
    rows = {0: torch.ones(2), 3: 2 * torch.ones(2)}
    table, seen = summed_over_ranks(rows, 4, (2,))
    assert seen.tolist() == [1, 0, 0, 1] and table[3].tolist() == [2, 2] and table[1].tolist() == [0, 0]
