#!/usr/bin/env bash
# The whole benchmark suite in one go, for a lent GPU machine (or any machine): each script picks CUDA when present.
# Usage: bash bench/gpu_suite.sh OUTDIR [CIFAR_DIR]   — writes one JSON and one log per benchmark into OUTDIR.
set -u
out=${1:?usage: bench/gpu_suite.sh OUTDIR [CIFAR_DIR]}
cifar=${2:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$out/machine.log"
timeout 100 python bench/models.py --width 0.5 --batch 128 --json "$out/models.json" 2>&1 | tee "$out/models.log"
timeout 80 python bench/volumize.py --json "$out/volumize.json" 2>&1 | tee "$out/volumize.log"
cifar_args=()
[ -n "$cifar" ] && cifar_args=(--cifar --data-dir "$cifar" --epochs 10 --train-seconds 60 --cache-dir "$out/models")
timeout 240 python bench/attacks.py --images 32 --pixels 1,3,10 --art-max-iter 10 "${cifar_args[@]}" \
  --plot "$out/pixel_attacks_queries.png" --json "$out/attacks.json" 2>&1 | tee "$out/attacks.log"
