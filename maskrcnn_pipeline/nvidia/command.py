"""A run's settings as NVIDIA's config overrides, and the exact commands that run their code.

NVIDIA's scripts (pytorch/scripts/train.sh, eval.sh, train_benchmark.sh,
inference_benchmark.sh) start ``tools/train_net.py`` or ``tools/test_net.py`` with
``--config-file`` and a list of ``KEY value`` overrides that yacs merges into their defaults
(maskrcnn_benchmark/config/defaults.py). The pipeline does the same, with every value taken
from the run's config, so the command line is the complete record of what ran and a
changed setting reruns the job (it is the rule's ``params``).

Their code reads a value only through yacs, which refuses one of another type than the
default (``2.0`` where the default is the int ``2``): :data:`KEY_TYPES` holds the default's
type of every key set here, and :func:`format_value` writes values to match. Settings their
code has no place for are refused by :func:`problems` when the config is validated, rather
than ignored.

No torch here: the Snakefile imports this module.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

#: Where their Dockerfile puts their code (WORKDIR), and so does our definition.
SOURCE_DIR = "/workspace/object_detection"
#: Where their catalog (paths_catalog.py: DATA_DIR "/datasets" + "data/...") expects the data;
#: the jobs bind the run's data/<dataset>/ there.
DATA_MOUNT = "/datasets/data"
#: Our precision names -> their DTYPE (float16 is AMP: autocast + GradScaler in trainer.py).
DTYPES = {"fp16": "float16", "fp32": "float32"}
#: Keys whose value the pipeline decides (paths, datasets, weights): not for nvidia.overrides.
MANAGED_KEYS = ("OUTPUT_DIR", "PATHS_CATALOG", "DATASETS.TRAIN", "DATASETS.TEST", "MODEL.WEIGHT")

#: The type of NVIDIA's default for every key the pipeline sets (defaults.py at the pinned
#: commit). yacs casts only between list and tuple; an int key refuses a float and back.
KEY_TYPES: dict[str, type] = {
    "DTYPE": str,
    "NHWC": bool,
    "DATALOADER.HYBRID": bool,
    "DATALOADER.NUM_WORKERS": int,
    "DATALOADER.ASPECT_RATIO_GROUPING": bool,
    "DATALOADER.SIZE_DIVISIBILITY": int,
    "SOLVER.BASE_LR": float,
    "SOLVER.IMS_PER_BATCH": int,
    "SOLVER.MAX_ITER": int,
    "SOLVER.STEPS": tuple,
    "SOLVER.GAMMA": float,
    "SOLVER.WARMUP_ITERS": int,
    "SOLVER.WARMUP_FACTOR": float,
    "SOLVER.WARMUP_METHOD": str,
    "SOLVER.MOMENTUM": float,
    "SOLVER.WEIGHT_DECAY": float,
    "SOLVER.WEIGHT_DECAY_BIAS": int,
    "SOLVER.BIAS_LR_FACTOR": int,
    "SOLVER.CHECKPOINT_PERIOD": int,
    "INPUT.MIN_SIZE_TRAIN": int,
    "INPUT.MAX_SIZE_TRAIN": int,
    "INPUT.MIN_SIZE_TEST": int,
    "INPUT.MAX_SIZE_TEST": int,
    "TEST.IMS_PER_BATCH": int,
    "MODEL.ROI_HEADS.SCORE_THRESH": float,
    "MODEL.ROI_HEADS.NMS": float,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG": int,
    "MODEL.ROI_BOX_HEAD.NUM_CLASSES": int,
    "MODEL.WEIGHT": str,
    "PATHS_CATALOG": str,
    "DATASETS.TRAIN": tuple,
    "DATASETS.TEST": tuple,
    "OUTPUT_DIR": str,
}

#: The run settings that reach NVIDIA's code (a whole section when the path has one part).
#: Any other setting must keep its default: their config file decides the model, and their
#: trainer has no seed, periodic evaluation of ours, flips or other optimizers.
MAPPED: frozenset[tuple[str, ...]] = frozenset(
    {
        ("dataset",),
        ("train_split",),
        ("eval_split",),
        ("engine",),
        ("nvidia",),
        ("gpus",),
        ("nodes",),
        ("threads",),
        ("resources",),
        ("precision",),
        ("channels_last",),
        ("test",),
        ("checkpoint", "period"),
        ("dataloader", "workers"),
        ("dataloader", "aspect_ratio_grouping"),
        ("input", "min_size_train"),
        ("input", "max_size_train"),
        ("input", "size_divisibility"),
        *(
            ("solver", key)
            for key in (
                "optimizer",
                "scheduler",
                "ims_per_gpu",
                "base_lr",
                "reference_batch_size",
                "max_iter",
                "steps",
                "gamma",
                "warmup_iters",
                "warmup_factor",
                "warmup_method",
                "momentum",
                "weight_decay",
                "weight_decay_bias",
                "bias_lr_factor",
            )
        ),
    }
)

Override = tuple[str, Any]


# --- where things are ---------------------------------------------------------------------


def catalog_name(split: str) -> str:
    """The name a split is registered under: their catalog builds a COCO dataset only for
    names that contain "coco" (DatasetCatalog.get), whatever the data is."""
    return f"coco_{split}"


def source_path(path: str) -> str:
    """A path in their source folder (configs/...), or an absolute path as it is."""
    return path if posixpath.isabs(path) else f"{SOURCE_DIR}/{path}"


def train_dir(run: str) -> str:
    """Their OUTPUT_DIR: checkpoints, last_checkpoint, log.txt, model_final.pth. Not a declared
    folder of the rule, so a failed or preempted job keeps its checkpoints to resume from."""
    return f"results/{run}/train/nvidia"


def train_summary(run: str) -> str:
    """--json-summary of the training: their dllogger lines (earlier attempts beside it)."""
    return f"{train_dir(run)}/dllogger.json"


def catalog_file(run: str) -> str:
    """The generated paths_catalog.py of a run (their PATHS_CATALOG)."""
    return f"results/{run}/train/nvidia_paths_catalog.py"


def eval_dir(run: str, split: str) -> str:
    """test_net.py's OUTPUT_DIR for one split; it writes inference/<dataset name>/ there."""
    return f"results/{run}/eval/{split}/nvidia"


