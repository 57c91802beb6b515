"""envs/*.yaml (for `snakemake --use-conda`) install exactly pyproject.toml's pins.

pyproject.toml is the one place versions are chosen; the conda environments repeat them for
users who prefer conda, and this test keeps the copies equal. snakemake and its plugins run
on the host, not in the jobs' environment, so they are the only pins left out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.support.container import pyproject_pins
from tests.support.paths import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))
HOST_ONLY = re.compile(r"^snakemake.*$")


def env_pins(path: Path) -> tuple[str | None, dict[str, str]]:
    """The environment's python version and its pip pins, name -> version."""
    spec = yaml.safe_load(path.read_text())
    python = None
    pins: dict[str, str] = {}
    for entry in spec["dependencies"]:
        if isinstance(entry, dict):
            for requirement in entry.get("pip", []):
                name, version = requirement.split("==")
                pins[name.lower()] = version
        elif entry.startswith("python="):
            python = entry.split("=", 1)[1]
    return python, pins


def test_there_is_an_environment_and_the_rules_use_it() -> None:
    assert ENVS, "envs/ holds no environment"
    assert 'ENV = "../envs/maskrcnn.yaml"' in (REPO / "rules" / "common.smk").read_text()


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_environment_pins_equal_pyproject(path: Path) -> None:
    python, pins = env_pins(path)
    expected = {name: v for name, v in pyproject_pins().items() if not HOST_ONLY.match(name)}
    assert pins == expected
    assert python is not None and tuple(map(int, python.split("."))) >= (3, 11)
