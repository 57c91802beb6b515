"""Each annotation tool's export, as the tool writes it (tests/support/tool_exports.py), trains
through the real snakemake CLI with nothing but ``format: <tool>`` and its root: no phantom
class, every category with its trainable instances, predictions in the user's category ids,
and the user's files untouched. One invocation prepares, validates, trains and evaluates all
five, tiny (64 px images, 4 iterations)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import TESTS_DATA
from tests.support.tool_exports import WRITERS, base_scenes
from tests.support.workflow import copy_workflow, run_snakemake

pytestmark = pytest.mark.slow


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The five exports, a config of a few lines each, and one snakemake run over them."""
    tmp = tmp_path_factory.mktemp("tools")
    documents = base_scenes(tmp / "scenes")
    (tmp / "workflow").mkdir()
    workdir = copy_workflow(tmp / "workflow")
    config = yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text())
    tiny_run = config["runs"].pop("tiny")
    config["datasets"], expected, targets = {}, {}, []
    for tool, writer in WRITERS.items():
        export = tmp / "exports" / tool
        expected[tool] = writer(tmp / "scenes", documents, export)
        train, evaluated = expected[tool]["splits"]
        config["datasets"][tool] = {
            "source": "folder",
            "format": tool,
            "root": str(export),
            "splits": {train: {}, evaluated: {}},
        }
        config["runs"][tool] = {**copy.deepcopy(tiny_run), "dataset": tool, "eval_split": evaluated}
        targets.append(f"results/{tool}/eval/{evaluated}/metrics.json")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = _digests(tmp / "exports")
    run_snakemake(workdir, *targets)
    return {"workdir": workdir, "expected": expected, "before": before, "exports": tmp / "exports"}


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_users_files_are_never_modified(trained: dict[str, Any]) -> None:
    assert _digests(trained["exports"]) == trained["before"]


@pytest.mark.parametrize("tool", list(WRITERS))
def test_no_phantom_class_and_the_users_ids(trained: dict[str, Any], tool: str) -> None:
    workdir, expected = trained["workdir"], trained["expected"][tool]
    record = _json(workdir / f"data/{tool}/dataset.json")
    assert record["num_classes"] == 5  # four shapes + background: no project, no _background_
    assert [c["id"] for c in record["categories"]] == sorted(expected["ids"])
    evaluated = expected["splits"][1]
    predictions = _json(workdir / f"results/{tool}/eval/{evaluated}/predictions.json")
    assert predictions, "the tiny model predicts something at score_thresh 0"
    assert {p["category_id"] for p in predictions} <= set(expected["ids"])


@pytest.mark.parametrize("tool", list(WRITERS))
def test_every_annotation_trains(trained: dict[str, Any], tool: str) -> None:
    """Per category of the train split: as many trainable instances as the user annotated."""
    workdir, expected = trained["workdir"], trained["expected"][tool]
    report = _json(workdir / f"data/{tool}/validation.json")
    train = report["splits"]["train"]
    trainable = {c["id"]: c["trainable"] for c in train["categories"]}
    assert trainable == expected["trainable"]
    assert train["counts"]["box_only_annotations"] == expected.get("box_only", 0)
    assert train["original"]["annotations"].startswith(str(trained["exports"] / tool))


def test_what_each_tool_needed_is_counted(trained: dict[str, Any]) -> None:
    workdir, expected = trained["workdir"], trained["expected"]

    def changes(tool: str) -> dict[str, Any]:
        return _json(workdir / f"data/{tool}/validation.json")["splits"]["train"]["prepared"][
            "changes"
        ]

    assert changes("cvat")["crowd_as_instances"] == expected["cvat"]["crowd"] > 0
    dropped = {c["name"] for c in changes("roboflow")["categories_dropped"]}
    assert dropped == {"shapes-x1y2z"}
    assert {c["name"] for c in changes("labelme")["categories_dropped"]} == {"_background_"}
    assert changes("labelme")["rectangles_as_polygons"] == expected["labelme"]["rectangles"] > 0
    assert changes("labelstudio")["image_sizes_filled"] == expected["labelstudio"]["sizes_filled"]
    fiftyone = changes("fiftyone")
    assert fiftyone["areas_recomputed"] == expected["fiftyone"]["areas_recomputed"] > 0
    assert fiftyone["iscrowd_filled"] > 0 and fiftyone["box_only_filled"] == 1
