"""Print bench/gpu_check.sh's figures next to NVIDIA's published A100 numbers.

NVIDIA DeepLearningExamples, Mask R-CNN PyTorch, NGC 21.12, one A100 80GB, AMP: training 24
images/s at 12 images per GPU; inference 23 images/s (34.9 ms) at batch 1, 31 images/s at
batch 8. The last line is one JSON object with every figure and the ratios.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NVIDIA_A100 = {
    "train_images_per_s": 24.0,
    "infer_bs1_images_per_s": 23.0,
    "infer_bs8_images_per_s": 31.0,
}


def main(out: Path) -> None:
    bf16 = json.loads((out / "train_bf16_nhwc.json").read_text())
    fp32 = json.loads((out / "train_fp32.json").read_text())
    inference = json.loads((out / "inference_bf16_nhwc.json").read_text())["results"]
    smoke = json.loads((out / "smoke" / "metrics.json").read_text())
    by_batch = {row["batch_size"]: row for row in inference}
    figures = {
        "train_images_per_s": bf16["images_per_s"],
        "train_ms_per_iteration": bf16["ms_per_iteration"],
        "train_max_memory_mb": bf16.get("max_memory_mb"),
        "train_fp32_images_per_s": fp32["images_per_s"],
        "bf16_nhwc_over_fp32": round(bf16["images_per_s"] / fp32["images_per_s"], 3),
        "infer_bs1_images_per_s": by_batch[1]["images_per_s"],
        "infer_bs1_latency_ms": {k: v for k, v in by_batch[1].items() if k.startswith("latency")},
        "infer_bs8_images_per_s": by_batch[8]["images_per_s"],
        "infer_bs8_latency_ms": {k: v for k, v in by_batch[8].items() if k.startswith("latency")},
        "smoke_segm_ap": smoke["segm"]["AP"],
        "device": bf16["device"],
    }
    for batch in (1, 8):  # bench/predict_speed.py (step 4; absent from older outputs)
        speed = out / f"predict_speed_bs{batch}.json"
        if speed.is_file():
            predict = json.loads(speed.read_text())
            figures[f"predict_bs{batch}_images_per_s"] = predict["project"]["images_per_s"]
            figures[f"predict_bs{batch}_post_network_speedup"] = predict["post_network_speedup"]
            figures[f"predict_bs{batch}_end_to_end_speedup"] = predict["end_to_end_speedup"]
    val_size = out / "val_size_predict.json"  # bench/val_size_predict.py (step 5)
    if val_size.is_file():
        split = json.loads(val_size.read_text())
        for key in ("predict_s", "evaluate_s", "total_s", "images_per_s", "speedup"):
            figures[f"val_size_{key}"] = split[key]
    for key, reference in NVIDIA_A100.items():
        figures[f"{key}_vs_nvidia_a100"] = round(figures[key] / reference, 3)
    rows = [
        (
            "training, images/s (12/GPU)",
            figures["train_images_per_s"],
            NVIDIA_A100["train_images_per_s"],
        ),
        (
            "inference batch 1, images/s",
            figures["infer_bs1_images_per_s"],
            NVIDIA_A100["infer_bs1_images_per_s"],
        ),
        (
            "inference batch 8, images/s",
            figures["infer_bs8_images_per_s"],
            NVIDIA_A100["infer_bs8_images_per_s"],
        ),
    ]
    print(f"{'measure':32} {'this GPU':>10} {'NVIDIA A100':>12} {'ratio':>7}")
    for name, ours, theirs in rows:
        print(f"{name:32} {ours:10.2f} {theirs:12.2f} {ours / theirs:7.2f}")
    print(f"bf16+channels-last over fp32 training: {figures['bf16_nhwc_over_fp32']:.2f}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
