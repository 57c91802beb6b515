"""Running the workflow and its scripts as a user does: a private copy of the workflow, the
real snakemake CLI in it, a script of scripts/ in a subprocess, and what a dry run plans."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support.paths import BIN, REPO

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
    """WORKFLOW_PARTS of this checkout copied into ``dest`` (caches left out)."""
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
    script: str, args: Sequence[str | Path], *, cwd: Path = REPO, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``python scripts/<script> ARGS`` as a rule or a user runs it; never raises on failure,
    so tests can assert on the exit status and the message."""
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *map(str, args)],
        cwd=cwd,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def planned_jobs(workdir: Path) -> set[str]:
    """Rules a dry run would execute (from the 'Job stats' table), 'all' left out."""
    result = run_snakemake(workdir, "--dry-run")
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return set()
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    rows = re.findall(r"^(\w+)\s+\d+\s*$", table, flags=re.MULTILINE)
    return set(rows) - {"all", "job"}
