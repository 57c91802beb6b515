"""Resumable training state on disk: atomic checkpoints, the newest K kept.

Checkpoints live in ``<train dir>/checkpoints/``, outside the rule's declared outputs, so a
failed or killed job never loses them (Snakemake deletes only declared outputs). A
``last_checkpoint`` file names the newest complete one, as in NVIDIA's code; it is written
after the checkpoint itself, so it never points at a partial file.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed

from maskrcnn_pipeline.fileio import atomic_path, write_text_atomic
from maskrcnn_pipeline.train.distributed import DistInfo

log = logging.getLogger(__name__)

_NAME = re.compile(r"^model_(\d{7})\.pth$")
LAST = "last_checkpoint"


def rng_state() -> dict[str, Any]:
    """Every RNG a training step draws from, so a resumed run continues the same stream."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(dist: DistInfo) -> list[dict[str, Any]]:
    """Every process's RNG state (the RPN/RoI samplers draw from them), for rank 0 to save.

    A collective: every process must call it.
    """
    state = rng_state()
    if not dist.distributed:
        return [state]
    states: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(states, state)
    return states


def restore_rng_states(states: list[dict[str, Any]], dist: DistInfo) -> None:
    """This process's RNG state from :func:`gather_rng_states`; a checkpoint of another
    number of processes has no state for this one, so the RNG is left as seeded."""
    if len(states) == dist.world_size:
        set_rng_state(states[dist.rank])
    else:
        log.warning(
            "checkpoint holds RNG states of %d processes, this run has %d: RNG not restored",
            len(states),
            dist.world_size,
        )


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def path_for(self, iteration: int) -> Path:
        return self.directory / f"model_{iteration:07d}.pth"

    def save(self, iteration: int, state: dict[str, Any]) -> Path:
        """Write the checkpoint atomically, point last_checkpoint at it, prune old ones."""
        path = self.path_for(iteration)
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        write_text_atomic(self.directory / LAST, path.name + "\n")
        self._prune()
        log.info("saved checkpoint %s", path)
        return path

    def existing(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if _NAME.match(p.name))

    def _prune(self) -> None:
        for old in self.existing()[: -self.keep]:
            old.unlink(missing_ok=True)

    def retire(self) -> Path | None:
        """Move the checkpoints aside (to ``<dir>.previous``, replacing an older one) when
        they belong to other settings: a changed run must start over, but the old state is
        not deleted by surprise."""
        if not self.existing():
            return None
        previous = self.directory.with_name(self.directory.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        self.directory.rename(previous)
        return previous

    def latest(self) -> Path | None:
        marker = self.directory / LAST
        if marker.is_file():
            candidate = self.directory / marker.read_text().strip()
            if candidate.is_file():
                return candidate
        existing = self.existing()
        return existing[-1] if existing else None

    def load_latest(self) -> dict[str, Any] | None:
        """The newest readable checkpoint; an unreadable one is reported and skipped."""
        candidates = self.existing()
        latest = self.latest()
        if latest is not None and latest in candidates:
            candidates.remove(latest)
            candidates.append(latest)
        for path in reversed(candidates):
            try:
                state = torch.load(path, map_location="cpu", weights_only=False)
            except (RuntimeError, EOFError, OSError) as exc:
                log.warning("skipping unreadable checkpoint %s (%s)", path, exc)
                continue
            log.info("read checkpoint %s (iteration %d)", path, state["iteration"])
            return state
        return None
