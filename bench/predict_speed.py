"""Benchmark: the project's predict path against torchvision's stock path, in one process.

Same model (a run's model settings with random weights), same synthetic images, same
process. Random weights with score_thresh 0 and detections_per_img N give N detections an
image, the worst case for mask pasting. The two paths alternate batch by batch (a busy
machine slows both alike): first stage by stage with a clock around each stage, the median
per batch counting (model: transform, backbone, RPN, RoI heads; paste: box resize and mask
paste, thresholded on the device for the project; transfer: to the CPU, bytes for the
project, float masks for the stock path; encode: threshold (stock), RLE and JSON), then end
to end for images/s, the best of --repeats passes (the project's encoding beside the next
batch, the stock path's after it, on the main thread). The network runs at the images' size.
Goal on a CPU at 640x480 with 100 detections: everything after the network at least 3x
faster than the stock path.

    python bench/predict_speed.py [--height 480 --width 640 --detections 100]
    python bench/predict_speed.py --config config.yaml --run r50_fpn_1x \\
        --set model.backbone_weights=null --height 800 --width 1333 --batch-size 8

The last line printed is one JSON object: per-path images/s and ms per image of each stage,
the ratios (stock / project), and the share of masks whose RLE is identical on both paths.
"""

from __future__ import annotations

import copy
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from maskrcnn_pipeline.cli import emit_figures, parser_from_doc, run_cli  # noqa: E402
from maskrcnn_pipeline.data.categories import Categories  # noqa: E402
from maskrcnn_pipeline.inference.predict import (  # noqa: E402
    Predictor,
    StageTimes,
    predict_batches,
)
from maskrcnn_pipeline.model.build import build_model, configure_inference  # noqa: E402
from maskrcnn_pipeline.workflow.settings_args import (  # noqa: E402
    add_benchmark_arguments,
    apply_overrides,
    resolve_settings,
)

STAGES = ("model", "paste", "transfer", "encode")
POST_NETWORK = ("paste", "transfer", "encode")
GOAL_POST_NETWORK_SPEEDUP = 3.0
PATHS = {"project": "batched", "stock": "torchvision"}

Batch = tuple[list[int], list[torch.Tensor]]


def parse_args(argv: Sequence[str] | None) -> Any:
    parser = parser_from_doc(__doc__)
    add_benchmark_arguments(parser, iterations=8, warmup=1)
    parser.add_argument("--batch-size", type=int, default=1, help="images per call (1)")
    parser.add_argument("--detections", type=int, default=100, help="detections per image (100)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when there is one)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="end-to-end passes of each path; the best counts (3)"
    )
    parser.set_defaults(config=str(REPO / "configs" / "demo.yaml"), run="demo")
    parser.set_defaults(height=480, width=640)
    args = parser.parse_args(argv)
    args.images = args.iterations  # --iterations: the timed images (batches of --batch-size)
    return args


def make_predictor(args: Any, settings: dict[str, Any], device: torch.device) -> Predictor:
    """The run's model with random weights, at test settings that give N detections."""
    torch.manual_seed(0)
    model = build_model(
        settings["model"], num_classes=args.classes, input_settings=settings["input"]
    )
    test = copy.deepcopy(settings["test"])
    test.update(
        score_thresh=0.0,
        detections_per_img=args.detections,
        min_size=min(args.height, args.width),
        max_size=max(args.height, args.width),
    )
    configure_inference(model, test)
    model = model.to(device).eval()
    if settings["channels_last"] and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    categories = Categories(tuple(range(1, args.classes + 1)), ("class",) * args.classes)
    return Predictor(model, categories, device, settings["precision"])


def make_batches(args: Any, count: int, seed: int) -> list[Batch]:
    generator = torch.Generator().manual_seed(seed)
    shape = (3, args.height, args.width)
    return [
        (
            list(range(first, first + args.batch_size)),
            [torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)]
            * args.batch_size,
        )
        for first in range(1, count * args.batch_size + 1, args.batch_size)
    ]


