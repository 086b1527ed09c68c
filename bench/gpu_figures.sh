#!/usr/bin/env bash
# Issue 14's GPU figures in one prepared run of about 8 minutes (first bench/gpu_prepare.sh):
#  1. the Cat -> Wild-size RDMD iteration (unet:edm64, 64x64, bf16) at batch 32 and 128:
#     images/s and peak memory (bench/cat2wild_throughput.py);
#  2. a teacher step and an RDMD iteration at 32x32 with the Fashion-MNIST recipes, timed by
#     the runs' own logs;
#  3. one short distillation under `torchrun --nproc_per_node 1` (the NCCL path);
#  4. the Fashion-MNIST lambda 0.05 generator with the recipe and a validation choice, for as
#     many iterations as LONG_S seconds allow at the speed measured in 2.
# Writes $OUT/gpu_figures.json (bench/gpu_summary.py) and $OUT/fmnist_long.tgz (the run).
# GPU_FIGURES_SMOKE=1 runs every stage tiny on whatever device there is (a check of the
# script itself, here on CPU; its numbers mean nothing).
# STAGES picks stages (default "1 2 3 4"); 4 needs 2's speed and runs it. Once stages 1 and
# 3 have been measured (docs/scaling.md), STAGES=4 LONG_S=420 gives one 10-minute device
# call's worth of Fashion-MNIST training (issue 14's last figure; docs/images.md).
set -uo pipefail
cd "$(dirname "$0")/.."
for s in ${STAGES:-1 2 3 4}; do
  case "$s" in 1|2|3|4) ;; *) echo "gpu_figures.sh: unknown stage '$s' in STAGES (stages are 1 2 3 4)" >&2; exit 2 ;; esac
done
OUT=${OUT:-runs/gpu_out}
W=runs/gpu
mkdir -p "$OUT" "$W"
PY=${PYTHON:-python3}
# the carried wheels, only where rdmd's dependencies are missing (the device's image)
if ! $PY -c "import ot, diffusers, mlxtend" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if [ -d .gpudata/fashion-mnist ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  mkdir -p /usr/share/datasets && cp -r .gpudata/fashion-mnist /usr/share/datasets/
fi
RDMD="$PY -m rdmd.cli"
if [ "${GPU_FIGURES_SMOKE:-0}" = 1 ]; then
  C2W="--device cpu --iters 1 --warmup 0" B1=1 B2=2 TEACH=4 ITERS=2 DDP=2 LONG_S=${LONG_S:-5}
  SMALL="--set floor_pairs=1" OT="--set ot_start=2 --set ot_start_atoms=4 --set ot_start_batch=4"
  TSMALL="--set sample_steps=2" VAL=8
else
  C2W="--device cuda --iters 50 --warmup 5" B1=32 B2=128 TEACH=400 ITERS=120 DDP=20 LONG_S=${LONG_S:-240}
  SMALL="" OT="" TSMALL="" VAL=500
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$OUT/nvidia-smi.txt"
stage() { echo "== $1 ($(date +%T))"; }
STAGES=" ${STAGES:-1 2 3 4} "
case "$STAGES" in *" 4 "*) STAGES="$STAGES 2 " ;; esac
want() { case "$STAGES" in *" $1 "*) return 0 ;; esac; return 1; }

if want 1; then
stage "1. Cat -> Wild-size RDMD iteration"
$PY bench/cat2wild_throughput.py $C2W --batch $B1 --json "$OUT/c2w_b$B1.json"
$PY bench/cat2wild_throughput.py $C2W --batch $B2 --json "$OUT/c2w_b$B2.json"
fi

if want 2; then
stage "2. 32x32 teacher steps and RDMD iterations"
rm -rf $W/teacher $W/rdmd
$RDMD train-teacher --target fmnist-boot --config configs/fmnist_teacher.toml --steps $TEACH \
    --set log_every=50 --set ckpt_every=100000 $TSMALL --out $W/teacher --no-progress
$RDMD distill --source fmnist-sneaker --teacher src/rdmd/pretrained/fmnist/teacher --lam 0.05 \
    --config configs/fmnist_ot_rdmd.toml --steps $ITERS --set eval_every=0 --set log_every=20 \
    $SMALL $OT --out $W/rdmd --no-progress
fi

if want 3; then
stage "3. torchrun --nproc_per_node 1"
rm -rf $W/ddp
$PY -m torch.distributed.run --standalone --nproc_per_node 1 -m rdmd.cli distill \
    --source fmnist-sneaker --teacher src/rdmd/pretrained/fmnist/teacher --lam 0.05 \
    --config configs/fmnist_ot_rdmd.toml --steps $DDP --set eval_every=0 --set log_every=10 \
    --set ot_start=0 $SMALL --out $W/ddp --no-progress
echo "torchrun exit $?" > "$OUT/ddp.txt"
fi

if want 4; then
stage "4. Fashion-MNIST lambda 0.05, as long as $LONG_S s allow"
STEPS=$($PY bench/gpu_summary.py --plan "$W/rdmd" --seconds "$LONG_S")
EVERY=$(( STEPS / 16 > 0 ? STEPS / 16 : 1 ))
rm -rf $W/long
$RDMD distill --source fmnist-sneaker --teacher src/rdmd/pretrained/fmnist/teacher --lam 0.05 \
    --config configs/fmnist_ot_rdmd.toml --steps "$STEPS" --set eval_every=$EVERY \
    --set ckpt_every=$EVERY --set val_size=$VAL --set select=best_val $SMALL $OT \
    --set classifier=src/rdmd/pretrained/fmnist/classifier --set target_class=9 \
    --out $W/long --no-progress
tar czf "$OUT/fmnist_long.tgz" --exclude='checkpoints' -C $W long
fi

stage "summary"
$PY bench/gpu_summary.py --work $W --results "$OUT" --out "$OUT/gpu_figures.json"
