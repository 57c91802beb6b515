"""Engine nvidia without the workflow: the run's settings as NVIDIA's overrides and commands,
what the config refuses, the generated catalog, the checks before training, the predictions.

The workflow around them (dry runs, and a run with stand-ins for Apptainer and NVIDIA's
code) is tests/test_nvidia_workflow.py.
"""

from __future__ import annotations

import ast
import copy
import json
import runpy
import shlex
from pathlib import Path

import pytest
import yaml

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.nvidia import command as nvidia
from maskrcnn_pipeline.nvidia.catalog import (
    FINGERPRINT,
    catalog_entries,
    catalog_source,
    check_num_classes,
    fingerprint,
    set_aside_stale_checkpoints,
)
from maskrcnn_pipeline.nvidia.predictions import merge_results
from maskrcnn_pipeline.workflow.config import validate_config
from tests.support.nvidia import RECIPE_COMMAND, double
from tests.support.paths import REPO
from tests.support.workflow import run_script

WEIGHTS = {"R-50.pkl": {"url": "https://example.org/R-50.pkl", "trust_on_first_use": True}}
BASE = {
    "datasets": {"coco2017": {"source": "synthetic"}},
    "weights": WEIGHTS,
    "runs": {"nv": {"dataset": "coco2017", "engine": "nvidia"}},
}


def run_of(edit=None) -> dict:
    config = copy.deepcopy(BASE)
    if edit:
        edit(config["runs"]["nv"])
    return validate_config(config)["runs"]["nv"]


def problems_of(edit) -> str:
    config = copy.deepcopy(BASE)
    edit(config["runs"]["nv"])
    with pytest.raises(PipelineError) as error:
        validate_config(config)
    return str(error.value)


def test_the_recipe_becomes_train_sh_with_every_setting() -> None:
    assert nvidia.train_command("nv", run_of()) == RECIPE_COMMAND


def test_linear_scaling_and_the_mlperf_warmup_follow_our_engine() -> None:
    run = run_of(lambda r: r.update(gpus=1))
    overrides = dict(nvidia.training_overrides("nv", run))
    assert overrides["SOLVER.IMS_PER_BATCH"] == 12
    assert overrides["SOLVER.BASE_LR"] == pytest.approx(0.12 * 12 / 96)
    # theirs is absolute, ours scales with the LR (maskrcnn_pipeline/train/schedule.py)
    assert overrides["SOLVER.WARMUP_FACTOR"] == pytest.approx(0.0001 * 12 / 96)
    linear = run_of(lambda r: r.update(gpus=1, solver={"warmup_method": "linear"}))
    assert dict(nvidia.training_overrides("nv", linear))["SOLVER.WARMUP_FACTOR"] == 0.0001


def test_values_are_written_as_yacs_reads_them_back_with_nvidias_types() -> None:
    words = nvidia.format_overrides(
        nvidia.training_overrides("nv", run_of(lambda r: r.update(precision="fp32")))
    )
    pairs = dict(zip(words[::2], words[1::2], strict=True))
    assert pairs["DTYPE"] == "float32"
    for key, text in pairs.items():
        double().yacs_value(key, text)  # raises as yacs would on a type mismatch
    assert nvidia.format_value(0, float) == "0.0" and nvidia.format_value(2.0, int) == "2"
    assert nvidia.format_value([12000], tuple) == "(12000,)"
    with pytest.raises(ValueError, match="not a whole number"):
        nvidia.format_value(1.5, int)


def test_evaluation_is_eval_sh_on_the_trained_weights() -> None:
    run = run_of(lambda r: r.update(test={"score_thresh": 0.1, "ims_per_batch": 16}))
    command = nvidia.test_command("nv", run, "val")
    assert command[:8] == [
        "torchrun",
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=8",
        "/workspace/object_detection/tools/test_net.py",
        "--config-file",
        "/workspace/object_detection/configs/e2e_mask_rcnn_R_50_FPN_1x.yaml",
        "--json-summary",
    ]
    text = shlex.join(command)
    assert "MODEL.WEIGHT results/nv/train/nvidia/model_final.pth" in text
    assert "TEST.IMS_PER_BATCH 16" in text and "MODEL.ROI_HEADS.SCORE_THRESH 0.1" in text
    assert text.endswith("OUTPUT_DIR results/nv/eval/val/nvidia")
    assert nvidia.eval_results("nv", "val", "segm") == (
        "results/nv/eval/val/nvidia/inference/coco_val/segm.json"
    )


