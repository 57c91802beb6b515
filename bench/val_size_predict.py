"""Benchmark: predict and evaluate a val2017-size split (5000 images) on one device.

The issue's GPU goal is val2017 predicted and evaluated in under 3 minutes on one GPU. No
COCO download on a benchmark machine, so the split is made here: --unique synthetic shapes
images (--image-size, square) written once as JPEGs, linked --images times under new names
and ids, with their annotations repeated, so that decoding, the network, the paste, the
encoding and the COCO evaluation all see a split of that size. The model is a run's model
with random weights at the run's test settings and score_thresh 0 (detections_per_img
detections on every image: the evaluation's worst case). The project's path runs over the
whole split (DataLoader decoding from files, encoding beside the network); the baseline,
torchvision's stock path, over the first --baseline-images images in the same process.

    python bench/val_size_predict.py --config config.yaml --run r50_fpn_1x \\
        --set model.backbone_weights=null --set model.norm=bn --set precision=bf16

The last line printed is one JSON object: seconds to predict, to evaluate and in total,
images/s of both paths and their ratio.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from maskrcnn_pipeline.cli import emit_figures, parser_from_doc, run_cli  # noqa: E402
from maskrcnn_pipeline.data.categories import Categories  # noqa: E402
from maskrcnn_pipeline.data.synthetic import generate_synthetic_dataset  # noqa: E402
from maskrcnn_pipeline.evaluation import evaluate_coco  # noqa: E402
from maskrcnn_pipeline.inference.predict import (  # noqa: E402
    Predictor,
    images_from_annotations,
    predict_entries,
)
from maskrcnn_pipeline.model.build import build_model, configure_inference  # noqa: E402
from maskrcnn_pipeline.workflow.settings_args import (  # noqa: E402
    add_override_arguments,
    add_settings_arguments,
    apply_overrides,
    resolve_settings,
)

GOAL_TOTAL_S = 180.0


def parse_args(argv: Sequence[str] | None) -> Any:
    parser = parser_from_doc(__doc__)
    add_settings_arguments(parser, kind="run")
    add_override_arguments(parser)
    parser.add_argument("--images", type=int, default=5000, help="split size (val2017: 5000)")
    parser.add_argument("--unique", type=int, default=100, help="distinct images (100)")
    parser.add_argument("--image-size", type=int, default=640, help="image side, px (640)")
    parser.add_argument("--baseline-images", type=int, default=100, help="stock path images")
    parser.add_argument("--workers", type=int, default=8, help="image-decoding processes (8)")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    parser.set_defaults(config=str(REPO / "configs" / "demo.yaml"), run="demo")
    return parser.parse_args(argv)


def make_split(root: Path, images: int, unique: int, image_size: int) -> Path:
    """A split of ``images`` entries made of ``unique`` generated images (linked), with their
    annotations repeated under the new image ids; its annotation file."""
    generate_synthetic_dataset(
        root,
        splits={"val": unique},
        image_size=image_size,
        seed=5,
        max_objects=6,
        min_object_size=max(8, image_size // 20),
        max_object_size=image_size // 2,
    )
    source = json.loads((root / "annotations" / "val.json").read_text())
    folder = root / "split"
    folder.mkdir()
    dataset: dict[str, Any] = {"images": [], "annotations": [], "categories": source["categories"]}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in source["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    for index in range(images):
        image = source["images"][index % len(source["images"])]
        name = f"{index + 1:06d}.jpg"
        os.link(root / "val" / image["file_name"], folder / name)
        dataset["images"].append({**image, "id": index + 1, "file_name": name})
        for annotation in by_image.get(image["id"], []):
            number = len(dataset["annotations"]) + 1
            dataset["annotations"].append({**annotation, "id": number, "image_id": index + 1})
    path = root / "split.json"
    path.write_text(json.dumps(dataset))
    return path


def make_predictor(settings: dict[str, Any], classes: int, device: torch.device) -> Predictor:
    torch.manual_seed(0)
    model = build_model(settings["model"], num_classes=classes, input_settings=settings["input"])
    configure_inference(model, {**settings["test"], "score_thresh": 0.0})
    model = model.to(device).eval()
    if settings["channels_last"] and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    categories = Categories(tuple(range(1, classes + 1)), ("class",) * classes)
    return Predictor(model, categories, device, settings["precision"])


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    value = function(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return value, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = apply_overrides(resolve_settings(args, kind="run"), args)
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = settings["test"]["ims_per_batch"]
    with tempfile.TemporaryDirectory() as tmp:
        annotations = make_split(Path(tmp), args.images, args.unique, args.image_size)
        entries = images_from_annotations(Path(tmp) / "split", annotations)
        classes = len(json.loads(annotations.read_text())["categories"])
        predictor = make_predictor(settings, classes, device)
        predict_entries(predictor, entries[:batch], batch, 0)  # warm-up (cuDNN, allocator)
        predictor.paste = "torchvision"
        baseline = entries[: args.baseline_images]
        _, stock_s = timed(predict_entries, predictor, baseline, batch, args.workers)
        predictor.paste = "batched"
        results, predict_s = timed(predict_entries, predictor, entries, batch, args.workers)
        _, evaluate_s = timed(evaluate_coco, annotations, results, iou_types=("bbox", "segm"))
    project_rate = len(entries) / predict_s
    stock_rate = len(baseline) / stock_s
    figures = {
        "benchmark": "val_size_predict",
        "device": str(device),
        "precision": predictor.precision,
        "images": len(entries),
        "image_size": args.image_size,
        "ims_per_batch": batch,
        "detections": len(results),
        "predict_s": round(predict_s, 2),
        "evaluate_s": round(evaluate_s, 2),
        "total_s": round(predict_s + evaluate_s, 2),
        "goal_total_s": GOAL_TOTAL_S,
        "images_per_s": round(project_rate, 2),
        "stock_images_per_s": round(stock_rate, 2),
        "speedup": round(project_rate / stock_rate, 2),
    }
    emit_figures(figures, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
