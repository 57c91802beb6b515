"""The learning-rate schedule of NVIDIA's recipe, as a plain function of the iteration.

Torch-free on purpose: the config validation (``workflow/``) checks a schedule before any
job starts, and :class:`Schedule` is tested against the recipe's formula and restored on
resume from nothing but the iteration number.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from maskrcnn_pipeline.errors import PipelineError


def mlperf_warmup_problem(solver: Mapping[str, Any]) -> str | None:
    """NVIDIA's mlperf_linear warmup subtracts warmup_iters x warmup_factor from the LR
    (absolute, not relative): a value that reaches base_lr would start training at a zero
    or negative LR, which diverges."""
    if solver["warmup_method"] != "mlperf_linear":
        return None
    drop = solver["warmup_iters"] * solver["warmup_factor"]
    if drop < solver["base_lr"]:
        return None
    return (
        f"mlperf_linear warmup would start at LR {solver['base_lr']:g} - "
        f"{solver['warmup_iters']} x {solver['warmup_factor']:g} = {solver['base_lr'] - drop:g} "
        "(<= 0): warmup_factor is the LR added per iteration; lower it below "
        "base_lr / warmup_iters, or use warmup_method: linear"
    )


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
