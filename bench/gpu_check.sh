#!/usr/bin/env bash
# The GPU check of the training issue, as one prepared script for a machine with a GPU:
#  1. the CUDA code path end to end on a tiny generated dataset (fp16 + scaler, channels-last,
#     GPU JPEG decode, DataLoader workers, periodic evaluation, predict, evaluate);
#  2. single-GPU training throughput of the R-50-FPN recipe at 800x1333, 12 images per GPU,
#     bf16 + channels-last, against an fp32 baseline run in the same script;
#  3. inference latency at batch 1 and 8 (bf16 + channels-last; the project's predict path);
#  4. bench/predict_speed.py at batch 1 and 8: the predict path against torchvision's stock
#     path, per stage (added without a GPU to run it on: first run it there);
#  5. bench/val_size_predict.py: a val2017-size split (5000 images) predicted and evaluated
#     on one GPU (goal: under 3 minutes; also added without a GPU).
# It prints the figures next to NVIDIA's published A100 numbers; its last line is one JSON
# object with every figure. Usage: bench/gpu_check.sh [OUTPUT_DIR]  (PYTHON=... to choose).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
out=${1:-results/bench/gpu_check}
mkdir -p "$out"

echo "== 1. CUDA code path on a tiny dataset" >&2
smoke="$out/smoke"
rm -rf "$smoke"
$python scripts/generate_synthetic.py --out "$smoke/data" --seed 3 --train-images 12 \
  --val-images 6 --image-size 64 --max-objects 2 --min-object-size 12 --max-object-size 40
$python scripts/train.py --config bench/gpu_smoke.yaml --run gpu_smoke \
  --images "$smoke/data/train" --annotations "$smoke/data/annotations/train.json" \
  --eval-images "$smoke/data/val" --eval-annotations "$smoke/data/annotations/val.json" \
  --out-dir "$smoke/train"
$python scripts/predict.py --config bench/gpu_smoke.yaml --run gpu_smoke \
  --model "$smoke/train/model_final.pth" --images "$smoke/data/val" \
  --annotations "$smoke/data/annotations/val.json" --out "$smoke/predictions.json"
$python scripts/evaluate.py --annotations "$smoke/data/annotations/val.json" \
  --results "$smoke/predictions.json" --out "$smoke/metrics.json"

# Random weights (no ImageNet download on a GPU box): FrozenBatchNorm without ImageNet
# statistics is no normalisation at all and overflows within a few iterations, so the
# benchmark trains BatchNorm instead (slightly more work than the recipe's frozen layers).
recipe=(--config config.yaml --run r50_fpn_1x --set gpus=1 --set model.backbone_weights=null
  --set model.norm=bn --set solver.ims_per_gpu=12)
echo "== 2. training throughput, 800x1333, 12 images/GPU" >&2
$python scripts/benchmark_train.py "${recipe[@]}" --set precision=bf16 --set channels_last=true \
  --iterations 30 --warmup 10 --out "$out/train_bf16_nhwc.json"
$python scripts/benchmark_train.py "${recipe[@]}" --set precision=fp32 --set channels_last=false \
  --iterations 15 --warmup 5 --out "$out/train_fp32.json"

echo "== 3. inference latency, batch 1 and 8" >&2
$python scripts/benchmark_inference.py "${recipe[@]}" --set precision=bf16 \
  --set channels_last=true --batch-sizes 1 8 --iterations 40 --warmup 10 \
  --out "$out/inference_bf16_nhwc.json"

echo "== 4. predict path against torchvision's stock path, 800x1333, 100 detections" >&2
for batch in 1 8; do
  $python bench/predict_speed.py "${recipe[@]}" --set precision=bf16 --set channels_last=true \
    --height 800 --width 1333 --detections 100 --batch-size "$batch" --iterations 20 \
    --warmup 3 --out "$out/predict_speed_bs$batch.json"
done

echo "== 5. a val2017-size split (5000 images) predicted and evaluated" >&2
$python bench/val_size_predict.py "${recipe[@]}" --set precision=bf16 --set channels_last=true \
  --images 5000 --image-size 640 --out "$out/val_size_predict.json"

$python bench/gpu_check_summary.py "$out"
