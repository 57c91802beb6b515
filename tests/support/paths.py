"""Where the tests find the repository, their data and the project's tools."""

from __future__ import annotations

import sys
from pathlib import Path

#: This checkout (the folder holding the Snakefile).
REPO = Path(__file__).resolve().parents[2]
#: Configs and small files the tests read (tests/data/).
TESTS_DATA = REPO / "tests" / "data"
#: The project's virtual environment's bin/ (snakemake, ruff, ...): the tests' own Python's.
BIN = Path(sys.executable).parent
