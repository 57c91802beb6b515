"""Engine nvidia through the real snakemake CLI: the plan and the exact commands of a COCO run,
the stop without --use-singularity, and the whole chain on the tiny dataset with stand-ins for
Apptainer (tests/support/doubles/apptainer.py) and NVIDIA's code
(tests/support/doubles/nvidia_maskrcnn.py).

The stand-ins check how the pipeline calls NVIDIA's code and write what it would write, in
its formats; NVIDIA's code itself, its image and a GPU are not here.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest
import yaml

from maskrcnn_pipeline.metrics_log import read_metrics_log
from maskrcnn_pipeline.workflow.code_inputs import code_inputs
from tests.support.container import Apptainer, workflow_copy
from tests.support.nvidia import NVIDIA_DOUBLE, RECIPE_COMMAND
from tests.support.paths import BIN, REPO, TESTS_DATA

pytestmark = pytest.mark.slow

NVIDIA_IMAGE = "results/container/nvidia-maskrcnn.sif"


def snakemake(
    workdir: Path, env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "snakemake"), "--cores", "1", *args]
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result


def job_counts(output: str) -> dict[str, int]:
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    rows = re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.MULTILINE)
    return {rule: int(count) for rule, count in rows if rule not in ("all", "job")}


def job_block(output: str, rule: str, wildcard: str = "") -> str:
    """The dry run's description of one job of ``rule`` (with ``wildcard`` in it)."""
    blocks = re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", output)
    found = [b for b in blocks if re.search(rf"^(?:local)?rule {rule}:", b, re.M) and wildcard in b]
    assert len(found) == 1, f"{rule} {wildcard}: {len(found)} jobs"
    return found[0]


def shell_of(block: str) -> str:
    return block.split("Shell command: ", 1)[1].split("\n", 1)[0]


# --- the plan of COCO 2017 with both engines -------------------------------------------------