def test_benchmarks_are_their_scripts_equivalents() -> None:
    run = run_of(lambda r: r.update(nvidia={"benchmark": {"train_iterations": 300}}))
    train = shlex.join(nvidia.train_benchmark_command("nv", run))
    assert "SOLVER.MAX_ITER 300" in train and "--skip-test" in train
    assert "OUTPUT_DIR results/nv/benchmark/nvidia_train" in train
    inference = nvidia.inference_benchmark_command("nv", run, 8)
    assert inference[3] == "--nproc_per_node=1" and "--skip-eval" in inference
    assert "TEST.IMS_PER_BATCH 8" in shlex.join(inference)


def test_overrides_of_the_user_are_appended_before_output_dir() -> None:
    run = run_of(lambda r: r.update(nvidia={"overrides": {"PER_EPOCH_EVAL": True}}))
    command = nvidia.train_command("nv", run)
    assert command[-4:] == ["PER_EPOCH_EVAL", "True", "OUTPUT_DIR", "results/nv/train/nvidia"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: r.update(precision="bf16"), "runs.nv.precision: 'bf16' has no DTYPE"),
        (lambda r: r.update(nodes=2), "runs.nv.nodes: engine nvidia trains on one node"),
        (lambda r: r.update(gpus=0), "runs.nv.gpus: engine nvidia needs GPUs"),
        (lambda r: r.update(solver={"optimizer": "adamw"}), "solver.optimizer: NVIDIA's code"),
        (lambda r: r.update(solver={"scheduler": "cosine"}), "solver.scheduler: NVIDIA's code"),
        (lambda r: r.update(solver={"bias_lr_factor": 1.5}), "BIAS_LR_FACTOR is an integer"),
        (lambda r: r.update(input={"min_size_train": [640, 800]}), "MIN_SIZE_TRAIN is one"),
        (lambda r: r.update(test={"ims_per_batch": 4}), "test.ims_per_batch: 4 images cannot"),
        (lambda r: r.update(model={"backbone": "resnet101"}), "runs.nv.model.backbone: not used"),
        (lambda r: r.update(seed=3), "runs.nv.seed: not used by engine nvidia"),
        (lambda r: r.update(nvidia={"overrides": {"OUTPUT_DIR": "/x"}}), "set by the pipeline"),
        (
            lambda r: r.update(nvidia={"overrides": {"SOLVER.BASE_LR": 0.1}}),
            "set from the run's own settings",
        ),
        (
            lambda r: r.update(nvidia={"weights": "data/weights/other.pkl"}),
            "runs.nv.nvidia.weights: data/weights/other.pkl is fetched from a weights entry",
        ),
    ],
)
def test_what_nvidias_code_cannot_do_is_refused_at_validation(edit, expected: str) -> None:
    assert expected in problems_of(edit)


def test_a_default_run_stays_torchvision_and_inference_needs_it() -> None:
    config = validate_config(
        {"datasets": {"d": {"source": "synthetic"}}, "runs": {"r": {"dataset": "d"}}}
    )
    assert config["runs"]["r"]["engine"] == "torchvision"
    config = copy.deepcopy(BASE)
    config["inference"] = {"photos": {"run": "nv", "images": "data/photos"}}
    with pytest.raises(PipelineError, match=r"inference.photos.run: 'nv' is trained by engine"):
        validate_config(config)


