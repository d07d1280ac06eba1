"""The default loss of each problem type goes down on a learnable toy problem."""

import math

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from audiotask.core.task import Problem, Resolution, Specifications, Task
from audiotask.models import Debug
from helpers import quiet_trainer

SAMPLE_RATE = 8000
DURATION = 1.0
LEVELS = [0.05, 0.3, 1.0]


class ToyTask(Task):
    """Noise bursts whose loudness (per chunk, or per half chunk) encodes the target."""

    def __init__(self, problem, resolution):
        super().__init__(protocol=None, duration=DURATION, batch_size=16, num_workers=0)
        self.problem, self.resolution = problem, resolution

    def setup(self, stage=None):
        classes = {Problem.BINARY_CLASSIFICATION: ["on"], Problem.REGRESSION: None}.get(self.problem, ["a", "b", "c"])
        self.specifications = Specifications(self.problem, self.resolution, DURATION, classes=classes)

    def sample(self, rng):
        num_samples = int(SAMPLE_RATE * DURATION)
        noise = rng.standard_normal(num_samples).astype(np.float32)
        level = int(rng.integers(len(LEVELS)))
        x = noise * LEVELS[level]
        if self.problem is Problem.BINARY_CLASSIFICATION:
            y = np.array([float(level == 2)])
        elif self.problem is Problem.MONO_LABEL_CLASSIFICATION:
            y = np.array(level)
        elif self.problem is Problem.MULTI_LABEL_CLASSIFICATION:
            y = np.array([level >= 1, level >= 2, level == 0], dtype=np.float32)
        else:
            y = np.array([LEVELS[level]], dtype=np.float32)
        if self.resolution is Resolution.FRAME:
            num_frames = self.model.num_frames(num_samples)
            x[: num_samples // 2] *= 0.0  # silent first half: targets only in the second half
            inactive = np.zeros_like(y) if self.problem is not Problem.MONO_LABEL_CLASSIFICATION else np.array(0)
            half = num_frames // 2
            y = np.stack([inactive] * half + [y] * (num_frames - half))
        return {"X": torch.from_numpy(x)[None], "y": torch.as_tensor(y)}

    def train__iter__(self):
        rng = np.random.default_rng(0)
        while True:
            yield self.sample(rng)

    def train__len__(self):
        return 16 * 40


class LossHistory(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


CASES = [
    (Problem.BINARY_CLASSIFICATION, Resolution.CHUNK),
    (Problem.BINARY_CLASSIFICATION, Resolution.FRAME),
    (Problem.MONO_LABEL_CLASSIFICATION, Resolution.CHUNK),
    (Problem.MONO_LABEL_CLASSIFICATION, Resolution.FRAME),
    (Problem.MULTI_LABEL_CLASSIFICATION, Resolution.CHUNK),
    (Problem.MULTI_LABEL_CLASSIFICATION, Resolution.FRAME),
    (Problem.REGRESSION, Resolution.CHUNK),
    (Problem.REGRESSION, Resolution.FRAME),
]


@pytest.mark.parametrize("problem,resolution", CASES, ids=[f"{p.name}-{r.name}" for p, r in CASES])
def test_loss_goes_down(problem, resolution):
    torch.manual_seed(0)
    task = ToyTask(problem, resolution)
    model = Debug(sample_rate=SAMPLE_RATE, frame_hop=200, task=task)
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=1e-2)
    history = LossHistory()
    quiet_trainer(max_epochs=1, callbacks=[history], limit_val_batches=0).fit(model)
    first, last = np.mean(history.losses[:5]), np.mean(history.losses[-5:])
    assert len(history.losses) == 40
    assert last < 0.5 * first, (first, last)


def test_a_nan_loss_skips_its_batch_and_too_many_in_a_row_are_a_clear_error():
    task = ToyTask(Problem.BINARY_CLASSIFICATION, Resolution.CHUNK)
    model = Debug(sample_rate=SAMPLE_RATE, frame_hop=200, task=task)
    task.setup()
    model.attach_specifications(task.specifications)
    task.max_nonfinite_losses = 3
    good = task.collate_fn([task.sample(np.random.default_rng(0)) for _ in range(2)])
    bad = {key: value.clone() for key, value in good.items()}
    bad["X"][0, 0, 10] = math.nan
    for _ in range(2):
        with pytest.warns(RuntimeWarning, match=r"input waveforms contain NaN.*batch skipped \(2 non-finite"):
            task.training_step(bad, 0)
            assert task.training_step(bad, 1) is None
        assert task.training_step(good, 2)["loss"].isfinite()  # a finite loss starts the count again
    with pytest.warns(RuntimeWarning), pytest.raises(FloatingPointError, match=r"NaN or Inf; 3 non-finite losses in a row"):
        for batch_idx in range(3):
            task.training_step(bad, batch_idx)


def test_wrong_input_rank_is_a_clear_error():
    model = Debug()
    model.attach_specifications(Specifications(Problem.BINARY_CLASSIFICATION, Resolution.FRAME, 1.0, classes=["on"]))
    with pytest.raises(ValueError, match=r"\(batch, 1, samples\)"):
        model(torch.zeros(2, 16000))
