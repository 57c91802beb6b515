"""Atomic writes: a full disk (or any refused write) names the file and leaves no temp file."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any

import pytest

from maskrcnn_pipeline import fileio
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import atomic_path, write_json_atomic, write_text_atomic


class FullDisk(io.FileIO):
    """A file whose disk fills after ``room`` bytes: the next write raises ENOSPC."""

    room = 10

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def open_on_full_disk(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    return FullDisk(path, mode.replace("b", "")) if "w" in mode else open(path, mode, *args)


@pytest.mark.parametrize("old", [None, "previous\n"], ids=["new", "existing"])
def test_disk_full_names_the_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str | None
) -> None:
    target = tmp_path / "out" / "metrics.json"
    if old is not None:
        target.parent.mkdir()
        target.write_text(old)
    monkeypatch.setattr(fileio, "open", open_on_full_disk, raising=False)
    with pytest.raises(PipelineError) as info:
        write_json_atomic(target, {"AP": [0.5] * 100})
    message = str(info.value)
    assert message.startswith(f"{target}: cannot write (No space left on device [ENOSPC])")
    assert "free some space" in message.lower()
    assert isinstance(info.value.__cause__, OSError)
    assert sorted(p.name for p in target.parent.iterdir()) == ([] if old is None else [target.name])
    if old is not None:
        assert target.read_text() == old  # the complete old file stays


def test_disk_full_inside_an_atomic_path_block(tmp_path: Path) -> None:
    """Writers that take a path (torch.save, savefig, to_csv) get the same error."""
    target = tmp_path / "table.csv"
    quota = pytest.raises(PipelineError, match=r"table\.csv: cannot write \(Disk quota exceeded")
    with quota, atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert list(tmp_path.iterdir()) == []


def test_other_errors_inside_a_block_are_not_blamed_on_the_target(tmp_path: Path) -> None:
    """A missing input read inside the block is not a write error of the output."""
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "metrics.jsonl") as tmp:
        tmp.write_bytes((tmp_path / "missing.jsonl").read_bytes())
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", read_only)
    with pytest.raises(PipelineError, match=r"report\.md: cannot write \(Read-only file system"):
        write_text_atomic(tmp_path / "report.md", "x")