def eval_results(run: str, split: str, iou_type: str) -> str:
    """Where test_net.py's evaluation writes its COCO results (bbox.json, segm.json)."""
    return f"{eval_dir(run, split)}/inference/{catalog_name(split)}/{iou_type}.json"


def benchmark_dir(run: str, kind: str) -> str:
    return f"results/{run}/benchmark/nvidia_{kind}"


def model_final(run: str) -> str:
    return f"{train_dir(run)}/model_final.pth"


# --- values as yacs wants them --------------------------------------------------------------


def format_value(value: Any, kind: type | None = None) -> str:
    """One override value as text that yacs's literal_eval reads back with type ``kind``.

    ``kind`` None (a user's override of a key we do not set) keeps the YAML value's type.
    """
    if kind is int:
        if isinstance(value, bool) or not float(value).is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return str(int(value))
    if kind is float:
        return repr(float(value))
    if isinstance(value, list | tuple):
        # strings in double quotes, as NVIDIA's scripts write them: ("coco_2017_val",)
        items = [
            json.dumps(item) if isinstance(item, str) else format_value(item) for item in value
        ]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, bool | int | float):
        return repr(value)
    return str(value)


def _names(splits: Sequence[str]) -> tuple[str, ...]:
    return tuple(catalog_name(split) for split in splits)


def format_overrides(overrides: Sequence[Override]) -> list[str]:
    """``KEY value KEY value ...`` as command-line words (the shell quotes them)."""
    words: list[str] = []
    for key, value in overrides:
        words += [key, format_value(value, KEY_TYPES.get(key))]
    return words


