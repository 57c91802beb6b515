"""The config schema (schemas/config.schema.yaml), where every default lives once.

Kept apart from :mod:`maskrcnn_pipeline.workflow.config` (validation) so that a script that
only needs a default for an option it offers by hand imports this file alone (yaml, no
project module), and its rule's code inputs stay small: editing the validator does not rerun
the data generation because the generator's --help shows the schema's defaults.
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
    """The schema's default for the key path ``keys``, for scripts run by hand without a
    config: defaults live in the schema only.

    The path starts at the top level (``"report", "references"``) or, for a block the schema
    defines once and uses in several places, at its definition (``"$defs", "synthetic",
    "seed"``).
    """
    node = load_schema(schema_path)
    if keys[:1] == ("$defs",):
        node, keys = node["$defs"][keys[1]], keys[2:]
    for key in keys:
        node = node["properties"][key]
    return copy.deepcopy(node["default"])
