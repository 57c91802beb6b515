"""Resume never trusts a bad checkpoint: every kind of damage is set aside, the next older
good one is loaded, and the same state always gives the same bytes."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from maskrcnn_pipeline.train.checkpoint import CORRUPT_SUFFIX, Checkpointer, save_torch

REQUIRED = ("iteration", "model")


def state(iteration: int) -> dict:
    return {"iteration": iteration, "model": {"w": torch.full((64,), float(iteration))}}


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def garbage(path: Path) -> None:
    path.write_bytes(b"\x80\x04not a pickle at all" * 10)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def missing_keys(path: Path) -> None:
    save_torch({"iteration": 6}, path)  # written whole, with a digest, but no model
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:100]),
    "bit flip": flip_a_byte,
    "garbage with a matching digest": garbage,
    "missing keys": missing_keys,
    "no digest": lambda path: path.with_name(path.name + ".sha256").unlink(),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_older_one_resumed(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    checkpointer = Checkpointer(tmp_path, keep=3)
    checkpointer.save(4, state(4))
    newest = checkpointer.save(6, state(6))
    DAMAGE[damage](newest)
    with caplog.at_level(logging.WARNING):
        loaded = checkpointer.load_latest(required=REQUIRED)
    assert loaded is not None and loaded["iteration"] == 4
    assert torch.equal(loaded["model"]["w"], state(4)["model"]["w"])
    assert (tmp_path / f"model_0000006.pth{CORRUPT_SUFFIX}").is_file()
    assert "set aside checkpoint" in caplog.text and "model_0000006.pth" in caplog.text
    assert checkpointer.existing() == [checkpointer.path_for(4)]


def test_all_damaged_means_a_fresh_start_with_every_file_kept(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, keep=3)
    for iteration in (2, 4):
        flip_a_byte(checkpointer.save(iteration, state(iteration)))
    assert checkpointer.load_latest(required=REQUIRED) is None
    assert sorted(path.name for path in tmp_path.glob(f"*{CORRUPT_SUFFIX}")) == [
        f"model_0000002.pth{CORRUPT_SUFFIX}",
        f"model_0000004.pth{CORRUPT_SUFFIX}",
    ]


def test_the_same_state_gives_the_same_bytes_whatever_the_file_name(tmp_path: Path) -> None:
    first = save_torch(state(3), tmp_path / "a.pth")
    second = save_torch(state(3), tmp_path / "b" / "model_final.pth")
    assert first == second == hashlib.sha256((tmp_path / "a.pth").read_bytes()).hexdigest()


def test_pruning_removes_digests_too(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, keep=1)
    checkpointer.save(2, state(2))
    checkpointer.save(4, state(4))
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "last_checkpoint",
        "model_0000004.pth",
        "model_0000004.pth.sha256",
    ]