# --- the overrides ---------------------------------------------------------------------------


def global_batch(run: Mapping[str, Any]) -> int:
    """SOLVER.IMS_PER_BATCH is global in their code: images per GPU x GPUs."""
    return run["solver"]["ims_per_gpu"] * run["gpus"]


def lr_scale(run: Mapping[str, Any]) -> float:
    """The linear scaling rule, as engine torchvision applies it (train/schedule.py scaled_lr)."""
    return global_batch(run) / run["solver"]["reference_batch_size"]


def _precision(run: Mapping[str, Any], nvidia: Mapping[str, Any]) -> list[Override]:
    """train.sh's three switches, first, as train.sh writes them."""
    return [
        ("DTYPE", DTYPES[run["precision"]]),
        ("NHWC", run["channels_last"]),
        ("DATALOADER.HYBRID", nvidia["hybrid_dataloader"]),
    ]


def _solver(run: Mapping[str, Any]) -> list[Override]:
    """The recipe. Our mlperf_linear warmup_factor is scaled with the LR (solver.Schedule);
    theirs is absolute, so the scaled value is passed and both engines warm up alike."""
    solver = run["solver"]
    warmup_factor = solver["warmup_factor"]
    if solver["warmup_method"] == "mlperf_linear":
        warmup_factor *= lr_scale(run)
    return [
        ("SOLVER.BASE_LR", solver["base_lr"] * global_batch(run) / solver["reference_batch_size"]),
        ("SOLVER.IMS_PER_BATCH", global_batch(run)),
        ("SOLVER.MAX_ITER", solver["max_iter"]),
        ("SOLVER.STEPS", tuple(solver["steps"])),
        ("SOLVER.GAMMA", solver["gamma"]),
        ("SOLVER.WARMUP_ITERS", solver["warmup_iters"]),
        ("SOLVER.WARMUP_FACTOR", warmup_factor),
        ("SOLVER.WARMUP_METHOD", solver["warmup_method"]),
        ("SOLVER.MOMENTUM", solver["momentum"]),
        ("SOLVER.WEIGHT_DECAY", solver["weight_decay"]),
        ("SOLVER.WEIGHT_DECAY_BIAS", solver["weight_decay_bias"]),
        ("SOLVER.BIAS_LR_FACTOR", solver["bias_lr_factor"]),
        ("SOLVER.CHECKPOINT_PERIOD", run["checkpoint"]["period"]),
    ]


def _data(run: Mapping[str, Any]) -> list[Override]:
    return [
        ("DATALOADER.NUM_WORKERS", run["dataloader"]["workers"]),
        ("DATALOADER.ASPECT_RATIO_GROUPING", run["dataloader"]["aspect_ratio_grouping"]),
        ("DATALOADER.SIZE_DIVISIBILITY", run["input"]["size_divisibility"]),
        ("INPUT.MIN_SIZE_TRAIN", run["input"]["min_size_train"][0]),
        ("INPUT.MAX_SIZE_TRAIN", run["input"]["max_size_train"]),
    ]


def _test(run: Mapping[str, Any]) -> list[Override]:
    test = run["test"]
    return [
        ("TEST.IMS_PER_BATCH", test["ims_per_batch"]),
        ("INPUT.MIN_SIZE_TEST", test["min_size"]),
        ("INPUT.MAX_SIZE_TEST", test["max_size"]),
        ("MODEL.ROI_HEADS.SCORE_THRESH", test["score_thresh"]),
        ("MODEL.ROI_HEADS.NMS", test["nms_thresh"]),
        ("MODEL.ROI_HEADS.DETECTIONS_PER_IMG", test["detections_per_img"]),
    ]


def _user(nvidia: Mapping[str, Any]) -> list[Override]:
    return list(nvidia["overrides"].items())


