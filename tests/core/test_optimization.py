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


def test_a_frozen_encoder_is_not_optimised_and_keeps_its_normalisation_statistics():
    """encoder_lr_scale 0: the head alone in the optimiser, the rest without gradients and in
    eval mode (batch norm does not follow the new data); a share in between: two groups."""
    from audiotask.core.optimization import parameter_groups
    from audiotask.core.specifications import Problem, Resolution, Specifications
    from audiotask.models import CRNN

    model = CRNN(channels=[4, 8, 8], n_mels=16, hidden_size=8)
    model.attach_specifications(Specifications(problem=Problem.MULTI_LABEL_CLASSIFICATION,
                                               resolution=Resolution.FRAME, duration=1.0, classes=["a", "b"]))
    assert set(model.head_modules) == {"head", "clip_head"}
    head, encoder = model.head_and_encoder_parameters()
    model.learning_rate, model.encoder_lr_scale = 0.01, 0.1
    groups = parameter_groups(model)
    assert [len(group["params"]) for group in groups] == [len(head), len(encoder)] and groups[1]["lr"] == 0.001
    model.encoder_lr_scale = 0.0
    assert parameter_groups(model) == [{"params": head}]
    assert not any(parameter.requires_grad for parameter in encoder)
    statistics = {name: buffer.clone() for name, buffer in model.named_buffers() if "running_mean" in name}
    model.train()
    model(torch.randn(2, 1, 16000))
    assert statistics and all(torch.equal(buffer, statistics[name]) for name, buffer in model.named_buffers()
                              if name in statistics)
    assert all(not module.training for module in model.encoder_modules()) and model.head.training
