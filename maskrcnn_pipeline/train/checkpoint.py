"""Resumable training state on disk: atomic checkpoints, the newest K kept, none trusted.

Checkpoints live in ``<train dir>/checkpoints/``, outside the rule's declared outputs, so a
failed or killed job never loses them (Snakemake deletes only declared outputs). A
``last_checkpoint`` file names the newest complete one, as in NVIDIA's code; it is written
after the checkpoint itself, so it never points at a partial file.

Each checkpoint has a ``.sha256`` beside it, written after it: a resume loads only a file
whose bytes match (a bit flip mid-file would otherwise load silently). A file that does not
match, has no digest, cannot be unpickled or lacks a key training needs is set aside as
``<name>.corrupt`` (never deleted: it may be worth a look) and the next older one is tried.
Files are serialised in memory first (:func:`save_torch`), so the same state always gives
the same bytes: torch.save to a file records the file's (temporary) name inside the archive.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import re
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed

from maskrcnn_pipeline.fileio import write_bytes_atomic, write_text_atomic
from maskrcnn_pipeline.train.distributed import DistInfo

log = logging.getLogger(__name__)

_NAME = re.compile(r"^model_(\d{7})\.pth$")
LAST = "last_checkpoint"
DIGEST_SUFFIX = ".sha256"
CORRUPT_SUFFIX = ".corrupt"


def torch_bytes(obj: Any) -> bytes:
    """``obj`` as torch.save writes it, the same bytes for the same content."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_torch(obj: Any, path: str | Path) -> str:
    """Write ``obj`` atomically and byte-reproducibly; return the file's sha256."""
    data = torch_bytes(obj)
    write_bytes_atomic(path, lambda handle: handle.write(data))
    return hashlib.sha256(data).hexdigest()


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
        """Write the checkpoint and its digest atomically, point last_checkpoint at it, prune
        old ones."""
        path = self.path_for(iteration)
        data = torch_bytes(state)
        # The digest first: a checkpoint that exists under its name always has one, so a
        # kill between the two writes never makes a good checkpoint look incomplete.
        digest = hashlib.sha256(data).hexdigest()
        write_text_atomic(_digest_path(path), f"{digest}  {path.name}\n")
        write_bytes_atomic(path, lambda handle: handle.write(data))
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
            _digest_path(old).unlink(missing_ok=True)

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

    def load_latest(self, required: Collection[str] = ("iteration",)) -> dict[str, Any] | None:
        """The newest checkpoint that is intact and has the ``required`` keys; every one that
        is not is set aside (``.corrupt``, logged) and the next older one is tried."""
        candidates = self.existing()
        latest = self.latest()
        if latest is not None and latest in candidates:
            candidates.remove(latest)
            candidates.append(latest)
        for path in reversed(candidates):
            try:
                state = _load_verified(path, required)
            except CorruptCheckpoint as problem:
                aside = path.with_name(path.name + CORRUPT_SUFFIX)
                path.rename(aside)
                _digest_path(path).unlink(missing_ok=True)
                log.warning("set aside checkpoint %s as %s: %s", path, aside.name, problem)
                continue
            log.info("read checkpoint %s (iteration %d)", path, state["iteration"])
            return state
        return None


class CorruptCheckpoint(Exception):
    """A checkpoint that cannot be trusted; the message says why."""


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def _load_verified(path: Path, required: Collection[str]) -> dict[str, Any]:
    """Load ``path`` if its bytes match its digest and it holds the ``required`` keys."""
    try:
        recorded = _digest_path(path).read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError):
        raise CorruptCheckpoint(
            f"no {DIGEST_SUFFIX} beside it (a save that did not finish)"
        ) from None
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise CorruptCheckpoint(f"its sha256 is {actual}, its {DIGEST_SUFFIX} says {recorded}")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # any unpickling failure means the file cannot be resumed
        raise CorruptCheckpoint(f"unreadable ({type(exc).__name__}: {exc})") from exc
    missing = [key for key in required if not isinstance(state, dict) or key not in state]
    if missing:
        raise CorruptCheckpoint(f"missing {', '.join(missing)}")
    return state