def training_overrides(name: str, run: Mapping[str, Any]) -> list[Override]:
    """Everything train_net.py is told, in the order of the command line."""
    nvidia = run["nvidia"]
    return [
        *_precision(run, nvidia),
        *_solver(run),
        *_data(run),
        ("MODEL.ROI_BOX_HEAD.NUM_CLASSES", nvidia["num_classes"]),
        ("MODEL.WEIGHT", nvidia["weights"]),
        ("PATHS_CATALOG", catalog_file(name)),
        ("DATASETS.TRAIN", _names([run["train_split"]])),
        ("DATASETS.TEST", _names([run["eval_split"]])),
        *_user(nvidia),
        ("OUTPUT_DIR", train_dir(name)),
    ]


def test_overrides(
    name: str, run: Mapping[str, Any], split: str, *, output_dir: str | None = None
) -> list[Override]:
    """Everything test_net.py is told: the trained weights, the test settings, one split."""
    nvidia = run["nvidia"]
    return [
        *_precision(run, nvidia),
        ("DATALOADER.SIZE_DIVISIBILITY", run["input"]["size_divisibility"]),
        *_test(run),
        ("MODEL.ROI_BOX_HEAD.NUM_CLASSES", nvidia["num_classes"]),
        ("MODEL.WEIGHT", model_final(name)),
        ("PATHS_CATALOG", catalog_file(name)),
        ("DATASETS.TEST", _names([split])),
        *_user(nvidia),
        ("OUTPUT_DIR", output_dir or eval_dir(name, split)),
    ]


def _replace(overrides: Sequence[Override], **values: Any) -> list[Override]:
    """``overrides`` with some keys' values replaced (keys given with _ for .)."""
    replaced = {key.replace("__", "."): value for key, value in values.items()}
    return [(key, replaced.get(key, value)) for key, value in overrides]


# --- the commands ----------------------------------------------------------------------------


def torchrun(gpus: int, script: str) -> list[str]:
    """One process per GPU on this node. --standalone picks a free rendezvous port, so two jobs
    on one node do not collide as torch.distributed.launch's fixed port 29500 would."""
    return [
        "torchrun",
        "--standalone",
        "--nnodes=1",
        f"--nproc_per_node={gpus}",
        f"{SOURCE_DIR}/tools/{script}",
    ]


def train_command(name: str, run: Mapping[str, Any]) -> list[str]:
    """train.sh's command for this run; --skip-test because evaluation is its own job."""
    return [
        *torchrun(run["gpus"], "train_net.py"),
        "--config-file",
        source_path(run["nvidia"]["config_file"]),
        "--skip-test",
        "--json-summary",
        train_summary(name),
        *format_overrides(training_overrides(name, run)),
    ]


def test_command(name: str, run: Mapping[str, Any], split: str) -> list[str]:
    """eval.sh's command: inference on one split and NVIDIA's own COCO evaluation, which writes
    the bbox.json and segm.json our evaluation reads."""
    return [
        *torchrun(run["gpus"], "test_net.py"),
        "--config-file",
        source_path(run["nvidia"]["config_file"]),
        "--json-summary",
        f"{eval_dir(name, split)}/dllogger.json",
        *format_overrides(test_overrides(name, run, split)),
    ]


def train_benchmark_command(name: str, run: Mapping[str, Any]) -> list[str]:
    """train_benchmark.sh: the run's training for benchmark.train_iterations iterations."""
    out = benchmark_dir(name, "train")
    overrides = _replace(
        training_overrides(name, run),
        SOLVER__MAX_ITER=run["nvidia"]["benchmark"]["train_iterations"],
        OUTPUT_DIR=out,
    )
    return [
        *torchrun(run["gpus"], "train_net.py"),
        "--config-file",
        source_path(run["nvidia"]["config_file"]),
        "--skip-test",
        "--json-summary",
        f"{out}/dllogger.json",
        *format_overrides(overrides),
    ]


