"""Shared fixtures: the repository's paths and a copy of the workflow in a temp folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS_DATA = REPO / "tests" / "data"
BIN = Path(sys.executable).parent
#: What a copy of the workflow needs; results/ and data/ are never copied.
WORKFLOW_PARTS = (
    "Snakefile",
    "rules",
    "scripts",
    "schemas",
    "configs",
    "profiles",
    "envs",
    "maskrcnn_pipeline",
)


def tool_env(**extra: str) -> dict[str, str]:
    """The environment jobs see: the project's venv first on PATH, one thread per process."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # This checkout's package, also when the venv's editable install points at another one.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def copy_workflow(dest: Path) -> Path:
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / part)
    return dest


def run_snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """The real snakemake CLI in ``workdir``; output captured for assertions."""
    command = [str(BIN / "snakemake"), "--cores", "1", *args]
    result = subprocess.run(
        command, cwd=workdir, env=tool_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def run_script(
    script: str, args: Sequence[str], *, cwd: Path = REPO, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *args],
        cwd=cwd,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    """A private copy of the workflow whose config.yaml is the tiny test config."""
    copy_workflow(tmp_path)
    shutil.copy2(TESTS_DATA / "tiny.yaml", tmp_path / "config.yaml")
    return tmp_path
