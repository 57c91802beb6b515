"""Every value that reaches a shell is quoted: hostile paths in the config run nothing.

The planned shell command of every job (`snakemake -n -p --forceall`) is executed by bash
with `python` replaced by a stand-in that records its arguments: a `$(...)`, a backtick or
a `;` in a path must arrive as text inside one argument, never run, and a path with spaces
must arrive whole. Then the link and validate jobs run for real on a folder whose path is
hostile.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import yaml

from tests.support.datasets import make_tiny_dataset
from tests.support.paths import TESTS_DATA
from tests.support.workflow import copy_workflow, run_snakemake, tool_env

#: A folder name a user could really have, with every shell metacharacter that matters.
HOSTILE = "my data $(touch PWNED) `touch PWNED` 'q' \"d\"; touch PWNED & x"
RECORDER = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["ARGV_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def hostile_config(data_root: Path) -> dict:
    """The tiny config plus a folder dataset under a hostile root, a download dataset with
    hostile split paths and periodic evaluation, and an inference folder with a hostile
    name."""
    config = yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text())
    tiny_run = config["runs"]["tiny"]
    config["datasets"]["shared"] = {
        "source": "folder",
        "root": str(data_root),
        "splits": {
            "train": {"images": "train", "annotations": "annotations/train.json"},
            "val": {"images": "val", "annotations": "annotations/val.json"},
        },
    }
    config["datasets"]["coco"] = {
        "source": "download",
        "files": {"val.zip": {"url": "https://example.org/val.zip", "md5": "a" * 32}},
        "splits": {
            "val": {"images": f"{HOSTILE}/val", "annotations": f"{HOSTILE}/val.json"},
        },
    }
    config["runs"]["on_shared"] = {**tiny_run, "dataset": "shared"}
    config["runs"]["on_coco"] = {
        **tiny_run,
        "dataset": "coco",
        "train_split": "val",
        "eval_split": "val",
        "eval_period": 2,
    }
    config["inference"] = {"photos": {"run": "on_shared", "images": str(data_root / "val")}}
    return config


def shell_commands(workdir: Path) -> dict[str, str]:
    """Each planned job's shell command, by rule and wildcards."""
    output = run_snakemake(workdir, "-n", "-p", "--forceall").stdout
    commands = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", output):
        command = re.search(r"^Shell command: (.*)$", block, re.MULTILINE)
        header = re.match(r"(?:local)?rule (\w+):", block)
        if command and header and command.group(1).strip() != "None":
            wildcards = re.search(r"^    wildcards: (.*)$", block, re.MULTILINE)
            key = f"{header.group(1)}[{wildcards.group(1) if wildcards else ''}]"
            commands[key] = command.group(1)
    return commands


def test_no_planned_shell_command_runs_a_hostile_path(tmp_path: Path) -> None:
    data_root = make_tiny_dataset(tmp_path / HOSTILE)
    (tmp_path / "wf").mkdir()
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "config.yaml").write_text(yaml.safe_dump(hostile_config(data_root)))
    commands = shell_commands(workdir)
    assert {"link", "validate", "train", "predict", "report", "infer"} <= {
        key.split("[")[0] for key in commands
    }

    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "python").write_text(RECORDER)
    (stubs / "python").chmod(0o755)
    argv_log = tmp_path / "argv.jsonl"
    env = tool_env(ARGV_LOG=str(argv_log))
    env["PATH"] = f"{stubs}:{env['PATH']}"
    for key, command in commands.items():
        for target in re.findall(r">>? ?(\S+)", command):
            (workdir / target).parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["bash", "-c", f"set -euo pipefail; {command}"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{key}: {command}\n{result.stderr}"

    executed = [path for path in tmp_path.rglob("PWNED")]
    assert not executed, f"a hostile path ran as a command: {executed}"
    arguments = [json.loads(line) for line in argv_log.read_text().splitlines()]
    assert len(arguments) == len(commands)
    every_argument = [argument for argv in arguments for argument in argv]
    for path in (
        f"data/coco/{HOSTILE}/val",  # train --images / --eval-images, predict, report
        f"data/coco/{HOSTILE}/val.json",
        str(data_root / "train"),  # link's targets
        str(data_root / "val"),  # infer's images folder
    ):
        assert path in every_argument, f"{path!r} did not arrive as one argument"
    train_on_coco = next(argv for argv in arguments if "--eval-images" in argv)
    assert train_on_coco[train_on_coco.index("--eval-images") + 1] == f"data/coco/{HOSTILE}/val"


def test_a_folder_with_a_hostile_path_links_and_validates_for_real(tmp_path: Path) -> None:
    data_root = make_tiny_dataset(tmp_path / HOSTILE)
    (tmp_path / "wf").mkdir()
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "config.yaml").write_text(yaml.safe_dump(hostile_config(data_root)))
    run_snakemake(workdir, "data/shared/validation.json")
    report = json.loads((workdir / "data" / "shared" / "validation.json").read_text())
    assert report["valid"] is True
    assert (workdir / "data" / "shared" / "train").resolve() == (data_root / "train").resolve()
    assert not list(tmp_path.rglob("PWNED"))
    assert shlex.quote(HOSTILE) != HOSTILE  # the name really needs quoting