def inference_benchmark_command(name: str, run: Mapping[str, Any], batch_size: int) -> list[str]:
    """inference_benchmark.sh: one GPU, --skip-eval, TEST.IMS_PER_BATCH = ``batch_size``, the
    trained weights, on the run's eval split."""
    out = f"{benchmark_dir(name, 'inference')}/bs{batch_size}"
    overrides = _replace(
        test_overrides(name, run, run["eval_split"], output_dir=out),
        TEST__IMS_PER_BATCH=batch_size,
    )
    return [
        *torchrun(1, "test_net.py"),
        "--config-file",
        source_path(run["nvidia"]["config_file"]),
        "--skip-eval",
        "--json-summary",
        f"{out}/dllogger.json",
        *format_overrides(overrides),
    ]


# --- what their code cannot do -----------------------------------------------------------------


def _leaves(settings: Mapping[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in settings.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key)


def _get(settings: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        settings = settings[key]
    return settings


def _unmapped(run: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Settings changed from their default that NVIDIA's code would never see."""
    changed = []
    for path in _leaves(defaults):
        if any(path[:length] in MAPPED for length in range(1, len(path) + 1)):
            continue
        if _get(run, path) != _get(defaults, path):
            changed.append(path)
    return changed


def problems(name: str, run: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """Why NVIDIA's code cannot run ``run`` as configured, one line per key (none: it can).

    ``defaults`` is a run with nothing but the schema's defaults.
    """
    where = f"runs.{name}"
    solver = run["solver"]
    found = []
    if run["nodes"] != 1:
        found.append(
            f"{where}.nodes: engine nvidia trains on one node (NVIDIA's scripts start one "
            "torchrun); set nodes: 1, or engine: torchvision for several nodes"
        )
    if run["gpus"] < 1:
        found.append(f"{where}.gpus: engine nvidia needs GPUs (NVIDIA's code is CUDA only)")
    if run["precision"] not in DTYPES:
        found.append(
            f"{where}.precision: {run['precision']!r} has no DTYPE in NVIDIA's code (float16 "
            f"or float32); use one of {sorted(DTYPES)}"
        )
    for key, allowed in (("optimizer", "sgd"), ("scheduler", "multistep")):
        if solver[key] != allowed:
            found.append(
                f"{where}.solver.{key}: NVIDIA's code has only {allowed!r}; set {allowed!r} "
                "or use engine: torchvision"
            )
    if len(run["input"]["min_size_train"]) != 1:
        found.append(
            f"{where}.input.min_size_train: NVIDIA's INPUT.MIN_SIZE_TRAIN is one size; give one"
        )
    for key in ("bias_lr_factor", "weight_decay_bias"):
        if not float(solver[key]).is_integer():
            found.append(
                f"{where}.solver.{key}: NVIDIA's SOLVER.{key.upper()} is an integer (its default "
                f"type; yacs refuses {solver[key]!r}); use a whole number"
            )
    if run["gpus"] >= 1 and run["test"]["ims_per_batch"] % run["gpus"]:
        found.append(
            f"{where}.test.ims_per_batch: {run['test']['ims_per_batch']} images cannot be split "
            f"over {run['gpus']} GPUs (NVIDIA's TEST.IMS_PER_BATCH is global); use a multiple"
        )
    for key in run["nvidia"]["overrides"]:
        if key in MANAGED_KEYS:
            found.append(
                f"{where}.nvidia.overrides.{key}: set by the pipeline (paths, datasets, "
                "weights); use runs.<name>.dataset, *_split or nvidia.weights instead"
            )
        elif key in KEY_TYPES:
            found.append(
                f"{where}.nvidia.overrides.{key}: set from the run's own settings (see "
                "maskrcnn_pipeline/nvidia/command.py); change that setting instead"
            )
    for path in _unmapped(run, defaults):
        found.append(
            f"{where}.{'.'.join(path)}: not used by engine nvidia (the model is NVIDIA's "
            f"config file, runs.{name}.nvidia.config_file); remove it, or set the NVIDIA key "
            f"in runs.{name}.nvidia.overrides"
        )
    return found