@pytest.fixture(scope="module")
def coco_plan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`snakemake -n -p --use-singularity` on config.yaml + configs/nvidia.yaml."""
    root = tmp_path_factory.mktemp("coco_plan")
    workdir = workflow_copy(root / "wf", config=REPO / "config.yaml")
    env = Apptainer(root).env()
    result = snakemake(
        workdir,
        env,
        *("-n", "-p", "--use-singularity"),
        *("--configfile", "config.yaml", "configs/nvidia.yaml"),
    )
    return workdir, result.stdout + result.stderr


def test_both_engines_are_planned_from_data_to_the_comparison(coco_plan: tuple[Path, str]) -> None:
    _, output = coco_plan
    assert job_counts(output) == {
        "build_image": 2,  # the pipeline's image and NVIDIA's
        "fetch": 3,
        "unpack": 3,
        "prepare": 2,  # one job per split
        "validate": 1,  # one dataset, both runs
        "record_dataset": 1,
        "fetch_weights": 2,  # torchvision's ResNet-50 and Detectron's R-50.pkl
        "train": 1,
        "predict": 1,
        "prepare_nvidia": 1,
        "train_nvidia": 1,
        "nvidia_metrics": 1,
        "test_nvidia": 1,
        "nvidia_predictions": 1,
        "evaluate": 2,
        "report": 2,
        "compare": 1,
    }


def test_the_chain_of_the_nvidia_run(coco_plan: tuple[Path, str]) -> None:
    _, output = coco_plan
    build = job_block(output, "build_image", "image=nvidia-maskrcnn")
    assert f"output: {NVIDIA_IMAGE}, results/container/nvidia-maskrcnn.json" in build
    assert "input: containers/nvidia-maskrcnn.def" in build
    weights = shell_of(job_block(output, "fetch_weights", "file=R-50.pkl"))
    assert weights.startswith(
        "python scripts/fetch.py --url "
        "https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/MSRA/R-50.pkl "
        "--trust-on-first-use weights.lock.json --out data/weights/R-50.pkl"
    )
    prepare = job_block(output, "prepare_nvidia")
    assert "input: results/container/maskrcnn.sif, results/container/maskrcnn.json" in prepare
    assert "data/coco2017/dataset.json" in prepare
    train = job_block(output, "train_nvidia")
    inputs = re.search(r"input: (.*)", train).group(1).split(", ")
    assert set(inputs) == {
        NVIDIA_IMAGE,
        "results/container/nvidia-maskrcnn.json",
        "data/coco2017/dataset.json",
        "data/coco2017/validation.json",
        "results/r50_fpn_1x_nvidia/train/nvidia_paths_catalog.py",
        "data/weights/R-50.pkl",
        *code_inputs(REPO, "scripts/nvidia_attempt.py"),
    }
    assert "resources: tmpdir=/tmp, runtime=720, gpu=8, mem_mb=256000" in train
    metrics = job_block(output, "nvidia_metrics")
    assert "results/r50_fpn_1x_nvidia/train/nvidia/model_final.pth" in metrics
    assert "output: results/r50_fpn_1x_nvidia/train/metrics.jsonl" in metrics
    test = job_block(output, "test_nvidia")
    assert "output: results/r50_fpn_1x_nvidia/eval/val/nvidia" in test
    predictions = job_block(output, "nvidia_predictions")
    assert "output: results/r50_fpn_1x_nvidia/eval/val/predictions.json" in predictions
    evaluate = job_block(output, "evaluate", "run=r50_fpn_1x_nvidia")
    assert "python scripts/evaluate.py" in shell_of(evaluate)
    compare = shell_of(job_block(output, "compare"))
    assert '"r50_fpn_1x_nvidia": {"dataset": "coco2017", "engine": "nvidia"' in compare


def test_the_exact_training_command(coco_plan: tuple[Path, str]) -> None:
    workdir, output = coco_plan
    run = "r50_fpn_1x_nvidia"
    command = [word.replace("results/nv/", f"results/{run}/") for word in RECIPE_COMMAND]
    in_image = (
        f"apptainer exec --home {workdir} --nv --bind {workdir}/data/coco2017:/datasets/data:ro"
        f" {NVIDIA_IMAGE} env -u PYTHONPATH"
    )
    shell = shell_of(job_block(output, "train_nvidia"))
    log = f"results/logs/train_nvidia/{run}.log"
    assert shell == (
        f"python scripts/nvidia_attempt.py --train-dir results/{run}/train/nvidia"
        f" --summary results/{run}/train/nvidia/dllogger.json >> {log} 2>&1"
        f" && {in_image} {shlex.join(command)} >> {log} 2>&1"
    )
    assert shlex.join(command) == (
        "torchrun --standalone --nnodes=1 --nproc_per_node=8"
        " /workspace/object_detection/tools/train_net.py"
        " --config-file /workspace/object_detection/configs/e2e_mask_rcnn_R_50_FPN_1x.yaml"
        f" --skip-test --json-summary results/{run}/train/nvidia/dllogger.json"
        " DTYPE float16 NHWC True DATALOADER.HYBRID True SOLVER.BASE_LR 0.12"
        " SOLVER.IMS_PER_BATCH 96 SOLVER.MAX_ITER 16667 SOLVER.STEPS '(12000, 16000)'"
        " SOLVER.GAMMA 0.1 SOLVER.WARMUP_ITERS 800 SOLVER.WARMUP_FACTOR 0.0001"
        " SOLVER.WARMUP_METHOD mlperf_linear SOLVER.MOMENTUM 0.9 SOLVER.WEIGHT_DECAY 0.0001"
        " SOLVER.WEIGHT_DECAY_BIAS 0 SOLVER.BIAS_LR_FACTOR 2 SOLVER.CHECKPOINT_PERIOD 2500"
        " DATALOADER.NUM_WORKERS 4 DATALOADER.ASPECT_RATIO_GROUPING True"
        " DATALOADER.SIZE_DIVISIBILITY 32 INPUT.MIN_SIZE_TRAIN 800 INPUT.MAX_SIZE_TRAIN 1333"
        " MODEL.ROI_BOX_HEAD.NUM_CLASSES 81 MODEL.WEIGHT data/weights/R-50.pkl"
        f" PATHS_CATALOG results/{run}/train/nvidia_paths_catalog.py"
        """ DATASETS.TRAIN '("coco_train",)' DATASETS.TEST '("coco_val",)'"""
        f" OUTPUT_DIR results/{run}/train/nvidia"
    )
    test = shell_of(job_block(output, "test_nvidia"))
    assert f"{in_image} torchrun --standalone --nnodes=1 --nproc_per_node=8" in test
    assert "/workspace/object_detection/tools/test_net.py" in test


def test_without_use_singularity_it_stops_before_any_job(tmp_path: Path) -> None:
    workdir = workflow_copy(tmp_path / "wf", config=REPO / "config.yaml")
    result = snakemake(
        workdir,
        Apptainer(tmp_path).env(),
        *("-n", "--configfile", "config.yaml", "configs/nvidia.yaml"),
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "runs.r50_fpn_1x_nvidia.engine: nvidia runs NVIDIA's own code" in output
    assert "run with --use-singularity" in output
    assert not (workdir / "results").exists() and not (workdir / "data").exists()


# --- the whole chain, with stand-ins --------------------------------------------------------

WEIGHTS = b"Detectron R-50.pkl stand-in " * 1000


class Run(NamedTuple):
    workdir: Path
    apptainer: Apptainer
    env: dict[str, str]
    output: str


def tiny_nvidia_config(weights: Path) -> dict:
    """The tiny dataset (4 shapes: NUM_CLASSES 5) and one run of engine nvidia on one GPU."""
    config = yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text())
    config["runs"] = {
        "nv": {
            "dataset": "tiny",
            "engine": "nvidia",
            "gpus": 1,
            "solver": {"ims_per_gpu": 2, "max_iter": 60},
            "checkpoint": {"period": 20},
            "test": {"ims_per_batch": 1},
            "nvidia": {
                "num_classes": 5,
                "benchmark": {"train_iterations": 20, "inference_batch_sizes": [1]},
            },
        }
    }
    config["weights"] = {"R-50.pkl": {"url": weights.as_uri(), "trust_on_first_use": True}}
    return config


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The pipeline run once on the tiny config with engine nvidia; NVIDIA's training fails
    once after iteration 40 (a checkpoint), so the retry resumes it."""
    root = tmp_path_factory.mktemp("nvidia_chain")
    weights = root / "R-50.pkl"
    weights.write_bytes(WEIGHTS)
    workdir = workflow_copy(root / "wf", config=None)
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_nvidia_config(weights)))
    apptainer = Apptainer(root)
    (apptainer.bin / "torchrun").symlink_to(NVIDIA_DOUBLE)
    env = apptainer.env()
    env["NVIDIA_DOUBLE_FAIL_AT"] = "40"
    benchmarks = [f"results/nv/benchmark/nvidia_{kind}.json" for kind in ("train", "inference")]
    result = snakemake(
        workdir, env, "all", *benchmarks, "--use-singularity", "--apptainer-args=--nv"
    )
    return Run(workdir, apptainer, env, result.stdout + result.stderr)


