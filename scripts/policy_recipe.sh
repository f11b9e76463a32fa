#!/usr/bin/env bash
# The bundled policy (v6) from nothing, with fixed seeds: two collections (timed apart from training),
# then the two training stages (role grounding, then the episode anchor). Each step prints its seconds.
#   scripts/policy_recipe.sh [OUT]            OUT defaults to runs/policy_v6
# Environment: DATA (dataset root, default data), WORKERS (collection processes, default 2),
#              VLA (the CLI, default .venv/bin/vla), STAGE1_STEPS / STAGE2_STEPS (the step budgets).
# Collections resume where a killed run stopped; a training stage run again starts over (`--resume` continues one).
set -euo pipefail
OUT=${1:-runs/policy_v6}
DATA=${DATA:-data}
WORKERS=${WORKERS:-2}
read -r -a VLA <<< "${VLA:-.venv/bin/vla}"  # a command of several words works too
STAGE1_STEPS=${STAGE1_STEPS:-10000}
STAGE2_STEPS=${STAGE2_STEPS:-4000}
# Training sees two arms (the KUKA stays unseen: the `embodiment` split), randomised lighting, shades,
# camera and distractors (`EnvConfig.randomize`, docs/simulator.md), and recovery from missed grasps.
COMMON=(--task all --variation id --randomize --arm panda,xarm --image-size 64 --workers "$WORKERS" --no-progress)
PROPRIO=ee_x,ee_y,ee_z,ee_yaw,gripper_width  # arm-agnostic: no joint angles

timed() {  # timed NAME CMD...: run CMD, print NAME and its seconds
  local name=$1 t0
  shift
  t0=$(date +%s)
  "$@"
  echo "recipe: $name took $(( $(date +%s) - t0 )) s"
}

timed "collect expert" "${VLA[@]}" sim collect "${COMMON[@]}" --quality expert --episodes 2000 --seed 0 \
  --out "$DATA/expert_v6"
timed "collect recovery" "${VLA[@]}" sim collect "${COMMON[@]}" --quality recovery --episodes 1200 --seed 100000 \
  --out "$DATA/recovery_v6"
timed "train stage 1" "${VLA[@]}" train policy --data "$DATA/expert_v6" "$DATA/recovery_v6" --out "$OUT.stage1" \
  --role-grounding --proprio-inputs "$PROPRIO" --steps "$STAGE1_STEPS" --grounding-steps 2000 \
  --aux-object-steps 2 --aux-object-input vision --aux-object-weight 2 --batch-size 64 --lr 3e-4 --seed 0 \
  --val-every 1000 --ckpt-every 1000 --no-progress
timed "train stage 2" "${VLA[@]}" train policy --data "$DATA/expert_v6" "$DATA/recovery_v6" --init "$OUT.stage1" \
  --anchor --out "$OUT" --steps "$STAGE2_STEPS" --lr 2e-4 --batch-size 64 --seed 0 --val-every 1000 \
  --ckpt-every 1000 --no-progress
