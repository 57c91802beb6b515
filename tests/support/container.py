"""What the container and cluster tests share: pyproject's pins, a workflow copy with the
container parts, the apptainer test double on PATH, and a reader for the sections of an
Apptainer definition file."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from tests.support.paths import REPO, TESTS_DATA
from tests.support.workflow import copy_workflow, tool_env

#: tests/support/doubles/apptainer.py: records its calls, runs `exec`'s command on the host.
DOUBLE = REPO / "tests" / "support" / "doubles" / "apptainer.py"
#: Besides workflow.WORKFLOW_PARTS, a run with --use-singularity reads these.
CONTAINER_PARTS = ("containers", "envs")


@cache
def pyproject() -> dict[str, Any]:
    with open(REPO / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def pyproject_pins() -> dict[str, str]:
    """name -> version of the runtime dependencies, pinned exactly (extras dropped)."""
    pins = {}
    for requirement in pyproject()["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;]+)", requirement)
        assert match, f"pyproject.toml: {requirement!r} is not pinned exactly (name==version)"
        pins[match.group(1).lower()] = match.group(2)
    return pins


def workflow_copy(dest: Path, config: Path | None = TESTS_DATA / "tiny.yaml") -> Path:
    """A private copy of the workflow, container parts included; config.yaml := ``config``."""
    dest.mkdir(parents=True)
    copy_workflow(dest)
    for part in CONTAINER_PARTS:
        shutil.copytree(REPO / part, dest / part, dirs_exist_ok=True)
    if config is not None:
        shutil.copy2(config, dest / "config.yaml")
    return dest


def sections(text: str) -> dict[str, str]:
    """The definition's %sections by name; the header under ''."""
    found: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        match = re.match(r"^%(\w+)\s*$", line)
        if match:
            current = match.group(1)
            if current in found:
                raise AssertionError(f"section %{current} appears twice")
            found[current] = []
        else:
            found[current].append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def body_lines(section: str) -> list[str]:
    """Non-blank, non-comment lines of a section, stripped."""
    return [
        line.strip()
        for line in section.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


class Apptainer:
    """The double on PATH (in ``root``/double-bin), and the calls it recorded.

    ``data`` is the folder MASKRCNN_DATA names: the profiles bind it into the container.
    """

    def __init__(self, root: Path) -> None:
        self.bin = root / "double-bin"
        self.bin.mkdir()
        (self.bin / "apptainer").symlink_to(DOUBLE)
        self.log = root / "apptainer-calls.jsonl"
        self.data = root / "datasets"
        self.data.mkdir()

    def env(self) -> dict[str, str]:
        """tool_env() with the double first on PATH (Slurm jobs inherit it: --export=ALL)."""
        env = tool_env(APPTAINER_DOUBLE_LOG=str(self.log), MASKRCNN_DATA=str(self.data))
        env["PATH"] = f"{self.bin}:{env['PATH']}"
        return env

    def calls(self, subcommand: str) -> list[list[str]]:
        if not self.log.exists():
            return []
        calls = [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]
        return [argv for argv in calls if argv and argv[0] == subcommand]


def executed_rules(output: str) -> Counter[str]:
    """Jobs per rule that a snakemake run started (its 'rule X:' headers), 'all' left out."""
    rules = Counter(re.findall(r"^(?:local)?rule (\w+):", output, flags=re.MULTILINE))
    rules.pop("all", None)
    return rules


def rule_of(command: str) -> str:
    """The rule a job's shell command belongs to, from its log: results/logs/<rule>/..."""
    match = re.search(r"results/logs/(\w+)/", command)
    assert match, f"no results/logs/<rule>/ log in {command!r}"
    return match.group(1)