def test_nvidias_image_is_built_with_the_pinned_source(chain: Run) -> None:
    builds = {argv[-1]: argv for argv in chain.apptainer.calls("build")}
    assert set(builds) == {"containers/maskrcnn.def", "containers/nvidia-maskrcnn.def"}
    nvidia = builds["containers/nvidia-maskrcnn.def"]
    assert {nvidia[i + 1] for i, arg in enumerate(nvidia) if arg == "--build-arg"} == {
        "BASE_IMAGE=nvcr.io/nvidia/pytorch:21.12-py3",
        "DLE_REPOSITORY=https://github.com/NVIDIA/DeepLearningExamples",
        "DLE_COMMIT=9a36fc3197bfab7536e0e46c360716973f3f2f40",
    }
    pipeline = builds["containers/maskrcnn.def"]
    assert [arg for arg in pipeline if arg.startswith("BASE_IMAGE=")] == [
        "BASE_IMAGE=nvcr.io/nvidia/pytorch:26.06-py3"
    ]


def test_nvidias_code_runs_in_its_image_with_the_dataset_bound(chain: Run) -> None:
    runs = [argv for argv in chain.apptainer.calls("exec") if NVIDIA_IMAGE in argv]
    scripts = [argv[argv.index("torchrun") + 4].rsplit("/", 1)[1] for argv in runs]
    # the training failed once and resumed; the two benchmarks ran in between or after
    assert sorted(scripts) == ["test_net.py"] * 2 + ["train_net.py"] * 3
    for argv in runs:
        image = argv.index(NVIDIA_IMAGE)
        assert (
            argv[1:image]
            == [
                *("exec", "--home", str(chain.workdir), "--nv"),
                *("--bind", f"{chain.workdir}/data/tiny:/datasets/data:ro"),
            ][1:]
        )
        assert argv[image + 1 : image + 5] == ["env", "-u", "PYTHONPATH", "torchrun"]
    others = [argv for argv in chain.apptainer.calls("exec") if NVIDIA_IMAGE not in argv]
    assert all("results/container/maskrcnn.sif" in argv for argv in others)