def test_images_built_by_the_workflow_live_in_results_container() -> None:
    config = copy.deepcopy(BASE)
    config["container"] = {"nvidia": {"image": "/scratch/nv.sif"}}
    with pytest.raises(PipelineError, match=r"container.nvidia.image: '/scratch/nv.sif'"):
        validate_config(config)
    config["container"] = {"nvidia": {"image": "/scratch/nv.sif", "build": False}}
    validate_config(config)
    config["container"] = {"nvidia": {"image": "results/container/maskrcnn.sif"}}
    with pytest.raises(PipelineError, match=r"same file name as container\.image"):
        validate_config(config)


def test_the_shipped_nvidia_config_adds_a_run_to_the_default() -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["runs"].update(yaml.safe_load((REPO / "configs" / "nvidia.yaml").read_text())["runs"])
    validated = validate_config(config)
    assert validated["runs"]["r50_fpn_1x_nvidia"]["engine"] == "nvidia"
    assert validated["weights"]["R-50.pkl"]["url"] == (
        "https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/MSRA/R-50.pkl"
    )
    assert validated["container"]["nvidia"]["base"] == "nvcr.io/nvidia/pytorch:21.12-py3"


# --- the catalog ------------------------------------------------------------------------------

SPLITS = {
    "train": {
        "images": "data/coco2017/train2017",
        "annotations": "data/coco2017/annotations/a.json",
    },
    "val": {"images": "data/coco2017/val2017", "annotations": "data/coco2017/annotations/b.json"},
}


def load_catalog(source: str, tmp_path: Path) -> dict:
    path = tmp_path / "paths_catalog.py"
    path.write_text(source)
    return runpy.run_path(str(path))


def test_the_generated_catalog_registers_every_split_under_a_coco_name(tmp_path: Path) -> None:
    entries = catalog_entries("data/coco2017", SPLITS)
    assert entries == {
        "coco_train": {"img_dir": "train2017", "ann_file": "annotations/a.json"},
        "coco_val": {"img_dir": "val2017", "ann_file": "annotations/b.json"},
    }
    module = load_catalog(catalog_source("nv", "coco2017", entries), tmp_path)
    assert module["DatasetCatalog"].get("coco_train") == {
        "factory": "COCODataset",
        "args": {
            "root": "/datasets/data/train2017",
            "ann_file": "/datasets/data/annotations/a.json",
        },
    }
    with pytest.raises(RuntimeError, match=r"coco_test.*has coco_train, coco_val"):
        module["DatasetCatalog"].get("coco_test")
    with pytest.raises(RuntimeError, match="nothing is downloaded at run time"):
        module["ModelCatalog"].get("ImageNetPretrained/MSRA/R-50")
    ast.parse(catalog_source("nv", "coco2017", entries), feature_version=(3, 8))  # their Python


def test_splits_must_be_inside_the_bound_folder() -> None:
    with pytest.raises(PipelineError, match=r"not inside data/coco2017"):
        catalog_entries("data/coco2017", {"x": {"images": "elsewhere", "annotations": "a.json"}})


def test_a_wrong_class_count_stops_before_training() -> None:
    report = {"num_classes": 5, "num_categories": 4}
    check_num_classes("nv", "shapes", report, 5)
    with pytest.raises(PipelineError, match=r"runs.nv.nvidia.num_classes: 5 \(the categories"):
        check_num_classes("nv", "shapes", report, 81)


def test_checkpoints_of_other_settings_are_set_aside(tmp_path: Path) -> None:
    train_dir = tmp_path / "nvidia"
    report = {"splits": {"train": {"annotations_sha256": "a" * 64}}}
    current = fingerprint(["torchrun", "x"], report, "train")
    assert not set_aside_stale_checkpoints(train_dir, current)  # a fresh run
    (train_dir / "model_0002500.pth").write_text("weights")
    assert not set_aside_stale_checkpoints(train_dir, current)  # same settings: resume
    assert (train_dir / "model_0002500.pth").exists()
    changed = fingerprint(["torchrun", "y"], report, "train")
    assert set_aside_stale_checkpoints(train_dir, changed)
    assert (tmp_path / "nvidia.previous" / "model_0002500.pth").exists()
    assert sorted(p.name for p in train_dir.iterdir()) == [FINGERPRINT]
    assert json.loads((train_dir / FINGERPRINT).read_text())["command"] == ["torchrun", "y"]


