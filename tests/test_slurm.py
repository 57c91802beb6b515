"""The pipeline through profiles/slurm on a real Slurm: a one-node cluster on loopback.

tests/support/slurm_cluster.py starts munged, slurmctld and slurmd (Debian's packages, installed by
.ci/run) with two fake GPUs, and stops them after. The workflow runs the tiny test config
(tests/data/tiny.yaml: seconds per job), not the 10-minute demo, through profiles/slurm as
shipped, plus the two flags a cluster without an accounting database needs (squeue for job
status, a short first status check; snakemake runs under `timeout`, since the plugin can wait
forever on a failing sacct). The profile runs jobs in the Apptainer image; as in
test_apptainer_wiring.py the apptainer test double stands in for Apptainer, so the jobs' real
commands run on the node. In the test's private copy, evaluate fails on its first attempt.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.support.container import Apptainer, executed_rules, rule_of, workflow_copy
from tests.support.slurm_cluster import (
    LocalSlurm,
    local_slurm,
    profile_command,
    sbatch_calls,
    slurm_logs,
    submitted,
    why_not_runnable,
)

pytestmark = pytest.mark.slow

#: The pipeline's core jobs on the tiny config (more may run, e.g. validation or comparison).
CORE = ("generate_synthetic_dataset", "train", "predict", "evaluate", "report")
#: Bounds every wait: snakemake is killed after this (pitfall 2: it can wait forever).
TIMEOUT_S = 600
FAIL_ONCE = """
# Injected by tests/test_slurm.py: the first attempt fails, so the retry can be seen.
import sys as _sys
from pathlib import Path as _Path

_MARKER = _Path("results/evaluate-failed-once")
if not _MARKER.exists():
    _MARKER.write_text("the first attempt failed on purpose\\n")
    _sys.exit("evaluate: failing the first attempt on purpose (tests/test_slurm.py)")
"""


@pytest.fixture(scope="module")
def cluster() -> LocalSlurm:
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    with local_slurm() as running:
        yield running


def fail_first_attempt(script: Path) -> None:
    """Put FAIL_ONCE right after the script's `from __future__` import."""
    text = script.read_text()
    anchor = "from __future__ import annotations\n"
    assert anchor in text
    script.write_text(text.replace(anchor, anchor + FAIL_ONCE, 1))


@pytest.fixture(scope="module")
def slurm_run(
    cluster: LocalSlurm, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str], Apptainer]:
    root = tmp_path_factory.mktemp("slurm")
    workdir = workflow_copy(root / "wf")
    fail_first_attempt(workdir / "scripts" / "evaluate.py")
    apptainer = Apptainer(root)  # profiles/slurm runs the jobs in the image
    env = apptainer.env()
    # the tiny run is a CPU run; one GPU for predict shows a GPU request reaching a job
    command = profile_command(TIMEOUT_S, "--set-resources", "predict:gpu=1")
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S + 30
    )
    (root / "snakemake.out").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed ({result.returncode}), see {root / 'snakemake.out'}:\n"
        + (result.stdout + result.stderr)[-6000:]
    )
    return workdir, result, apptainer


def test_the_pipeline_completes_through_slurm(slurm_run) -> None:
    workdir, _, _ = slurm_run
    run = workdir / "results" / "tiny"
    metrics = json.loads((run / "eval" / "val" / "metrics.json").read_text())
    assert set(metrics) == {"bbox", "segm"}
    for name in ("summary.md", "metrics.csv", "losses.png", "lr.png", "predictions.png"):
        assert (run / "report" / name).stat().st_size > 0
    assert (run / "train" / "model_final.pth").stat().st_size > 0


def test_every_job_went_through_sbatch(slurm_run) -> None:
    workdir, result, _ = slurm_run
    executed = executed_rules(result.stdout + result.stderr)
    # the image is built once on the submitting host, not as a cluster job
    assert executed.pop("build_image") == 1
    assert not sbatch_calls(result.stderr, "build_image") and not slurm_logs(workdir, "build_image")
    assert set(CORE) <= set(executed)
    assert set(submitted(result.stderr)) == set(executed)
    for rule in executed:
        logs = slurm_logs(workdir, rule)
        assert logs and all(log.stat().st_size > 0 for log in logs), rule


def test_train_asks_for_what_its_run_config_says(slurm_run) -> None:
    _, result, _ = slurm_run
    (call,) = sbatch_calls(result.stderr, "train")
    flags = call.split()
    # tests/data/tiny.yaml: a CPU run (gpus 0), one node, one thread, default resources
    assert flags[flags.index("-t") + 1] == "720"
    assert flags[flags.index("--mem") + 1] == "32000"
    for flag in ("--nodes=1", "--ntasks=1", "--cpus-per-task=1", "--requeue"):
        assert flag in flags
    assert not [flag for flag in flags if "gpu" in flag]


def test_a_gpu_request_reaches_the_job_as_cuda_visible_devices(slurm_run) -> None:
    workdir, result, _ = slurm_run
    (call,) = sbatch_calls(result.stderr, "predict")
    assert "--gpus=1" in call.split()  # --set-resources predict:gpu=1
    log = (workdir / "results" / "logs" / "predict" / "tiny.val.log").read_text()
    # the job logs what it was given; torch sees no real GPU behind it and uses the CPU
    assert re.search(r"SLURM_JOB_ID=\d+ CUDA_VISIBLE_DEVICES=[01]\b", log), log[:500]
    for rule in ("generate_synthetic_dataset", "evaluate", "report"):
        assert "--gpus" not in " ".join(sbatch_calls(result.stderr, rule))


def test_a_job_that_fails_once_is_retried(slurm_run) -> None:
    workdir, result, _ = slurm_run
    assert len(sbatch_calls(result.stderr, "evaluate")) == 2  # submitted again after failing
    first, second = (log.read_text() for log in slurm_logs(workdir, "evaluate"))
    assert "--attempt 1" in first and "returned non-zero exit status" in first
    assert "--attempt 2" in second and "returned non-zero exit status" not in second
    assert (workdir / "results" / "evaluate-failed-once").is_file()
    assert (workdir / "results" / "tiny" / "eval" / "val" / "metrics.json").is_file()
    others = submitted(result.stderr)
    del others["evaluate"]
    assert others.pop("prepare") == 2  # one job per split
    assert set(others.values()) == {1}  # one job each on the tiny config, none retried


def test_cluster_jobs_ran_in_the_image_and_recorded_its_digest(slurm_run) -> None:
    workdir, _, apptainer = slurm_run
    execs = apptainer.calls("exec")
    assert all("--nv" in argv and "results/container/maskrcnn.sif" in argv for argv in execs)
    # every submitted job (evaluate twice) ran its command in the image
    assert Counter(rule_of(argv[-1]) for argv in execs) == submitted(slurm_run[1].stderr)
    image = workdir / "results" / "container" / "maskrcnn.sif"
    provenance = json.loads((workdir / "results/tiny/train/provenance.json").read_text())
    assert provenance["container"]["digest"] == (
        "sha256:" + hashlib.sha256(image.read_bytes()).hexdigest()
    )
    assert provenance["hardware"]["slurm_job_id"]


def test_without_slurm_the_skip_reason_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    reason = why_not_runnable()
    assert reason and "munge slurmctld slurmd slurm-client" in reason
