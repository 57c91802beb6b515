"""Optimizer and learning-rate schedule, as NVIDIA's recipe defines them.

The schedule is a plain function of the iteration (:func:`lr_at`), so it can be tested
against the recipe's formula and restored on resume from nothing but the iteration number.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from maskrcnn_pipeline.config import mlperf_warmup_problem
from maskrcnn_pipeline.errors import PipelineError

log = logging.getLogger(__name__)

_NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.SyncBatchNorm)


def scaled_lr(solver: Mapping[str, Any], global_batch: int) -> float:
    """The linear scaling rule: base_lr belongs to reference_batch_size images per step."""
    return solver["base_lr"] * global_batch / solver["reference_batch_size"]


@dataclass(frozen=True)
class Schedule:
    """Warmup followed by multistep or cosine decay, over ``max_iter`` iterations.

    ``warmup_factor`` means what it means in NVIDIA's code: for ``linear`` and ``constant`` a
    multiplier of the LR at iteration 0; for ``mlperf_linear`` the LR step per warmup
    iteration, so the LR at iteration i < warmup_iters is ``lr - (warmup_iters - i) *
    warmup_factor`` (scaled with the LR by the linear scaling rule, as NVIDIA's configs do).
    """

    max_iter: int
    scheduler: str
    steps: tuple[int, ...]
    gamma: float
    final_lr_factor: float
    warmup_iters: int
    warmup_factor: float
    warmup_method: str
    lr_scale: float = 1.0

    @classmethod
    def from_settings(cls, solver: Mapping[str, Any], lr_scale: float = 1.0) -> Schedule:
        problem = mlperf_warmup_problem(solver)
        if problem:
            raise PipelineError(f"solver: {problem}")
        return cls(
            max_iter=solver["max_iter"],
            scheduler=solver["scheduler"],
            steps=tuple(solver["steps"]),
            gamma=solver["gamma"],
            final_lr_factor=solver["final_lr_factor"],
            warmup_iters=solver["warmup_iters"],
            warmup_factor=solver["warmup_factor"],
            warmup_method=solver["warmup_method"],
            lr_scale=lr_scale,
        )

    def decay(self, iteration: int) -> float:
        if self.scheduler == "multistep":
            return self.gamma ** bisect_right(self.steps, iteration)
        progress = min(iteration / self.max_iter, 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_lr_factor + (1.0 - self.final_lr_factor) * cosine

    def lr_at(self, iteration: int, lr: float) -> float:
        """The LR of a parameter group whose post-warmup LR is ``lr``, at ``iteration``."""
        if iteration < self.warmup_iters:
            if self.warmup_method == "mlperf_linear":
                delta = (self.warmup_iters - iteration) * self.warmup_factor * self.lr_scale
                return (lr - delta) * self.decay(iteration)
            if self.warmup_method == "linear":
                alpha = iteration / self.warmup_iters
                return lr * (self.warmup_factor * (1 - alpha) + alpha) * self.decay(iteration)
            return lr * self.warmup_factor * self.decay(iteration)
        return lr * self.decay(iteration)


class IterationLR:
    """Sets every group's LR from :class:`Schedule` at each step; its state is the iteration."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule) -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.iteration = 0
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr_at(self.iteration, group["initial_lr"])

    def step(self) -> None:
        self.iteration += 1
        self._apply()

    def current_lr(self) -> float:
        """LR of the first (weights) group: the number NVIDIA logs as learning_rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, int]:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.iteration = int(state["iteration"])
        self._apply()


def _parameter_kind(module: nn.Module, name: str) -> str:
    if isinstance(module, _NORM_TYPES):
        return "norm"
    return "bias" if name == "bias" else "weight"


def parameter_groups(model: nn.Module, solver: Mapping[str, Any], lr: float) -> list[dict]:
    """Weights get weight decay; biases get bias_lr_factor x LR and their own decay; norm
    layers get weight_decay_norm (0 in the recipe)."""
    settings = {
        "weight": (lr, solver["weight_decay"]),
        "bias": (lr * solver["bias_lr_factor"], solver["weight_decay_bias"]),
        "norm": (lr, solver["weight_decay_norm"]),
    }
    grouped: dict[str, list[nn.Parameter]] = {kind: [] for kind in settings}
    seen: set[int] = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            grouped[_parameter_kind(module, name)].append(parameter)
    return [
        {"params": params, "lr": settings[kind][0], "weight_decay": settings[kind][1], "kind": kind}
        for kind, params in grouped.items()
        if params
    ]


def build_optimizer(
    params: Iterable[dict], solver: Mapping[str, Any], *, fused: bool = False
) -> torch.optim.Optimizer:
    """SGD with momentum (the recipe) or AdamW (the from-scratch demo)."""
    params = list(params)
    if solver["optimizer"] == "sgd":
        return torch.optim.SGD(params, momentum=solver["momentum"], foreach=not fused, fused=fused)
    return torch.optim.AdamW(params, foreach=not fused, fused=fused)
