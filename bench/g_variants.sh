#!/usr/bin/env bash
# Train f and g variants side by side at equal budget (bench/experiments/g_variants_cpu.yaml) and print one line
# per variant: final clean accuracy on the validation images, last epoch's train accuracy, seconds of training.
#   bash bench/g_variants.sh OUT_DIR [VARIANT ...]      (default: every variant below; run from the repo root)
# CIFAR10_NPZ=/path/{split}.npz points at the data when it is not at ../shared/data/cifar10/ (docs/datasets.md).
set -euo pipefail
out=${1:?usage: bench/g_variants.sh OUT_DIR [VARIANT ...]}; shift || true
cfg=bench/experiments/g_variants_cpu.yaml
declare -A SETS=(
  [f]="training.models=[f]"
  [g_dk1]=""
  [g_dk3]="model.depth_kernel=3"
  [g_dk3_init0.1]="model.depth_kernel=3 model.options.depth_init=0.1"
  [g_full]="model.depth_kernel=full"
  [g_dk3_identity]="model.depth_kernel=3 volumizer.ranking=identity"
  [g_dk1_no_curriculum]="syllabus.enabled=false"
  [g_dk1_unstratified]="syllabus.stratify=false"
  [g_dk1_no_pal]="loss.g=cross_entropy"
  [g_dk3_lr3e-3]="model.depth_kernel=3 optimizer.lr=0.003"
)
variants=("$@"); [ ${#variants[@]} -gt 0 ] || variants=(f g_dk1 g_dk3 g_dk3_init0.1 g_full g_dk3_identity g_dk1_no_curriculum g_dk1_unstratified g_dk1_no_pal)
for v in "${variants[@]}"; do
  args=(); [ -z "${CIFAR10_NPZ:-}" ] || args+=(--set "data.options.path=$CIFAR10_NPZ")
  for s in ${SETS[$v]}; do args+=(--set "$s"); done
  start=$(date +%s)
  voldefense run "$cfg" "${args[@]}" --out "$out/$v" --device cpu >"$out.$v.log" 2>&1 || { echo "$v FAILED (see $out.$v.log)"; continue; }
  python - "$out/$v/metrics.jsonl" "$v" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
last = rows[-1]
train_s = sum(r["seconds"] for r in rows)
print(f"{sys.argv[2]:24s} val_acc {last['val_accuracy']:.4f}  train_acc {last['train_accuracy']:.4f}  "
      f"train_s {train_s:.0f}  wall_s {sys.argv[3]}")
PY
done
