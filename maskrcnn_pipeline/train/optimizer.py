"""Optimizer and the LR scheduler that applies :class:`~maskrcnn_pipeline.train.schedule.Schedule`
at every step, as NVIDIA's recipe defines them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from maskrcnn_pipeline.train.schedule import Schedule

log = logging.getLogger(__name__)

_NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.SyncBatchNorm)


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