def stage_pass(
    predictor: Predictor, batches: list[Batch]
) -> tuple[dict[str, dict[str, float]], dict[str, list[dict[str, Any]]]]:
    """Both paths batch by batch, alternating (so that a busy machine slows both alike):
    the median seconds of each stage per batch, and the results of each path."""
    seconds: dict[str, dict[str, list[float]]] = {name: {} for name in PATHS}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in PATHS}
    for image_ids, images in batches:
        for name, paste in PATHS.items():
            predictor.paste, predictor.timer = paste, StageTimes(predictor.device)
            results[name].extend(predictor.encode(image_ids, predictor(images)))
            for stage in STAGES:
                seconds[name].setdefault(stage, []).append(predictor.timer.seconds.get(stage, 0))
    predictor.timer = None
    medians = {
        name: {stage: statistics.median(values) for stage, values in stages.items()}
        for name, stages in seconds.items()
    }
    return medians, results


def end_to_end(predictor: Predictor, batches: list[Batch], repeats: int) -> dict[str, float]:
    """The best of ``repeats`` alternating passes of each path over all batches (seconds):
    the project's predict loop (encoding beside the network), the stock sequential one."""
    best = dict.fromkeys(PATHS, float("inf"))
    for _ in range(repeats):
        for name, paste in PATHS.items():
            predictor.paste = paste
            gc.collect()
            started = time.perf_counter()
            if name == "project":
                predict_batches(predictor, batches)
            else:
                for image_ids, images in batches:
                    predictor.encode(image_ids, predictor(images))
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def identical_share(ours: list[dict[str, Any]], stock: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether both paths found the same detections (boxes, scores), and the share of masks
    whose RLE is identical."""
    if len(ours) != len(stock):
        return {"same_detections": False, "identical_masks": 0.0}
    pairs = list(zip(ours, stock, strict=True))
    same_boxes = all(a["bbox"] == b["bbox"] and a["score"] == b["score"] for a, b in pairs)
    same_masks = sum(a["segmentation"] == b["segmentation"] for a, b in pairs)
    return {
        "same_detections": same_boxes,
        "identical_masks": round(same_masks / max(len(pairs), 1), 4),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = apply_overrides(resolve_settings(args, kind="run"), args)
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    predictor = make_predictor(args, settings, device)
    warmup, timed = make_batches(args, args.warmup, 1), make_batches(args, args.images, 2)
    for paste in PATHS.values():
        predictor.paste = paste
        for image_ids, images in warmup:
            predictor.encode(image_ids, predictor(images))
    per_batch, outputs = stage_pass(predictor, timed)
    totals = end_to_end(predictor, timed, args.repeats)
    images = args.images * args.batch_size
    figures: dict[str, Any] = {}
    for name in PATHS:
        ms = {s: round(1000 * per_batch[name][s] / args.batch_size, 3) for s in STAGES}
        ms["post_network"] = round(sum(ms[s] for s in POST_NETWORK), 3)
        figures[name] = {"images_per_s": round(images / totals[name], 3), "ms_per_image": ms}
    ours, stock = figures["project"]["ms_per_image"], figures["stock"]["ms_per_image"]
    speedup = {key: round(stock[key] / max(ours[key], 1e-9), 2) for key in ours}
    end_to_end_speedup = figures["project"]["images_per_s"] / figures["stock"]["images_per_s"]
    summary = {
        "benchmark": "predict_speed",
        "device": str(device),
        "precision": predictor.precision,
        "height": args.height,
        "width": args.width,
        "batch_size": args.batch_size,
        "images": args.images * args.batch_size,
        "detections_per_image": round(len(outputs["stock"]) / (args.images * args.batch_size), 1),
        **figures,
        "speedup": speedup,
        "post_network_speedup": speedup["post_network"],
        "end_to_end_speedup": round(end_to_end_speedup, 2),
        **identical_share(outputs["project"], outputs["stock"]),
        "goal_met": speedup["post_network"] >= GOAL_POST_NETWORK_SPEEDUP,
    }
    emit_figures(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
