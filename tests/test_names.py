"""Names that become paths: '.', '..' and hidden names are refused for every kind of name,
by the schema before any job runs and by the Snakefile's wildcard constraints."""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.names import SAFE_NAME, is_safe_name
from maskrcnn_pipeline.workflow.config import validate_config
from maskrcnn_pipeline.workflow.schema import load_schema
from tests.support.paths import BIN, REPO, TESTS_DATA
from tests.support.workflow import tool_env

BAD_NAMES = [".", "..", ".hidden", "a/b", "a b", "$(id)", ""]
GOOD_NAMES = ["coco2017", "r50_fpn-1x", "v1.2", "_x", "-x"]

FOLDER = {
    "source": "folder",
    "splits": {"train": {"images": "imgs", "annotations": "a.json"}},
}
DOWNLOAD_FILE = {"url": "https://example.org/f.zip", "md5": "a" * 32}


def base() -> dict:
    return {
        "datasets": {
            "d": {"source": "synthetic"},
            "f": copy.deepcopy(FOLDER),
            "dl": {
                "source": "download",
                "files": {"f.zip": dict(DOWNLOAD_FILE)},
                "splits": {"train": {"images": "i", "annotations": "a.json"}},
            },
        },
        "runs": {"r": {"dataset": "d"}},
    }


def rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


#: Each kind of name and how a config gives it; the value is the key path the error names.
KINDS: dict[str, tuple[Callable[[dict, str], None], str]] = {
    "run": (lambda c, n: rename(c["runs"], "r", n), "runs"),
    "dataset": (lambda c, n: rename(c["datasets"], "f", n), "datasets"),
    "split": (lambda c, n: rename(c["datasets"]["f"]["splits"], "train", n), "datasets.f.splits"),
    "train_split": (lambda c, n: c["runs"]["r"].update(train_split=n), "runs.r.train_split"),
    "file": (lambda c, n: rename(c["datasets"]["dl"]["files"], "f.zip", n), "datasets.dl.files"),
    "weights file": (lambda c, n: c.update(weights={n: dict(DOWNLOAD_FILE)}), "weights"),
    "inference": (
        lambda c, n: c.update(inference={n: {"run": "r", "images": "imgs"}}),
        "inference",
    ),
    "image": (
        lambda c, n: c.update(container={"image": f"results/container/{n}.sif"}),
        "container.image",
    ),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_name_is_refused_with_its_key(kind: str, name: str) -> None:
    edit, where = KINDS[kind]
    config = base()
    edit(config, name)
    with pytest.raises(PipelineError) as info:
        validate_config(config)
    message = str(info.value)
    # an image path with a folder in its name is refused as a path (results/container/<name>)
    refusal = "results/container/<name>.sif" if kind == "image" and "/" in name else "not allowed"
    assert where in message and refusal in message, message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", GOOD_NAMES)
def test_a_good_name_is_accepted(kind: str, name: str) -> None:
    edit, _ = KINDS[kind]
    config = base()
    edit(config, name)
    if kind == "train_split":  # a run's split must exist: give the dataset that split
        config["runs"]["r"].update(dataset="f", eval_split=name)
        rename(config["datasets"]["f"]["splits"], "train", name)
    validate_config(config)


def test_the_schema_uses_the_one_name_rule() -> None:
    assert load_schema()["$defs"]["name"]["pattern"] == f"^{SAFE_NAME}$"
    assert not any(map(is_safe_name, BAD_NAMES)) and all(map(is_safe_name, GOOD_NAMES))


@pytest.mark.parametrize(
    "target",
    [
        "results/../report/summary.md",
        "results/.tiny/report/summary.md",
        "data/tiny/../validation.json",
        "data/.tiny/validation.json",
    ],
)
def test_the_wildcards_never_match_a_dot_name(target: str, tmp_path: Path) -> None:
    """Even asked for by hand, a path with a '.', '..' or hidden name component matches no
    rule, so no job could write (or delete, on failure) outside its folder."""
    result = subprocess.run(
        [str(BIN / "snakemake"), "-n", target, "--configfile", str(TESTS_DATA / "tiny.yaml")],
        cwd=REPO,
        env=tool_env(),
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert re.search(r"MissingRuleException|No rule to produce", output), output[-1500:]