def test_prepare_cli_writes_the_catalog_and_checks_the_classes(tmp_path: Path) -> None:
    (tmp_path / "validation.json").write_text(json.dumps({"num_classes": 81, "splits": {}}))
    args = [
        "--run",
        "nv",
        "--data-dir",
        "data/coco2017",
        *("--split", "train", *SPLITS["train"].values()),
        *("--split", "val", *SPLITS["val"].values()),
        "--validation",
        str(tmp_path / "validation.json"),
        "--train-split",
        "train",
        "--command",
        json.dumps(RECIPE_COMMAND),
        "--train-dir",
        str(tmp_path / "nvidia"),
        "--catalog",
        str(tmp_path / "catalog.py"),
    ]
    assert run_script("nvidia_prepare.py", [*args, "--num-classes", "81"]).returncode == 0
    assert "coco_val" in (tmp_path / "catalog.py").read_text()
    wrong = run_script("nvidia_prepare.py", [*args, "--num-classes", "5"])
    assert wrong.returncode != 0 and "set runs.nv.nvidia.num_classes: 81" in wrong.stderr
    for script in ("nvidia_prepare", "nvidia_metrics", "nvidia_predictions", "nvidia_benchmark"):
        assert "usage:" in run_script(f"{script}.py", ["--help"]).stdout


# --- predictions ------------------------------------------------------------------------------

RLE = {"size": [4, 4], "counts": "04L4"}


def test_boxes_and_masks_of_the_same_detections_become_one_record() -> None:
    boxes = [{"image_id": 1, "category_id": 3, "score": 0.9, "bbox": [0, 0, 2, 2]}]
    masks = [{"image_id": 1, "category_id": 3, "score": 0.9, "segmentation": RLE}]
    assert merge_results(boxes, masks) == [
        {"image_id": 1, "category_id": 3, "score": 0.9, "bbox": [0, 0, 2, 2], "segmentation": RLE}
    ]
    with pytest.raises(PipelineError, match=r"has 1 detections and segm\.json 0"):
        merge_results(boxes, [])
    other = [{**masks[0], "category_id": 4}]
    with pytest.raises(PipelineError, match=r"detection 0 differs between bbox\.json"):
        merge_results(boxes, other)
    with pytest.raises(PipelineError, match=r"segm.json, detection 0: no segmentation"):
        merge_results(boxes, [{**boxes[0]}])


def test_predictions_cli_writes_ours_and_what_nvidia_reported(tmp_path: Path) -> None:
    folder = tmp_path / "nvidia" / "inference" / "coco_val"
    folder.mkdir(parents=True)
    detection = {"image_id": 7, "category_id": 1, "score": 0.5}
    (folder / "bbox.json").write_text(json.dumps([{**detection, "bbox": [1, 2, 3, 4]}]))
    (folder / "segm.json").write_text(json.dumps([{**detection, "segmentation": RLE}]))
    log = double().Logger(str(tmp_path / "nvidia" / "dllogger.json"))
    log.log((), {"e2e_infer_time": 2.0, "inference_perf_fps": 50.0})
    log.log((), {"BBOX_mAP": 0.3, "MASK_mAP": 0.25})
    log.file.close()
    out, reported = tmp_path / "predictions.json", tmp_path / "nvidia_eval.json"
    args = ["--eval-dir", str(tmp_path / "nvidia"), "--dataset-name", "coco_val"]
    result = run_script(
        "nvidia_predictions.py", [*args, "--out", str(out), "--summary", str(reported)]
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())[0]["segmentation"] == RLE
    summary = json.loads(reported.read_text())
    assert summary["reported"] == {"bbox": {"AP": 0.3}, "segm": {"AP": 0.25}}
    assert summary["summary"]["inference_perf_fps"] == 50.0 and summary["detections"] == 1
