"""The learning-rate schedule: its shape, and that training follows it."""

import math

import pytest
import torch

from audiotask.core.optimization import configure_optimizers, schedule_factor


def test_constant_schedule_keeps_the_rate():
    assert [schedule_factor(step, schedule="constant", total_steps=10) for step in (0, 5, 9)] == [1.0, 1.0, 1.0]


def test_cosine_schedule_warms_up_linearly_then_decays_to_the_final_fraction():
    factors = [schedule_factor(step, schedule="cosine", total_steps=110, warmup_steps=10) for step in range(111)]
    assert factors[:10] == pytest.approx([(k + 1) / 10 for k in range(10)])
    assert factors[10] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.5)  # half way through the decay
    assert factors[110] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))  # decays monotonically
    assert schedule_factor(110, schedule="cosine", total_steps=110, final_fraction=0.1) == pytest.approx(0.1)


def test_cosine_schedule_without_a_step_budget_stays_constant_after_warm_up():
    assert schedule_factor(3, schedule="cosine", total_steps=None, warmup_steps=4) == 1.0
    assert schedule_factor(400, schedule="cosine", total_steps=None, warmup_steps=4) == 1.0


def test_an_unknown_schedule_is_refused_by_name():
    with pytest.raises(ValueError, match="'linear'"):
        schedule_factor(0, schedule="linear", total_steps=10)


class _Trainer:
    max_steps = 20


class _Model(torch.nn.Module):
    learning_rate, lr_schedule, warmup_steps, final_lr_fraction = 0.1, "cosine", 5, 0.0

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self._trainer = _Trainer()


def test_the_optimiser_steps_the_rate_along_the_schedule():
    model = _Model()
    configured = configure_optimizers(model)
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert configured["lr_scheduler"]["interval"] == "step"
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert rates[5] == pytest.approx(0.1) and rates[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 14 / 15)))
    model.lr_schedule = "constant"
    assert isinstance(configure_optimizers(model), torch.optim.Adam)
