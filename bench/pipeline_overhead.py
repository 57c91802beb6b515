"""What our workflow adds to every `snakemake` call: a no-op call (everything up to date) on
the pipeline against the same call on a bare 20-rule workflow, both timed here.

The pipeline is the demo's rule graph run once on the tiny test config (seconds instead of
the demo's minutes; the same rules, config validation and helpers), unless --workdir points
at a finished demo checkout. Last line: one JSON object with both medians and their ratio
(goal: <= 1.5).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.paths import BIN, TESTS_DATA  # noqa: E402
from tests.support.workflow import copy_workflow, tool_env  # noqa: E402

BARE_RULES = 20


def bare_workflow(directory: Path) -> Path:
    """A chain of 20 rules that each touch a file: Snakemake's own cost and nothing else."""
    rules = ["rule all:\n    input: 'out/19.txt'\n"]
    for index in range(BARE_RULES):
        source = f"    input: 'out/{index - 1}.txt'\n" if index else ""
        output = f"    output: 'out/{index}.txt'\n    shell: 'touch {{output}}'\n"
        rules.append(f"rule step{index}:\n{source}{output}")
    (directory / "Snakefile").write_text("\n".join(rules))
    return directory


def snakemake(workdir: Path, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "snakemake"), "--cores", "1", "--quiet", "all", *args],
        cwd=workdir,
        env=tool_env(),
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def median_noop(workdir: Path, repeats: int, *args: str) -> float:
    times = [snakemake(workdir, *args) for _ in range(repeats)]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="no-op calls per workflow (5)")
    parser.add_argument("--workdir", type=Path, help="a finished demo checkout to time instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        if args.workdir:
            pipeline, extra = args.workdir, ("--profile", "profiles/demo")
        else:
            pipeline, extra = scratch_dir / "pipeline", ()
            pipeline.mkdir()
            copy_workflow(pipeline)
            shutil.copy2(TESTS_DATA / "tiny.yaml", pipeline / "config.yaml")
            snakemake(pipeline)  # build everything once
        bare = bare_workflow(Path(tempfile.mkdtemp(dir=scratch_dir)))
        snakemake(bare)
        pipeline_s = median_noop(pipeline, args.repeats, *extra)
        bare_s = median_noop(bare, args.repeats)
    figures = {
        "benchmark": "pipeline_overhead",
        "repeats": args.repeats,
        "pipeline_noop_s": round(pipeline_s, 3),
        "bare_20_rules_noop_s": round(bare_s, 3),
        "ratio": round(pipeline_s / bare_s, 3),
        "goal": "<= 1.5",
    }
    print(f"no-op snakemake: pipeline {pipeline_s:.2f} s, bare 20 rules {bare_s:.2f} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
