"""Shared fixtures only; the helpers they use live in tests/support/ (no test module imports
another, nor this file)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.container import Apptainer
from tests.support.paths import TESTS_DATA
from tests.support.workflow import copy_workflow


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    """A private copy of the workflow whose config.yaml is the tiny test config."""
    copy_workflow(tmp_path)
    shutil.copy2(TESTS_DATA / "tiny.yaml", tmp_path / "config.yaml")
    return tmp_path


@pytest.fixture
def fake_apptainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Apptainer:
    """The apptainer test double first on PATH, for code that calls it in this process."""
    apptainer = Apptainer(tmp_path)
    env = apptainer.env()
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("APPTAINER_DOUBLE_LOG", env["APPTAINER_DOUBLE_LOG"])
    return apptainer
