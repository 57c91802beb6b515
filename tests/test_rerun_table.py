"""The rerun table (tests/data/reruns.yaml) is well formed, covers the operational settings of
workflow/params.py, and is what the README shows. tests/test_workflow.py checks each row
against a real dry run."""

from __future__ import annotations

import copy

import pytest
import yaml

from maskrcnn_pipeline.workflow.config import validate_config
from maskrcnn_pipeline.workflow.params import OPERATIONAL_KEYS
from tests.support import reruns
from tests.support.paths import REPO, TESTS_DATA

TABLE = reruns.load()


def tiny_config() -> dict:
    config = yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text())
    config["inference"] = copy.deepcopy(TABLE["inference"])
    return validate_config(config)


def test_the_readme_shows_the_generated_table() -> None:
    section = reruns.readme_section(reruns.README.read_text(encoding="utf-8"))
    assert section, "README.md lost the rerun table's markers"
    assert section == reruns.render(), "run `python -m tests.support.reruns --write`"


def test_every_operational_setting_has_a_row_that_reruns_nothing() -> None:
    rows = {row["config"]: row for row in TABLE["rows"] if "config" in row}
    for dotted in OPERATIONAL_KEYS["train"]:
        assert rows[f"runs.<run>.{dotted}"]["reruns"] == [], dotted


@pytest.mark.parametrize("row", TABLE["rows"], ids=reruns.row_id)
def test_a_row_names_known_rules_and_a_real_change(row: dict) -> None:
    assert set(row["reruns"]) <= set(TABLE["rules"])
    if "edit" in row:
        assert (REPO / row["edit"]).is_file()
        return
    node = tiny_config()
    for part in reruns.key_path(row):
        node = node[part]  # the key exists (after the schema's defaults)
    assert node != row["value"], "the new value must differ from the tiny config's"
    changed = tiny_config()
    *parents, leaf = reruns.key_path(row)
    target = changed
    for part in parents:
        target = target[part]
    target[leaf] = row["value"]
    validate_config(changed)  # the new value is valid