def test_the_training_resumed_and_its_log_became_metrics_jsonl(chain: Run) -> None:
    train = chain.workdir / "results" / "nv" / "train"
    attempts = sorted(p.name for p in (train / "nvidia").glob("dllogger.json*"))
    assert len(attempts) == 2 and attempts[0] == "dllogger.json"  # + the first, renamed
    log = read_metrics_log(train / "metrics.jsonl")
    assert log.training["iteration"].tolist() == [20, 40, 60]
    assert log.training["loss"].tolist() == pytest.approx([0.1, 0.05, 2 / 60], abs=1e-4)
    assert log.training["seconds"].is_monotonic_increasing
    assert log.training["images_per_s"].tolist() == [4.0, 4.0, 4.0]  # 2 images / 0.5 s
    provenance = json.loads((train / "provenance.json").read_text())
    digest = hashlib.sha256((chain.workdir / NVIDIA_IMAGE).read_bytes()).hexdigest()
    assert provenance["container"]["digest"] == f"sha256:{digest}"
    assert provenance["container"]["build_args"]["DLE_COMMIT"] == (
        "9a36fc3197bfab7536e0e46c360716973f3f2f40"
    )
    assert provenance["engine"] == "nvidia" and provenance["iterations"] == 60
    assert provenance["settings"]["command"][4].endswith("tools/train_net.py")


def test_the_weights_were_trusted_on_first_use(chain: Run) -> None:
    lock = json.loads((chain.workdir / "weights.lock.json").read_text())
    assert lock["R-50.pkl"]["sha256"] == hashlib.sha256(WEIGHTS).hexdigest()


def test_their_detections_are_evaluated_reported_and_compared_like_ours(chain: Run) -> None:
    run = chain.workdir / "results" / "nv"
    truth = json.loads((chain.workdir / "data/tiny/annotations/val.json").read_text())
    predictions = json.loads((run / "eval/val/predictions.json").read_text())
    assert len(predictions) == sum(not a["iscrowd"] for a in truth["annotations"])
    metrics = json.loads((run / "eval/val/metrics.json").read_text())
    # the stand-in "predicts" the ground truth: our evaluation of their files gives 1.0
    assert metrics["bbox"]["AP"] == pytest.approx(1.0) and metrics["segm"]["AP"] == pytest.approx(
        1.0
    )
    reported = json.loads((run / "eval/val/nvidia_eval.json").read_text())
    assert reported["reported"] == {"bbox": {"AP": 1.0}, "segm": {"AP": 1.0}}
    assert (run / "report" / "summary.md").stat().st_size > 0
    comparison = pd.read_csv(chain.workdir / "results/report/comparison.csv")
    assert comparison.loc[0, "engine"] == "nvidia" and comparison.loc[0, "iterations"] == 60


def test_what_reruns_after_a_change(chain: Run, tmp_path: Path) -> None:
    workdir = tmp_path / "wf"
    shutil.copytree(chain.workdir, workdir, symlinks=True)

    def plan(*args: str) -> set[str]:
        result = snakemake(workdir, chain.env, "-n", "--use-singularity", *args)
        return set(job_counts(result.stdout + result.stderr))

    assert plan("--apptainer-args=--nv --bind /tmp") == set()  # how it runs: no rerun
    script = workdir / "scripts" / "nvidia_metrics.py"
    script.write_text(script.read_text() + "\n# edited\n")
    assert plan() == {"nvidia_metrics", "report", "compare"}
    shutil.copy2(REPO / "scripts" / "nvidia_metrics.py", script)  # as it was, mtime too
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["runs"]["nv"]["test"]["score_thresh"] = 0.1
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert plan() == {"test_nvidia", "nvidia_predictions", "evaluate", "report", "compare"}
    config["runs"]["nv"]["solver"]["base_lr"] = 0.24
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert plan() == {
        "prepare_nvidia",
        "train_nvidia",
        "nvidia_metrics",
        "test_nvidia",
        "nvidia_predictions",
        "evaluate",
        "report",
        "compare",
    }


def test_their_benchmarks_in_the_shape_of_ours(chain: Run) -> None:
    bench = chain.workdir / "results" / "nv" / "benchmark"
    train = json.loads((bench / "nvidia_train.json").read_text())
    assert (train["engine"], train["iterations"], train["batch_size"], train["gpus"]) == (
        "nvidia",
        20,
        2,
        1,
    )
    assert train["images_per_s"] > 0 and train["precision"] == "fp16"
    inference = json.loads((bench / "nvidia_inference.json").read_text())
    (result,) = inference["results"]
    assert result["batch_size"] == 1 and result["latency_ms_mean"] == 50.0
    assert result["images_per_s_end_to_end"] == pytest.approx(12.0)  # 6 val images / 0.5 s
