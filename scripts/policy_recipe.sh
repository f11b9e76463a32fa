#!/usr/bin/env bash
# The v7 policy from nothing, with fixed seeds: two collections (timed apart from training), then one
# training run with role grounding and the episode anchor from the first step. Each step prints its
# seconds. The vision CNN's first block has stride 2 (32x32 feature maps), so 14000 steps took 2877 s
# (48 min) on this CPU. Its result is in benchmarks/results/policy.md (v7): worse than the bundled v5 on
# `id` (38% vs 57%, mean of 16) and better on `stack` (12% vs 0%) and the unseen arm (31% vs 8%); not bundled.
#   scripts/policy_recipe.sh [OUT]            OUT defaults to runs/policy_v7
# Environment: DATA (dataset root, default data), WORKERS (collection processes, default 2),
#              VLA (the CLI, default .venv/bin/vla), STEPS (the training steps), RESUME (--resume continues
#              a killed training run; collections always resume where they stopped).
# Ablation switches, each removing one of issue 17's items (scripts/policy_ablation.sh sets one at a time):
#   ROLES=0      no role grounding (the object head reads pooled vision features, as v5's)
#   RECOVERY=0   train on the expert collection only
#   RANDOMIZE=0  collections without training-time randomisation (into DATA/*_v6_plain)
#   ARMS=panda   collections with the Panda only (into DATA/*_v6_panda)
set -euo pipefail
OUT=${1:-runs/policy_v7}
DATA=${DATA:-data}
WORKERS=${WORKERS:-2}
read -r -a VLA <<< "${VLA:-.venv/bin/vla}"  # a command of several words works too
STEPS=${STEPS:-14000}
ROLES=${ROLES:-1} RECOVERY=${RECOVERY:-1} RANDOMIZE=${RANDOMIZE:-1} ARMS=${ARMS:-panda,xarm}
for switch in ROLES RECOVERY RANDOMIZE; do
  case ${!switch} in 0|1) ;; *) echo "$switch must be 0 or 1, got '${!switch}'" >&2; exit 2 ;; esac
done
# Training sees two arms (the KUKA stays unseen: the `embodiment` split), randomised lighting, shades,
# camera and distractors (`EnvConfig.randomize`, docs/simulator.md), and recovery from missed grasps.
COMMON=(--task all --variation id --arm "$ARMS" --image-size 64 --workers "$WORKERS" --no-progress)
SUFFIX=
if [ "$RANDOMIZE" = 1 ]; then COMMON+=(--randomize); else SUFFIX+=_plain; fi
if [ "$ARMS" != panda,xarm ]; then SUFFIX+=_${ARMS//,/_}; fi
TRAIN_DATA=("$DATA/expert_v6$SUFFIX")
GROUNDING=(--role-grounding)
if [ "$ROLES" = 0 ]; then GROUNDING=(); fi
PROPRIO=ee_x,ee_y,ee_z,ee_yaw,gripper_width  # arm-agnostic: no joint angles

timed() {  # timed NAME CMD...: run CMD, print NAME and its seconds
  local name=$1 t0
  shift
  t0=$(date +%s)
  "$@"
  echo "recipe: $name took $(( $(date +%s) - t0 )) s"
}

timed "collect expert" "${VLA[@]}" sim collect "${COMMON[@]}" --quality expert --episodes 2000 --seed 0 \
  --out "$DATA/expert_v6$SUFFIX"
if [ "$RECOVERY" = 1 ]; then
  timed "collect recovery" "${VLA[@]}" sim collect "${COMMON[@]}" --quality recovery --episodes 1200 \
    --seed 100000 --out "$DATA/recovery_v6$SUFFIX"
  TRAIN_DATA+=("$DATA/recovery_v6$SUFFIX")
fi
# shellcheck disable=SC2086  # RESUME is empty or one word
timed "train" "${VLA[@]}" train policy --data "${TRAIN_DATA[@]}" --out "$OUT" \
  "${GROUNDING[@]}" --anchor --vision-strides 2,1,1 --proprio-inputs "$PROPRIO" --steps "$STEPS" --grounding-steps 2000 \
  --aux-object-steps 2 --aux-object-input vision --aux-object-weight 2 --batch-size 64 --lr 3e-4 --seed 0 \
  --val-every 1000 --ckpt-every 1000 --no-progress ${RESUME:-}
