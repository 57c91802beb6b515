"""Shared fixtures: the repository's paths and a copy of the workflow in a temp folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS_DATA = REPO / "tests" / "data"
#: What a run's report holds (results/<run>/report/), stated here rather than read from the
#: package, so the tests notice a figure that goes missing.
RUN_REPORT_FIGURES = frozenset(
    {
        "losses.png",
        "lr.png",
        "throughput.png",
        "ap_vs_iteration.png",
        "per_category_ap.png",
        "pr_curves.png",
        "predictions.png",
    }
)
RUN_REPORT_TABLES = frozenset({"metrics.csv", "metrics.html", "summary.md"})
#: What the cross-run comparison holds (results/report/).
COMPARISON_FIGURES = frozenset(
    {"ap.png", "ap_by_size.png", "speed.png", "losses.png", "ap_vs_iteration.png"}
)
COMPARISON_TABLES = frozenset({"comparison.csv", "comparison.html", "comparison.md"})
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
    "report",
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


def make_tiny_dataset(root: Path, *, train: int = 12, val: int = 6) -> Path:
    """The tiny config's generated dataset (64 px, 1-2 objects) under ``root``."""
    from maskrcnn_pipeline.data.synthetic import generate_synthetic_dataset

    generate_synthetic_dataset(
        root,
        splits={"train": train, "val": val},
        image_size=64,
        seed=3,
        max_objects=2,
        min_object_size=12,
        max_object_size=40,
    )
    return root


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    """A private copy of the workflow whose config.yaml is the tiny test config."""
    copy_workflow(tmp_path)
    shutil.copy2(TESTS_DATA / "tiny.yaml", tmp_path / "config.yaml")
    return tmp_path


class _TableParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_tables(text: str) -> list[list[list[str]]]:
    """Every <table> of an HTML page as rows of cell texts (header row first); the stdlib's
    parser, as pandas.read_html needs lxml, which the project does not install."""
    parser = _TableParser()
    parser.feed(text)
    return parser.tables
