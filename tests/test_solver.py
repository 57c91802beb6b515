"""The LR schedule and parameter groups against NVIDIA's formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.train.optimizer import IterationLR, parameter_groups
from maskrcnn_pipeline.train.schedule import Schedule, scaled_lr
from maskrcnn_pipeline.workflow.config import validate_config


def recipe_solver(**overrides: object) -> dict:
    config = {"datasets": {"d": {"source": "synthetic"}}, "runs": {"r": {"dataset": "d"}}}
    solver = validate_config(config)["runs"]["r"]["solver"]
    solver.update(overrides)
    return solver


def test_linear_scaling_rule() -> None:
    solver = recipe_solver()
    assert scaled_lr(solver, 96) == pytest.approx(0.12)
    assert scaled_lr(solver, 64) == pytest.approx(0.08)
    assert scaled_lr(solver, 32) == pytest.approx(0.04)


def test_mlperf_linear_warmup_and_steps_follow_the_recipe() -> None:
    schedule = Schedule.from_settings(recipe_solver())
    lr = 0.12
    # NVIDIA's mlperf_linear: lr - (warmup_iters - i) * warmup_factor during warmup.
    assert schedule.lr_at(0, lr) == pytest.approx(0.12 - 800 * 1e-4)
    assert schedule.lr_at(400, lr) == pytest.approx(0.12 - 400 * 1e-4)
    assert schedule.lr_at(799, lr) == pytest.approx(0.12 - 1e-4)
    assert schedule.lr_at(800, lr) == pytest.approx(0.12)
    assert schedule.lr_at(11999, lr) == pytest.approx(0.12)
    assert schedule.lr_at(12000, lr) == pytest.approx(0.012)
    assert schedule.lr_at(15999, lr) == pytest.approx(0.012)
    assert schedule.lr_at(16000, lr) == pytest.approx(0.0012)
    assert schedule.lr_at(16666, lr) == pytest.approx(0.0012)


def test_mlperf_warmup_scales_with_the_lr() -> None:
    schedule = Schedule.from_settings(recipe_solver(), lr_scale=0.5)
    assert schedule.lr_at(0, 0.06) == pytest.approx(0.06 - 800 * 1e-4 * 0.5)


def test_linear_warmup_and_cosine() -> None:
    solver = recipe_solver(
        warmup_method="linear",
        warmup_factor=0.001,
        warmup_iters=50,
        scheduler="cosine",
        max_iter=1000,
        final_lr_factor=0.05,
    )
    schedule = Schedule.from_settings(solver)
    cosine = lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / 1000))  # noqa: E731
    assert schedule.lr_at(0, 1.0) == pytest.approx(0.001)
    assert schedule.lr_at(25, 1.0) == pytest.approx((0.001 * 0.5 + 0.5) * cosine(25))
    assert schedule.lr_at(500, 1.0) == pytest.approx(cosine(500))
    assert schedule.lr_at(1000, 1.0) == pytest.approx(0.05)


def test_iteration_lr_drives_every_group_and_restores_from_its_state() -> None:
    model = nn.Linear(2, 2)
    solver = recipe_solver()
    optimizer = torch.optim.SGD(parameter_groups(model, solver, 0.12), momentum=0.9)
    scheduler = IterationLR(optimizer, Schedule.from_settings(solver))
    for _ in range(800):
        scheduler.step()
    by_kind = {g["kind"]: g["lr"] for g in optimizer.param_groups}
    assert by_kind == {"weight": pytest.approx(0.12), "bias": pytest.approx(0.24)}
    restored = IterationLR(
        torch.optim.SGD(parameter_groups(model, solver, 0.12), momentum=0.9),
        Schedule.from_settings(solver),
    )
    restored.load_state_dict(scheduler.state_dict())
    assert restored.current_lr() == pytest.approx(scheduler.current_lr())


def test_no_weight_decay_on_biases_and_norms() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1, bias=False))
    groups = {g["kind"]: g for g in parameter_groups(model, recipe_solver(), 0.1)}
    assert groups["weight"]["weight_decay"] == 1e-4 and len(groups["weight"]["params"]) == 2
    assert groups["bias"]["weight_decay"] == 0.0 and groups["bias"]["lr"] == pytest.approx(0.2)
    assert groups["norm"]["weight_decay"] == 0.0 and len(groups["norm"]["params"]) == 2


def test_mlperf_warmup_that_would_start_at_a_negative_lr_is_refused() -> None:
    solver = recipe_solver(base_lr=0.0001)  # 800 x 1e-4 = 0.08 > 0.0001
    with pytest.raises(PipelineError, match=r"would start at LR 0\.0001 - 800 x 0\.0001"):
        Schedule.from_settings(solver)
    config = {
        "datasets": {"d": {"source": "synthetic"}},
        "runs": {"r": {"dataset": "d", "solver": {"base_lr": 0.05}}},
    }
    with pytest.raises(PipelineError, match=r"runs\.r\.solver: mlperf_linear warmup would start"):
        validate_config(config)
