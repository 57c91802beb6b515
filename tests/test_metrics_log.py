"""metrics.jsonl: a resume truncates it, and a torn last line never blocks the resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.metrics_log import append_record, read_metrics_log, truncate_after


def write_log(path: Path, iterations: list[int], tail: str = "") -> None:
    for iteration in iterations:
        append_record(path, {"iteration": iteration, "loss": 1.0 / iteration})
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(tail)


def test_a_resume_keeps_the_lines_up_to_its_iteration(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    write_log(path, [2, 4, 6, 8])
    truncate_after(path, 4)
    assert [json.loads(line)["iteration"] for line in path.read_text().splitlines()] == [2, 4]


def test_a_torn_last_line_is_dropped_with_a_warning_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What kill -9 or a full disk during an append leaves: half a JSON object."""
    path = tmp_path / "metrics.jsonl"
    write_log(path, [2, 4], tail='{"iteration": 6, "lo')
    with caplog.at_level(logging.WARNING):
        truncate_after(path, 4)
    assert f"{path}:3" in caplog.text and "dropped" in caplog.text
    assert read_metrics_log(path).training["iteration"].tolist() == [2, 4]


def test_a_malformed_line_inside_the_log_stops_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    write_log(path, [2], tail="not json\n")
    write_log(path, [4])
    with pytest.raises(PipelineError, match=rf"{path}:2: not valid JSON"):
        truncate_after(path, 4)
