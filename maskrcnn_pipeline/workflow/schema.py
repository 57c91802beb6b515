"""The config schema (schemas/config.schema.yaml): the one place defaults live.

Apart from :mod:`maskrcnn_pipeline.workflow.config` (which validates a whole config), so a
script that only needs a default for a by-hand run reads it without importing the
validation's dependencies.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


@cache
def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def schema_default(*keys: str, schema_path: Path = SCHEMA_PATH) -> Any:
    """The schema's default for the top-level key path ``keys`` (e.g. "report", "references"),
    for scripts run by hand without a config: defaults live in the schema only."""
    node = load_schema(schema_path)
    for key in keys:
        node = node["properties"][key]
    return copy.deepcopy(node["default"])
