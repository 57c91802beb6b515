"""What train_nvidia does to train/nvidia/ before each attempt (maskrcnn_pipeline.nvidia.attempts,
scripts/nvidia_attempt.py): earlier dllogger files kept, a dangling last_checkpoint dropped."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from maskrcnn_pipeline.nvidia.attempts import (
    drop_dangling_last_checkpoint,
    keep_previous_summary,
    prepare_attempt,
)
from tests.support.workflow import run_script

NOW = datetime(2022, 5, 1, 12, 30, 5)


def test_the_previous_summary_is_kept_under_its_attempt_time(tmp_path: Path) -> None:
    summary = tmp_path / "dllogger.json"
    summary.write_text("first attempt\n")
    kept = keep_previous_summary(summary, NOW)
    assert kept == tmp_path / "dllogger.json.20220501T123005"
    assert kept.read_text() == "first attempt\n" and not summary.exists()
    assert keep_previous_summary(summary, NOW) is None, "nothing to keep on a first attempt"


@pytest.mark.parametrize("names", ["model_0000020.pth", ""], ids=["gone", "empty"])
def test_a_last_checkpoint_naming_nothing_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: str
) -> None:
    monkeypatch.chdir(tmp_path)  # their OUTPUT_DIR, and so the path recorded, is relative
    (tmp_path / "last_checkpoint").write_text(names + "\n")
    assert drop_dangling_last_checkpoint(tmp_path)
    assert not (tmp_path / "last_checkpoint").exists()


def test_a_last_checkpoint_naming_a_checkpoint_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    train_dir = Path("results/r/train/nvidia")
    train_dir.mkdir(parents=True)
    (train_dir / "model_0000020.pth").write_bytes(b"weights")
    (train_dir / "last_checkpoint").write_text(f"{train_dir}/model_0000020.pth")
    assert not drop_dangling_last_checkpoint(train_dir)
    assert (train_dir / "last_checkpoint").is_file()
    assert not drop_dangling_last_checkpoint(tmp_path / "none"), "no record, nothing to do"


def test_prepare_attempt_creates_the_folder(tmp_path: Path) -> None:
    train_dir = tmp_path / "train" / "nvidia"
    prepare_attempt(train_dir, train_dir / "dllogger.json", NOW)
    assert train_dir.is_dir() and not any(train_dir.iterdir())


def test_the_script_does_both_between_attempts(tmp_path: Path) -> None:
    train_dir = tmp_path / "nvidia"
    train_dir.mkdir()
    (train_dir / "dllogger.json").write_text("attempt 1\n")
    (train_dir / "last_checkpoint").write_text(str(train_dir / "model_0000040.pth"))
    result = run_script(
        "nvidia_attempt.py",
        ["--train-dir", train_dir, "--summary", train_dir / "dllogger.json"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    names = sorted(os.listdir(train_dir))
    assert len(names) == 1 and names[0].startswith("dllogger.json.2"), names
    assert "training starts over" in result.stderr
