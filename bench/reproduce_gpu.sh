#!/usr/bin/env bash
# The GPU checks and the GPU reproduction of the paper's CIFAR-10 claim in one call (issue 12,
# docs/reproduction.md). Writes at most 8 files straight into OUT_DIR (what a lent device machine sends back):
#   log.txt  bench_train.json  seed0_results.json  seed0_report.md  seed1_results.json  seed2_results.json
#   order_results.json  full_results.json  summary.md   (9 with full: a device machine returns 8, so run
#   "full" in a call of its own)
# The run folders themselves (checkpoints, plots) go to $RUNS (default /tmp/reproduce_runs).
#
#   bash bench/reproduce_gpu.sh OUT_DIR CIFAR_DIR [STAGE ...]
#
# CIFAR_DIR holds train.npz and test.npz (docs/datasets.md), or train.npz split into train_part*.npz by
# `python bench/cifar_parts.py split` (a device machine takes at most 64 MiB per call: carry the parts in
# successive calls to a warm machine; they are joined here). STAGEs, in this order by default:
#   checks  the GPU tests (pytest -m gpu) and bench/train.py (runner loop vs bare loop, AMP + channels_last)
#   main    configs/reproduce/cifar10_gpu.yaml, seed 0: every model, attack and ablation (target <= 8 min)
#   seeds   seeds 1 and 2, f and g only, same schedule (the spread over 3 seeds)
#   order   g with depth_kernel 3 and its identity / random order ablations (the order cannot matter at dk 1)
#   full    g with the paper's k x k x N kernels (depth_kernel full), too slow for the main run's 8 minutes
#   defenses configs/compare_cifar10.yaml: g next to the six baselines (median, derandomized smoothing,
#           adversarial training, LGS, DW, PatchCleanser) under the same adaptive attacks (issue 17); not a default
#           stage (its own call: it trains three defenses)
#   summary bench/reproduce_summary.py: Wilson intervals, mean +- sd over the seeds
set -uo pipefail
out=${1:?usage: bench/reproduce_gpu.sh OUT_DIR CIFAR_DIR [STAGE ...]}
cifar=${2:?usage: bench/reproduce_gpu.sh OUT_DIR CIFAR_DIR [STAGE ...]}
shift 2
stages=("$@"); [ ${#stages[@]} -gt 0 ] || stages=(checks main seeds order full summary)
runs=${RUNS:-/tmp/reproduce_runs}
cfg=configs/reproduce/cifar10_gpu.yaml
mkdir -p "$out" "$runs"
export PYTHONUNBUFFERED=1
log="$out/log.txt"
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$log"; }

if [ ! -f "$cifar/train.npz" ] && ls "$cifar"/train_part*.npz >/dev/null 2>&1; then
  python bench/cifar_parts.py join "$cifar" 2>&1 | tee -a "$log"
fi
data=(--set "data.options.path=$cifar/{split}.npz")
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>&1 | tee -a "$log"

run_config() {  # name, then --set overrides; copies results.json (and the report for seed 0) into OUT_DIR
  local name=$1; shift
  local start=$SECONDS
  local config=${CONFIG:-$cfg}
  say "run $name: voldefense run $config $*"
  voldefense run "$config" "${data[@]}" "$@" --out "$runs/$name" --set output.overwrite=true >>"$log" 2>&1
  local rc=$?
  say "run $name: exit $rc, wall $((SECONDS - start)) s"
  [ -f "$runs/$name/results.json" ] && cp "$runs/$name/results.json" "$out/${name}_results.json"
  return $rc
}

# The extra seeds get the adaptive attacks at two budgets (their worst case is what the spread is taken of); the
# order run has no f, so no transfer patch, and its random-order ablation is the randomized model of the report.
seed_attacks='[{name: sparse_pgd, sizes: [1, 5], images: 1000, options: {steps: 50}}, {name: patch_pgd, sizes: [0.05], images: 1000, options: {steps: 50, location: search}}]'
order_attacks='[{name: sparse_pgd, sizes: [1, 5, 16], images: 1000, options: {steps: 50}}, {name: pixel_search, sizes: [1, 5, 16], images: 1000, options: {max_queries: 1000}}, {name: patch_pgd, sizes: [0.05, 0.1], images: 1000, options: {steps: 50, location: search}}, {name: patch_rank, sizes: [0.05, 0.1], images: 1000, options: {steps: 50}}]'
eot_attacks='{name: sparse_pgd, label: sparse_pgd_eot, sizes: [1, 5, 16], images: 1000, models: [g_random_order], options: {steps: 50, eot_samples: 8}}, {name: patch_pgd, label: patch_pgd_eot, sizes: [0.05, 0.1], images: 1000, models: [g_random_order], options: {steps: 50, location: search, eot_samples: 8}}'
# The random patch order is the one randomized model: it is also attacked with EOT (8 draws per gradient step) and
# every model with randomness is classified over 5 draws (evaluation.draws), so its figures are not one lucky draw.
order_sets=(--set model.depth_kernel=3 --set model.aggregation=mean_logits --set "training.models=[g]" --set evaluation.draws=5)

for stage in "${stages[@]}"; do
  case $stage in
    checks)
      say "stage checks"
      timeout 240 python -m pytest -q -m gpu tests 2>&1 | tail -5 | tee -a "$log"
      timeout 240 python bench/train.py --width 1 --images 20000 --batch 256 --repeats 2 \
        --json "$out/bench_train.json" 2>&1 | tee -a "$log" ;;
    main)
      run_config seed0
      [ -f "$runs/seed0/report.md" ] && cp "$runs/seed0/report.md" "$out/seed0_report.md" ;;
    seeds)
      for seed in 1 2; do
        run_config "seed$seed" --set training.seed=$seed --set "ablations=[]" --set "attacks=$seed_attacks"
      done ;;
    order)
      run_config order "${order_sets[@]}" --set "ablations=[identity_order, random_order]" --set "attacks=${order_attacks%]}, $eot_attacks]" ;;
    full)
      run_config full --set model.depth_kernel=full --set model.aggregation=mean_logits --set "training.models=[g]" \
        --set "ablations=[]" --set "attacks=$order_attacks" ;;
    defenses)
      CONFIG=configs/compare_cifar10.yaml run_config defenses ;;
    summary)
      present=(); for s in seed0 seed1 seed2; do [ -d "$runs/$s" ] && present+=("$runs/$s"); done
      [ ${#present[@]} -gt 0 ] && python bench/reproduce_summary.py "${present[@]}" --out "$out/summary.md" >/dev/null 2>>"$log"
      say "summary of ${present[*]:-nothing}" ;;
    *) say "unknown stage $stage (checks, main, seeds, order, full, defenses, summary)"; exit 2 ;;
  esac
done
say "done"
